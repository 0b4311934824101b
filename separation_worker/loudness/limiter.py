"""A look-ahead peak limiter's gain curve: smooth, and never above what keeps each peak under the ceiling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d

LOOKAHEAD_S = 0.005
HOLD_S = 0.010
SPAN = 2048  # the curve is computed per run of spans holding a peak over the ceiling (>= 2 x a peak's reach)


@dataclass(frozen=True)
class GainCurve:
    gain: np.ndarray  # (n,) float32, <= 1
    touched: np.ndarray  # (n,) bool: where the gain may differ from 1 (elsewhere it is exactly 1)


def limiter_gain(peaks: np.ndarray, ceiling: float, sample_rate: int) -> GainCurve:
    """Per-sample gain <= ceiling/peak everywhere: a centred min over +-hold, then a mean over +-lookahead.

    A mean over a window no wider than the min's never exceeds `required`, so peaks stay under.
    Only the spans around peaks over the ceiling (and one clean span each side, so the filters see
    what they would in the whole signal) are filtered: loud peaks are usually a small part of a song.
    """
    lookahead = max(1, int(LOOKAHEAD_S * sample_rate))
    hold = max(lookahead, int(HOLD_S * sample_rate))
    if hold + lookahead > SPAN:
        raise ValueError(f"sample rate {sample_rate} too high for the limiter's spans")
    n = peaks.size
    spans = -(-n // SPAN)
    over = np.zeros(spans * SPAN, dtype=bool)
    over[:n] = peaks > ceiling
    hot = np.asarray(over.reshape(spans, SPAN).any(axis=1))
    hot[1:] |= hot[:-1].copy()
    hot[:-1] |= hot[1:].copy()  # with the neighbours: every run starts and ends with a clean span
    touched = np.repeat(hot, SPAN)[:n]
    gain = np.ones(n, dtype=np.float32)
    if not touched.any():
        return GainCurve(gain, touched)
    # Runs of hot spans, concatenated: the clean spans between them keep the filters from mixing runs.
    required = np.minimum(np.float32(1.0), np.float32(ceiling) / np.maximum(peaks[touched], np.float32(1e-12)))
    floor = minimum_filter1d(required, size=2 * hold + 1, mode="nearest")
    gain[touched] = uniform_filter1d(floor, size=2 * lookahead + 1, mode="nearest")
    return GainCurve(gain, touched)
