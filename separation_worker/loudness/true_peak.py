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

from .blocks import abs_max_over_channels, max_with_neighbours, row_max, with_neighbours

OVERSAMPLE = 4
HALF_TAPS = 10 * OVERSAMPLE  # resample_poly's filter half-length for up=4
REACH = HALF_TAPS // OVERSAMPLE  # input samples each side that one output depends on
BLOCK = 32  # samples interpolated together: one row of the matrix product
BATCH_BLOCKS = 4096
CHUNK_BLOCKS = 2048  # blocks bounded together: a chunk's temporaries stay in cache


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
    """|output| <= this x the largest |input| in reach (the phases' sums of |taps|)."""
    return float(np.abs(phase_taps()).sum(axis=0).max())


@lru_cache(maxsize=1)
def slope_bounds() -> tuple[float, float]:
    """(a, b) with |output| <= a x |the nearer input| + b x the largest |step between inputs| in reach.

    Output 4n+p is s*x[n+m] + sum_d h[d] (x[n+d] - x[n+m]) (s: the phase's sum of taps, m the anchor,
    n or n+1), and each difference is a sum of steps x[k+1] - x[k]. Music's steps are small next to its
    peaks, so this bounds far tighter than `overshoot_bound` (2.24) in loud passages.
    """
    taps = phase_taps().astype(np.float64)
    a = b = 0.0
    for h in taps.T:
        a = max(a, abs(h.sum()))
        best = np.inf
        for anchor in (0, 1):  # index anchor + REACH in h
            m = REACH + anchor
            on_step = [h[k + 1 :].sum() if k >= m else -h[: k + 1].sum() for k in range(h.size - 1)]
            best = min(best, float(np.abs(on_step).sum()))
        b = max(b, best)
    margin = 1 + 1e-4  # float32 arithmetic in the products
    return a * margin, b * margin


