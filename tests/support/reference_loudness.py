"""The loudness stage as it was before issue 14, kept as an oracle: pyloudnorm and resample_poly,
recomputed on every refinement pass (slow, but plainly the reference tools).
"""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

from separation_worker.contract.manifest import LoudnessReport

OVERSAMPLE = 4  # BS.1770-4 Annex 2: 4x oversampling for true peak at 44.1/48 kHz
LIMITER_LOOKAHEAD_S = 0.005
LIMITER_HOLD_S = 0.010
REFINE_PASSES = 4
RELATIVE_SILENCE_LU = 40.0  # a stem this far below its song is leakage, not content


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float | None:
    """BS.1770-4 gated integrated loudness in LUFS of (channels, n) audio; None when silent."""
    meter = pyloudnorm.Meter(sample_rate)
    data = samples.T.astype(np.float64)
    minimum = int(math.ceil(meter.block_size * sample_rate))
    if data.shape[0] < minimum:  # shorter than one 400 ms block: zeros fall below the absolute gate
        data = np.pad(data, ((0, minimum - data.shape[0]), (0, 0)))
    lufs = meter.integrated_loudness(data)
    return None if not math.isfinite(lufs) else float(lufs)


def _oversampled_peaks(samples: np.ndarray) -> np.ndarray:
    """Per-sample true-peak magnitude (max over channels and the oversampled points around it)."""
    up = np.abs(resample_poly(samples, OVERSAMPLE, 1, axis=-1))
    n = samples.shape[-1]
    return up[..., : n * OVERSAMPLE].reshape(samples.shape[0], n, OVERSAMPLE).max(axis=(0, 2))


def true_peak_dbtp(samples: np.ndarray) -> float | None:
    peak = float(_oversampled_peaks(samples).max()) if samples.size else 0.0
    return 20 * math.log10(peak) if peak > 0 else None


def _limiter_gain(peaks: np.ndarray, ceiling: float, sample_rate: int) -> np.ndarray:
    """Smooth per-sample gain <= ceiling/peak everywhere (look-ahead min filter, then averaging)."""
    required = np.minimum(1.0, ceiling / np.maximum(peaks, 1e-12))
    lookahead = max(1, int(LIMITER_LOOKAHEAD_S * sample_rate))
    hold = max(lookahead, int(LIMITER_HOLD_S * sample_rate))
    # A centred min over +-hold, averaged over a window no wider than +-hold, never exceeds `required`.
    floor = minimum_filter1d(required, size=2 * hold + 1, mode="nearest")
    return uniform_filter1d(floor, size=2 * lookahead + 1, mode="nearest")


def normalize(
    samples: np.ndarray,
    sample_rate: int,
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
    max_gain_db: float = 30.0,
    silence_lufs: float = -60.0,
    reference_lufs: float | None = None,
) -> tuple[np.ndarray, LoudnessReport]:
    """Return the stem at `target_lufs` (gain capped at `max_gain_db`) with true peak <= `ceiling_dbtp`.

    A stem below `silence_lufs`, or more than RELATIVE_SILENCE_LU below the song it came from
    (`reference_lufs`), counts as silent and is returned unchanged.
    """
    samples = np.asarray(samples, dtype=np.float32)
    before = integrated_loudness(samples, sample_rate)
    peak_before = true_peak_dbtp(samples)
    if before is None or before < silence_lufs or (
        reference_lufs is not None and before < reference_lufs - RELATIVE_SILENCE_LU
    ):
        # Near-silent (e.g. the vocals of an instrumental): amplifying it would only raise noise.
        report = LoudnessReport(before, before, peak_before, peak_before, 0.0, False, True)
        return samples, report

    ceiling = 10 ** (ceiling_dbtp / 20)
    gain_db = min(target_lufs - before, max_gain_db)
    peaks = _oversampled_peaks(samples)
    out, limited = samples, False
    for _ in range(REFINE_PASSES):
        gain = 10 ** (gain_db / 20)
        if peaks.max() * gain > ceiling:
            out = samples * (gain * _limiter_gain(peaks * gain, ceiling, sample_rate)).astype(np.float32)
            limited = True
        else:
            out = samples * np.float32(gain)
        measured = integrated_loudness(out, sample_rate)
        if measured is None or abs(measured - target_lufs) < 0.05 or gain_db >= max_gain_db:
            break
        # Limiting took some loudness away: ask for a little more gain and limit again.
        gain_db = min(gain_db + (target_lufs - measured), max_gain_db)

    # Guard against resampling edge effects: the ceiling is a promise.
    final_peak = true_peak_dbtp(out)
    if final_peak is not None and final_peak > ceiling_dbtp:
        out = out * np.float32(10 ** ((ceiling_dbtp - final_peak - 0.01) / 20))
    after = integrated_loudness(out, sample_rate)
    report = LoudnessReport(before, after, peak_before, true_peak_dbtp(out), gain_db, limited, False)
    return out.astype(np.float32), report
