"""BS.1770-4 integrated loudness, computed once per signal and re-read for any pure gain.

The K-weighting runs once (two biquads, the coefficients pyloudnorm uses); what gating needs is
each 400 ms block's mean square per channel. A pure gain g scales every block's mean square by
g², so the loudness after a gain comes from the same blocks without touching the audio again;
after a limiter, only the spans it touched are filtered again (the filter is linear).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyloudnorm
from scipy.signal import sosfilt

BLOCK_S = 0.400
STEP_S = 0.100  # 75 % overlap
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # L, R, C, Ls, Rs


@lru_cache(maxsize=4)
def k_weighting(sample_rate: int) -> np.ndarray:
    """The K-weighting filter as second-order sections (pyloudnorm's high shelf, then its high pass)."""
    meter = pyloudnorm.Meter(sample_rate)  # the reference's own coefficients, so both meters agree
    stages = [meter._filters["high_shelf"], meter._filters["high_pass"]]
    sos = np.array([np.concatenate([stage.b * stage.passband_gain, stage.a]) for stage in stages])
    return sos / sos[:, 3:4]  # a0 = 1


@dataclass(frozen=True)
class BlockEnergies:
    """Mean square of the K-weighted signal in each gating block: (channels, blocks)."""

    z: np.ndarray

    def scaled(self, gain: float) -> BlockEnergies:
        return BlockEnergies(self.z * (gain * gain))

    def lufs(self, gain: float = 1.0) -> float | None:
        """Gated integrated loudness after a pure `gain`; None when no block passes the gates."""
        weights = np.asarray(CHANNEL_WEIGHTS[: self.z.shape[0]])[:, None]
        z = self.z * (gain * gain)
        with np.errstate(divide="ignore"):
            block_lufs = -0.691 + 10 * np.log10((weights * z).sum(axis=0))
        gated = block_lufs >= ABSOLUTE_GATE_LUFS
        if not gated.any():
            return None
        relative = _loudness_of(weights, z[:, gated]) + RELATIVE_GATE_LU
        gated &= block_lufs > relative
        if not gated.any():
            return None
        lufs = _loudness_of(weights, z[:, gated])
        return lufs if math.isfinite(lufs) else None


def _loudness_of(weights: np.ndarray, z: np.ndarray) -> float:
    with np.errstate(divide="ignore"):
        return float(-0.691 + 10 * np.log10((weights[:, 0] * z.mean(axis=1)).sum()))


DENORMAL_GUARD = 1e-20
TAIL_S = 0.1  # the K-weighting's impulse response is below 1e-9 of its start after this (38 Hz high pass)


@dataclass(frozen=True)
class Layout:
    """pyloudnorm's gating blocks over n samples, as `steps` 100 ms steps of `step` samples each."""

    n: int
    blocks: int
    steps: int
    step: float

    @classmethod
    def of(cls, n: int, sample_rate: int) -> Layout:
        blocks = int(round((n / sample_rate - BLOCK_S) / STEP_S)) + 1
        return cls(n, blocks, blocks + round(BLOCK_S / STEP_S) - 1, STEP_S * sample_rate)

    @property
    def whole(self) -> int | None:
        """Samples per step when that is a whole number (44.1 and 48 kHz), else None."""
        return int(self.step) if self.step == int(self.step) else None


@dataclass(frozen=True)
class KWeighted:
    """A signal after K-weighting and its sums of squares per step: kept, so a later measurement of a
    gain or a local change re-filters only what changed."""

    signal: np.ndarray  # (channels, steps * step) when steps are whole samples, else (channels, n)
    per_step: np.ndarray  # (channels, steps) float64
    layout: Layout
    sample_rate: int

    @classmethod
    def of(cls, weighted: np.ndarray, sample_rate: int, layout: Layout | None = None) -> KWeighted:
        layout = layout or Layout.of(weighted.shape[-1], sample_rate)
        step = layout.whole
        if step is not None:  # laid out as whole steps: zeros past the end add nothing, samples past the last step count for no block
            length = layout.steps * step
            if weighted.shape[-1] != length:
                fitted = np.zeros((weighted.shape[0], length), dtype=np.float32)
                keep = min(length, weighted.shape[-1])
                fitted[:, :keep] = weighted[:, :keep]
                weighted = fitted
            frames = weighted.reshape(weighted.shape[0], layout.steps, step)
            per_step = np.einsum("csk,csk->cs", frames, frames).astype(np.float64)
        else:
            bounds = (np.arange(layout.steps + 1) * layout.step).astype(np.int64)
            inside = bounds[bounds < layout.n]  # strictly increasing: reduceat sums from each bound up to the next
            sums = np.add.reduceat(np.square(weighted, dtype=np.float64), inside, axis=-1)[:, : layout.steps]
            per_step = np.zeros((weighted.shape[0], layout.steps))
            per_step[:, : sums.shape[1]] = sums
        return cls(weighted, per_step, layout, sample_rate)

    @property
    def energies(self) -> BlockEnergies:
        return BlockEnergies(_blocks(self.per_step, self.layout, self.sample_rate))

    def after(self, samples: np.ndarray, gain: float, curve: np.ndarray, starts: np.ndarray, ends: np.ndarray
              ) -> BlockEnergies:
        """The block energies of samples * gain * curve, where `curve` is exactly 1 outside the runs
        [starts[i], ends[i]).

        The K-weighting is linear: K(s * c) = K(s) + K(s * (c - 1)), and s * (c - 1) is zero outside
        the runs, so only they (and the filter's decay after each) are filtered again.
        """
        step = self.layout.whole
        if step is None:
            return measure(samples * (np.float32(gain) * curve), self.sample_rate)
        n = min(samples.shape[-1], self.signal.shape[-1])
        spans = _step_spans(starts, ends + int(TAIL_S * self.sample_rate), step, n)
        if not spans:
            return self.energies.scaled(gain)
        residual = np.concatenate([samples[:, a:b] * (curve[a:b] - np.float32(1.0)) for a, b in spans], axis=1)
        # Zeros between limited peaks would decay the filter's state into subnormal floats, ~20x slower
        # to compute; an offset far below any audible level (and removed by the high pass) keeps it normal.
        residual += np.float32(DENORMAL_GUARD)
        filtered = sosfilt(k_weighting(self.sample_rate).astype(np.float32), residual, axis=-1)
        per_step = self.per_step.copy()
        at = 0
        for a, b in spans:
            segment = self.signal[:, a : a + -(-(b - a) // step) * step].copy()
            segment[:, : b - a] += filtered[:, at : at + b - a]
            at += b - a
            frames = segment.reshape(segment.shape[0], -1, step)
            per_step[:, a // step : a // step + frames.shape[1]] = np.einsum("csk,csk->cs", frames, frames)
        return BlockEnergies(_blocks(per_step, self.layout, self.sample_rate) * (gain * gain))


def _step_spans(starts: np.ndarray, ends: np.ndarray, step: int, n: int) -> list[tuple[int, int]]:
    """The runs widened to whole steps (starts down, ends up, clipped to n), merged where they meet."""
    spans: list[tuple[int, int]] = []
    for start, end in zip((starts // step) * step, np.minimum(-(-ends // step) * step, n)):
        if start >= end:
            continue
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], int(end)))
        else:
            spans.append((int(start), int(end)))
    return spans


def k_weight(samples: np.ndarray, sample_rate: int) -> KWeighted:
    """K-weight (channels, n) audio, once."""
    x = np.asarray(samples, dtype=np.float32)
    minimum = int(math.ceil(BLOCK_S * sample_rate))
    if x.shape[-1] < minimum:  # shorter than one block: zeros fall below the absolute gate
        x = np.pad(x, ((0, 0), (0, minimum - x.shape[-1])))
    return KWeighted.of(sosfilt(k_weighting(sample_rate).astype(np.float32), x, axis=-1), sample_rate)


def measure(samples: np.ndarray, sample_rate: int) -> BlockEnergies:
    """The gating blocks' energies of (channels, n) audio."""
    return k_weight(samples, sample_rate).energies


def energies_of_sum(parts: list[KWeighted]) -> BlockEnergies:
    """The block energies of the parts' sum (K-weighting is linear: the sum of their weighted signals).

    The parts are the same length (a song's stems)."""
    total = parts[0].signal.copy()
    for part in parts[1:]:
        total += part.signal
    return KWeighted.of(total, parts[0].sample_rate, parts[0].layout).energies


def _blocks(per_step: np.ndarray, layout: Layout, sample_rate: int) -> np.ndarray:
    """Each 400 ms block's mean square: four consecutive 100 ms steps."""
    per_block = np.zeros((per_step.shape[0], layout.blocks))
    for i in range(layout.steps - layout.blocks + 1):
        per_block += per_step[:, i : i + layout.blocks]
    return per_block / (BLOCK_S * sample_rate)