class TruePeaks:
    """Per-sample true peaks of one (channels, n) signal, interpolated lazily, a block at a time."""

    def __init__(self, samples: np.ndarray):
        x = np.asarray(samples, dtype=np.float32)
        self.n = x.shape[-1]
        self.blocks = -(-self.n // BLOCK)
        # Zeros around the signal, as resample_poly pads; rows of the product are views into this.
        self._padded = np.zeros((x.shape[0], self.blocks * BLOCK + 2 * REACH), dtype=np.float32)
        self._padded[:, REACH : REACH + self.n] = x
        # Per block, an upper bound of its true peaks (REACH < BLOCK: the neighbours' samples suffice);
        # once interpolated, the block's true peak itself.
        most, steepest = self._block_maxima()
        self.sample_peak = float(most.max(initial=0.0))
        most, steepest = max_with_neighbours(most), max_with_neighbours(steepest)[: self.blocks]
        anchor, slope = slope_bounds()
        self.upper = np.minimum(most * np.float32(overshoot_bound()),
                                most * np.float32(anchor) + steepest * np.float32(slope))
        self.exact = np.zeros(self.blocks, dtype=bool)
        self._peaks = np.zeros((self.blocks, BLOCK), dtype=np.float32)  # exact in interpolated blocks, else 0

    def _block_maxima(self) -> tuple[np.ndarray, np.ndarray]:
        """Per block, the largest |sample| and the largest |step between samples| (steps into and out
        of the padding count; one block more, for the steps after the last), a cache-sized chunk at a time."""
        most = np.zeros(self.blocks, dtype=np.float32)
        steepest = np.zeros(self.blocks + 1, dtype=np.float32)
        for first in range(0, self.blocks, CHUNK_BLOCKS):
            last = min(self.blocks, first + CHUNK_BLOCKS)
            size = (last - first) * BLOCK
            chunk = self._padded[:, first * BLOCK : first * BLOCK + size + REACH + 1]
            most[first:last] = row_max(abs_max_over_channels(chunk[:, REACH : REACH + size]).reshape(-1, BLOCK))
            steps = abs_max_over_channels(np.diff(chunk[:, : size + 1], axis=-1))
            steepest[first:last] = row_max(steps.reshape(-1, BLOCK))
        tail = self._padded[:, self.blocks * BLOCK :]
        steepest[self.blocks] = abs_max_over_channels(np.diff(tail, axis=-1)).max(initial=0.0)
        return most, steepest

    def above(self, level: float) -> np.ndarray:
        """Per-sample peaks (max over channels and the 4 points from n to n+3/4), exact wherever the
        bound exceeds `level`; elsewhere 0 (their peaks are no higher than `level`)."""
        self.interpolate(self.upper > level)
        return self._peaks.reshape(-1)[: self.n]

    def peak_above(self, level: float) -> float:
        """The largest true peak if it exceeds `level`; else a value no higher than `level`."""
        self.interpolate(self.upper > level)
        return float(self.upper.max(initial=0.0))

    def interpolate(self, blocks: np.ndarray) -> None:
        """Make the peaks exact in every block where `blocks` (a mask over blocks) is true."""
        todo = np.flatnonzero(blocks & ~self.exact)
        for first in range(0, todo.size, BATCH_BLOCKS):
            at = todo[first : first + BATCH_BLOCKS]
            peaks = self._peaks_of(at, self._rows()[:, at])
            self._peaks[at] = peaks
            self.upper[at] = row_max(peaks)
        self.exact[todo] = True

    def max(self) -> float:
        # The true peak is at least the sample peak (phase 0 is the sample itself): no block bounded
        # below it can hold the maximum.
        return self.peak_above(0.99 * self.sample_peak) if self.sample_peak > 0 else 0.0

    def _peaks_of(self, at: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Blocks `at`'s peaks, interpolated from their `rows`; none past the signal's end."""
        peaks = _block_peaks(rows)
        if self.n % BLOCK:
            peaks[at == self.blocks - 1, self.n % BLOCK :] = 0.0
        return peaks

    def max_after(self, gain: float, curve: np.ndarray, touched: np.ndarray) -> float:
        """The true peak of samples * gain * curve, where `curve` is exactly 1 in every block (of BLOCK
        samples) that `touched` leaves false.

        Where the curve is 1 across an interpolator's reach, the output's peak is the input's times
        `gain`; only the other blocks are interpolated anew (from the output's samples), and of the
        rest only those whose bound could still beat what that found.
        """
        near = with_neighbours(touched)
        todo = np.flatnonzero(near)
        top = 0.0
        offsets = np.arange(BLOCK + 2 * REACH) - REACH
        for first in range(0, todo.size, BATCH_BLOCKS):
            at = todo[first : first + BATCH_BLOCKS]
            where = at[:, None] * BLOCK + offsets  # the samples each row reads; outside the signal, padding
            inside = (where >= 0) & (where < self.n)
            scale = np.where(inside, curve[np.clip(where, 0, max(self.n - 1, 0))], np.float32(1.0))
            top = max(top, float(self._peaks_of(at, self._rows()[:, at] * (np.float32(gain) * scale)).max()))
        steady = ~near
        self.interpolate(steady & (self.upper * gain > top))
        return max(top, float(self.upper[steady].max(initial=0.0)) * gain)

    def _rows(self) -> np.ndarray:
        """(channels, blocks, BLOCK + 2*REACH): each block's inputs and their neighbours, as views."""
        channels, length = self._padded.shape
        item = self._padded.itemsize
        return as_strided(self._padded, shape=(channels, self.blocks, BLOCK + 2 * REACH),
                          strides=(length * item, BLOCK * item, item), writeable=False)


def _block_peaks(rows: np.ndarray) -> np.ndarray:
    """(blocks, BLOCK): per output sample, the max over channels and its 4 interpolated points."""
    channels, count = rows.shape[:2]
    out = rows @ block_matrix()  # (channels, blocks, OVERSAMPLE * BLOCK)
    np.abs(out, out=out)
    phases = out.reshape(channels * count, OVERSAMPLE, BLOCK)
    peaks = phases[:, 0]
    for p in range(1, OVERSAMPLE):  # elementwise over contiguous rows: numpy's fast path
        np.maximum(peaks, phases[:, p], out=peaks)
    return peaks.reshape(channels, count, BLOCK).max(axis=0)


def to_dbtp(peak: float) -> float | None:
    return 20 * math.log10(peak) if peak > 0 else None


def true_peak_dbtp(samples: np.ndarray) -> float | None:
    """The highest true peak of (channels, n) audio in dBTP; None when silent."""
    return to_dbtp(TruePeaks(samples).max())
