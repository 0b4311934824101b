"""Loudness normalization per ITU-R BS.1770-4 / EBU R128, under a true-peak ceiling.

Gain brings a stem's integrated loudness to the target; where that would push the true peak
(4x oversampled) above the ceiling, a look-ahead limiter pulls those peaks down instead of
lowering the whole stem, so loud stems still reach the target without clipping.

Each stem is K-weighted once and oversampled only where a peak can matter: a pure gain shifts
loudness and true peak exactly, so a pass that limits measures again only the spans it touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from ..contract.manifest import LoudnessReport  # the report is part of the manifest: plain data, defined there
from .limiter import limiter_gain
from .meter import KWeighted, energies_of_sum, k_weight, measure
from .true_peak import BLOCK, TruePeaks, to_dbtp

REFINE_PASSES = 4
RELATIVE_SILENCE_LU = 40.0  # a stem this far below its song is leakage, not content
ON_TARGET_LU = 0.05


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float | None:
    """BS.1770-4 gated integrated loudness in LUFS of (channels, n) audio; None when silent."""
    return measure(samples, sample_rate).lufs()


def normalize_stems(
    stems: Mapping[str, np.ndarray],
    sample_rate: int,
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
    max_gain_db: float = 30.0,
    silence_lufs: float = -60.0,
    on_stem: Callable[[str], None] | None = None,
) -> dict[str, tuple[np.ndarray, LoudnessReport]]:
    """Normalize a song's stems (as `normalize`), each K-weighted once.

    The song each is compared with for relative silence is the stems' sum, measured from their
    weighted signals with no further filtering.
    """
    weighted, song_lufs = _weighted_with_song(stems, sample_rate)
    normalized = {}
    for name, samples in stems.items():
        normalized[name] = normalize(samples, sample_rate, target_lufs, ceiling_dbtp, max_gain_db, silence_lufs,
                                     reference_lufs=song_lufs, weighted=weighted.pop(name))
        if on_stem:
            on_stem(name)
    return normalized


def measure_stems(
    stems: Mapping[str, np.ndarray], sample_rate: int, silence_lufs: float = -60.0
) -> dict[str, tuple[np.ndarray, LoudnessReport]]:
    """The stems unchanged (raw output: they must null against the input), each with its loudness measured."""
    weighted, song_lufs = _weighted_with_song(stems, sample_rate)
    measured = {}
    for name, samples in stems.items():
        lufs = weighted.pop(name).energies.lufs()
        peak = to_dbtp(TruePeaks(np.asarray(samples, dtype=np.float32)).max())
        silent = _silent(lufs, silence_lufs, song_lufs)
        measured[name] = (samples, LoudnessReport(lufs, lufs, peak, peak, 0.0, False, silent))
    return measured


def _weighted_with_song(
    stems: Mapping[str, np.ndarray], sample_rate: int
) -> tuple[dict[str, KWeighted], float | None]:
    """Each stem K-weighted once, and the loudness of their sum (the song), measured from those."""
    weighted = {name: k_weight(samples, sample_rate) for name, samples in stems.items()}
    return weighted, energies_of_sum(list(weighted.values())).lufs()


def _silent(lufs: float | None, silence_lufs: float, reference_lufs: float | None) -> bool:
    return lufs is None or lufs < silence_lufs or (
        reference_lufs is not None and lufs < reference_lufs - RELATIVE_SILENCE_LU
    )


def normalize(
    samples: np.ndarray,
    sample_rate: int,
    target_lufs: float = -14.0,
    ceiling_dbtp: float = -1.0,
    max_gain_db: float = 30.0,
    silence_lufs: float = -60.0,
    reference_lufs: float | None = None,
    weighted: KWeighted | None = None,
) -> tuple[np.ndarray, LoudnessReport]:
    """Return the stem at `target_lufs` (gain capped at `max_gain_db`) with true peak <= `ceiling_dbtp`.

    A stem below `silence_lufs`, or more than RELATIVE_SILENCE_LU below the song it came from
    (`reference_lufs`), counts as silent and is returned unchanged. `weighted`: the stem already
    K-weighted, if the caller has it.
    """
    samples = np.asarray(samples, dtype=np.float32)
    weighted = weighted or k_weight(samples, sample_rate)
    energies = weighted.energies
    before = energies.lufs()
    peaks = TruePeaks(samples)
    peak_before = to_dbtp(peaks.max())
    if before is None or _silent(before, silence_lufs, reference_lufs):
        # Near-silent (e.g. the vocals of an instrumental): amplifying it would only raise noise.
        return samples, LoudnessReport(before, before, peak_before, peak_before, 0.0, False, True)

    ceiling = 10 ** (ceiling_dbtp / 20)
    gain_db = min(target_lufs - before, max_gain_db)
    limited = False
    for _ in range(REFINE_PASSES):
        gain = 10 ** (gain_db / 20)
        curve = None
        if peaks.peak_above(ceiling / gain) * gain > ceiling:
            curve = limiter_gain(peaks.above(ceiling / gain), gain, ceiling, sample_rate)
            out_energies, limited = weighted.after(samples, gain, curve.gain, *curve.runs()), True
        else:
            out_energies = energies.scaled(gain)
        measured = out_energies.lufs()
        if measured is None or abs(measured - target_lufs) < ON_TARGET_LU or gain_db >= max_gain_db:
            break
        # Limiting took some loudness away: ask for a little more gain and limit again.
        next_db = min(gain_db + (target_lufs - measured), max_gain_db)
        if next_db == gain_db:
            break
        gain_db = next_db
    # (after the last pass, gain_db, curve and out_energies describe the same output)

    # A pure gain scales the input's true peak; after limiting, only the limited spans are new.
    final_peak = to_dbtp(peaks.max_after(gain, curve.gain, curve.touched_blocks(BLOCK, peaks.blocks)) if curve else peaks.max() * gain)
    out = samples * (np.float32(gain) * curve.gain) if curve else samples * np.float32(gain)
    if final_peak is not None and final_peak > ceiling_dbtp:  # resampling edge effects: the ceiling is a promise
        trim = 10 ** ((ceiling_dbtp - final_peak - 0.01) / 20)
        out, out_energies = out * np.float32(trim), out_energies.scaled(trim)
        final_peak += 20 * math.log10(trim)
    report = LoudnessReport(before, out_energies.lufs(), peak_before, final_peak, gain_db, limited, False)
    return out.astype(np.float32, copy=False), report
