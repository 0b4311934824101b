"""True peak per BS.1770-4 Annex 2: the signal 4x oversampled, computed only where it can matter.

The interpolator is the one scipy's resample_poly(x, 4, 1) uses (81 Kaiser-windowed taps), held
as four 21-tap phases. An oversampled value near sample n is at most `bound` (the largest phase's
sum of |taps|) times the largest |x| within 10 samples of n; so only samples whose bound exceeds a
level can have a true peak above it, and only those are interpolated (in blocks, as one matrix
product per batch).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import as_strided
from scipy.signal import firwin

OVERSAMPLE = 4
HALF_TAPS = 10 * OVERSAMPLE  # resample_poly's filter half-length for up=4
REACH = HALF_TAPS // OVERSAMPLE  # input samples each side that one output depends on
BLOCK = 32  # samples interpolated together: one row of the matrix product
BATCH_BLOCKS = 4096


@lru_cache(maxsize=1)
def phase_taps() -> np.ndarray:
    """(2*REACH+1, OVERSAMPLE): output 4n+p = x[n-REACH .. n+REACH] @ column p."""
    h = firwin(2 * HALF_TAPS + 1, 1 / OVERSAMPLE, window=("kaiser", 5.0)) * OVERSAMPLE
    taps = np.zeros((2 * REACH + 1, OVERSAMPLE))
    for d in range(-REACH, REACH + 1):  # y[4n+p] = sum_d x[n+d] h[HALF_TAPS + p - 4d]
        for p in range(OVERSAMPLE):
            k = HALF_TAPS + p - OVERSAMPLE * d
            if 0 <= k < h.size:
                taps[d + REACH, p] = h[k]
    return taps.astype(np.float32)


@lru_cache(maxsize=1)
def block_matrix() -> np.ndarray:
    """(BLOCK + 2*REACH, OVERSAMPLE*BLOCK): a block of outputs from its inputs and their neighbours,
    phase by phase (so the max over phases runs over contiguous rows)."""
    taps = phase_taps()
    matrix = np.zeros((BLOCK + 2 * REACH, OVERSAMPLE, BLOCK), dtype=np.float32)
    for j in range(BLOCK):
        matrix[j : j + 2 * REACH + 1, :, j] = taps
    return matrix.reshape(BLOCK + 2 * REACH, OVERSAMPLE * BLOCK)


@lru_cache(maxsize=1)
def overshoot_bound() -> float:
    return float(np.abs(phase_taps()).sum(axis=0).max())


class TruePeaks:
    """Per-sample true peaks of one (channels, n) signal, interpolated lazily, a block at a time."""

    def __init__(self, samples: np.ndarray):
        x = np.asarray(samples, dtype=np.float32)
        self.n = x.shape[-1]
        self._blocks = -(-self.n // BLOCK)
        # Zeros around the signal, as resample_poly pads; rows of the product are views into this.
        self._padded = np.zeros((x.shape[0], self._blocks * BLOCK + 2 * REACH), dtype=np.float32)
        self._padded[:, REACH : REACH + self.n] = x
        self.sample_peak = np.abs(x).max(axis=0) if x.shape[0] else np.zeros(self.n, np.float32)
        # Per block, an upper bound of its true peaks (REACH < BLOCK: the neighbours' samples suffice);
        # once interpolated, the block's true peak itself.
        most = _per_block(self.sample_peak, self._blocks).max(axis=1)
        near = most.copy()
        near[1:] = np.maximum(near[1:], most[:-1])
        near[:-1] = np.maximum(near[:-1], most[1:])
        self.upper = near * np.float32(overshoot_bound())
        self.exact = np.zeros(self._blocks, dtype=bool)
        self._peaks = self.sample_peak.copy()  # exact in interpolated blocks; elsewhere at most `upper`

    def above(self, level: float) -> np.ndarray:
        """Per-sample peaks (max over channels and the 4 points from n to n+3/4), exact wherever the
        bound exceeds `level`; elsewhere a value no higher than `level`."""
        self.interpolate(self.upper > level)
        return self._peaks

    def interpolate(self, blocks: np.ndarray) -> None:
        """Make the peaks exact in every block where `blocks` (a mask over blocks) is true."""
        todo = np.flatnonzero(blocks & ~self.exact)
        channels, length = self._padded.shape
        item = self._padded.itemsize
        rows = as_strided(self._padded, shape=(channels, self._blocks, BLOCK + 2 * REACH),
                          strides=(length * item, BLOCK * item, item), writeable=False)
        for first in range(0, todo.size, BATCH_BLOCKS):
            at = todo[first : first + BATCH_BLOCKS]
            out = rows[:, at] @ block_matrix()  # (channels, blocks, OVERSAMPLE * BLOCK)
            np.abs(out, out=out)
            phases = out.reshape(channels * at.size, OVERSAMPLE, BLOCK)
            peaks = phases[:, 0]
            for p in range(1, OVERSAMPLE):  # elementwise over contiguous rows: numpy's fast path
                np.maximum(peaks, phases[:, p], out=peaks)
            peaks = peaks.reshape(channels, at.size, BLOCK).max(axis=0)
            samples = (at[:, None] * BLOCK + np.arange(BLOCK)).ravel()
            inside = samples < self.n
            self._peaks[samples[inside]] = peaks.ravel()[inside]
            self.upper[at] = peaks.max(axis=1)
        self.exact[todo] = True

    def max(self) -> float:
        top = float(self.sample_peak.max()) if self.n else 0.0
        # Below the sample peak, no bound can hold the maximum (the true peak is at least it).
        return float(self.above(0.99 * top).max()) if top > 0 else 0.0

    def max_after(self, gain: float, curve: np.ndarray, touched: np.ndarray) -> float:
        """The true peak of samples * gain * curve, where `curve` is exactly 1 wherever not `touched`.

        Where the curve is 1 across an interpolator's reach, the output's peak is the input's times
        `gain`; only the other blocks (and any whose bound could still win) are interpolated anew.
        """
        near = np.asarray(_per_block(touched, self._blocks).any(axis=1))
        near[1:] |= near[:-1].copy()
        near[:-1] |= near[1:].copy()
        steady = ~near
        top = float(self.upper[steady & self.exact].max(initial=0.0)) * gain
        limited = TruePeaks(self._padded[:, REACH : REACH + self.n] * (np.float32(gain) * curve))
        top = max(top, float(limited.sample_peak.max(initial=0.0)))
        limited.interpolate(near | (steady & ~self.exact & (self.upper * gain > top)))
        return max(top, float(limited.upper[limited.exact].max(initial=0.0)))


def _per_block(values: np.ndarray, blocks: np.ndarray | int) -> np.ndarray:
    padded = np.zeros(int(blocks) * BLOCK, dtype=values.dtype)
    padded[: values.size] = values
    return padded.reshape(-1, BLOCK)


def to_dbtp(peak: float) -> float | None:
    return 20 * math.log10(peak) if peak > 0 else None


def true_peak_dbtp(samples: np.ndarray) -> float | None:
    """The highest true peak of (channels, n) audio in dBTP; None when silent."""
    return to_dbtp(TruePeaks(samples).max())
