"""A look-ahead peak limiter's gain curve: smooth, and never above what keeps each peak under the ceiling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from .blocks import block_max, runs, with_neighbours

LOOKAHEAD_S = 0.005
HOLD_S = 0.010
SPAN = 2048  # the curve is computed per run of spans holding a peak over the ceiling (>= 2 x a peak's reach)


@dataclass(frozen=True)
class GainCurve:
    gain: np.ndarray  # (n,) float32, <= 1
    hot: np.ndarray  # (spans,) bool: the SPAN-sample spans where the gain may differ from 1 (elsewhere it is exactly 1)

    def runs(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) in samples of the runs of hot spans, ends exclusive."""
        starts, ends = runs(self.hot)
        return starts * SPAN, np.minimum(ends * SPAN, self.gain.size)

    def touched_blocks(self, size: int, blocks: int) -> np.ndarray:
        """Per block of `size` samples (a divisor of SPAN): whether the gain may differ from 1 in it."""
        touched = np.zeros(blocks, dtype=bool)  # past the last span: untouched
        wide = np.repeat(self.hot, SPAN // size)[:blocks]
        touched[: wide.size] = wide
        return touched


def limiter_gain(peaks: np.ndarray, scale: float, ceiling: float, sample_rate: int) -> GainCurve:
    """Per-sample gain <= ceiling/(scale*peak) everywhere: a centred min over +-hold, then a mean over
    +-lookahead.

    A mean over a window no wider than the min's never exceeds `required`, so peaks stay under.
    Only the spans around peaks over the ceiling (and one clean span each side, so the filters see
    what they would in the whole signal) are filtered: loud peaks are usually a small part of a song.
    """
    lookahead = max(1, int(LOOKAHEAD_S * sample_rate))
    hold = max(lookahead, int(HOLD_S * sample_rate))
    if hold + lookahead > SPAN:
        raise ValueError(f"sample rate {sample_rate} too high for the limiter's spans")
    n = peaks.size
    level = np.float32(ceiling / scale)
    # With the neighbours, every run of hot spans starts and ends with a clean one.
    hot = with_neighbours(block_max(peaks, -(-n // SPAN), SPAN) > level)
    gain = np.ones(n, dtype=np.float32)
    curve = GainCurve(gain, hot)
    starts, ends = curve.runs()
    if starts.size:
        # The runs, concatenated: the clean spans that end each keep the filters from mixing runs.
        required = np.concatenate([peaks[a:b] for a, b in zip(starts, ends)])
        np.divide(level, np.maximum(required, np.float32(1e-12)), out=required)
        np.minimum(required, np.float32(1.0), out=required)
        floor = minimum_filter1d(required, size=2 * hold + 1, mode="nearest")
        smooth = uniform_filter1d(floor, size=2 * lookahead + 1, mode="nearest")
        at = 0
        for a, b in zip(starts, ends):
            gain[a:b] = smooth[at : at + b - a]
            at += b - a
    return curve
