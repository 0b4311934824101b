"""BS.1770-4 integrated loudness, computed once per signal and re-read for any pure gain.

The K-weighting runs once (two biquads, the coefficients pyloudnorm uses); what gating needs is
each 400 ms block's mean square per channel. A pure gain g scales every block's mean square by
g², so the loudness after a gain comes from the same blocks without touching the audio again.
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


def measure(samples: np.ndarray, sample_rate: int) -> BlockEnergies:
    """K-weight (channels, n) audio and sum its squares per gating block."""
    x = np.asarray(samples, dtype=np.float32)
    minimum = int(math.ceil(BLOCK_S * sample_rate))
    if x.shape[-1] < minimum:  # shorter than one block: zeros fall below the absolute gate
        x = np.pad(x, ((0, 0), (0, minimum - x.shape[-1])))
    weighted = sosfilt(k_weighting(sample_rate).astype(np.float32), x, axis=-1)
    return BlockEnergies(_block_mean_squares(weighted, sample_rate))


def _block_mean_squares(weighted: np.ndarray, sample_rate: int) -> np.ndarray:
    """Each 400 ms block as four 100 ms steps: the squares are summed once per step, then per block.

    The blocks are pyloudnorm's (how many, and a last one cut short by the end of the signal).
    """
    n = weighted.shape[-1]
    per_block_steps = round(BLOCK_S / STEP_S)
    blocks = int(round((n / sample_rate - BLOCK_S) / STEP_S)) + 1
    steps = blocks + per_block_steps - 1
    step = STEP_S * sample_rate
    per_step = np.zeros((weighted.shape[0], steps))
    if step == int(step):  # whole samples per step (44.1 and 48 kHz): one reshape, float32 dot products
        step, inside = int(step), min(steps, n // int(step))
        frames = weighted[:, : inside * step].reshape(weighted.shape[0], inside, step)
        per_step[:, :inside] = np.einsum("csk,csk->cs", frames, frames)
        if inside < steps and inside * step < n:  # the last, partial step
            per_step[:, inside] = np.square(weighted[:, inside * step :], dtype=np.float64).sum(axis=-1)
    else:
        bounds = (np.arange(steps + 1) * step).astype(np.int64)
        inside_bounds = bounds[bounds < n]  # strictly increasing: reduceat sums from each bound up to the next
        sums = np.add.reduceat(np.square(weighted, dtype=np.float64), inside_bounds, axis=-1)[:, :steps]
        per_step[:, : sums.shape[1]] = sums
    per_block = np.zeros((weighted.shape[0], blocks))
    for i in range(per_block_steps):
        per_block += per_step[:, i : i + blocks]
    return per_block / (BLOCK_S * sample_rate)
