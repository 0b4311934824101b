"""Musical key (tonic + major/minor) from pitch-class and chord statistics.

Front end: a constant-Q transform with 3 bins per semitone, tuned to the recording (off-A440
masters are common), folded to semitones and log-compressed so sustained pads do not drown the
melody and bass.

Two pieces of evidence are added per key:
- the Pearson correlation of the song's mean chroma with the Albrecht-Shanahan key profile
  (which pitch classes a key uses, and how much);
- how likely the song's chords are in that key: every ~0.1 s frame is labelled with its
  nearest major/minor triad, and the chord histogram is scored with log P(chord | key) from a
  table of how often each scale-degree chord occurs in pop music. Pitch profiles alone confuse
  keys a fifth apart and major/minor on the same tonic (a dominant-heavy song, or the 5th
  harmonic of a minor tonic faking its major third); chords resolve most of these, because
  a song's tonic chord is its most frequent one and triads are robust to overtones.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np
import scipy.ndimage

HOP = 2048  # ~93 ms at 22050 Hz; key needs no finer time resolution
TUNING_HOP = 512  # librosa.estimate_tuning's own
BINS_PER_SEMITONE = 3
N_OCTAVES = 7  # C1 (32.7 Hz) to B7
FMIN = librosa.note_to_hz("C1")
CHORD_LOWEST_OCTAVE = 1  # chords from C2 up: the C1 octave is mostly kick drum and rumble
CHORD_SMOOTHING_FRAMES = 9  # ~0.8 s median, about a beat or two: chords last longer than notes
MIN_CHORD_FIT = 0.4  # frames matching no triad this well (drums only, noise) are not counted
CHORD_WEIGHT = 0.3  # chord log-likelihood (nats per frame) relative to profile correlation
# Tonality tests. Best profile correlation: white noise and drums-only audio reach ~0.5-0.56,
# songs 0.63-0.96. Share of frames with a clear triad (fit >= CLEAR_TRIAD_FIT): noise ~0.35,
# drums ~0.06, songs 0.48-1.
TONAL_PROFILE_FIT = 0.6
CLEAR_TRIAD_FIT = 0.6
TONAL_TRIAD_SHARE = 0.5
MARGIN_FOR_FULL_CONFIDENCE = 0.3  # lead of the best key over the runner-up

# Albrecht & Shanahan (2013) pitch-class weights from the tonic upward (C, C#, ... for C).
MAJOR_PROFILE = (0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081)
MINOR_PROFILE = (0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052)

# P(chord | key) for triads by (semitones above the tonic, quality), rounded from the shape of
# pop/rock chord statistics: the tonic chord dominates, then IV and V; minor keys use the
# natural-minor VI, VII, III and the borrowed major V. Any other triad gets CHORD_FLOOR.
MAJOR_KEY_CHORDS: dict[tuple[int, str], float] = {
    (0, "maj"): 0.30, (5, "maj"): 0.20, (7, "maj"): 0.18, (9, "min"): 0.10, (2, "min"): 0.06,
    (10, "maj"): 0.04, (4, "min"): 0.03, (2, "maj"): 0.015, (4, "maj"): 0.01, (8, "maj"): 0.01,
    (5, "min"): 0.01, (3, "maj"): 0.005,
}
MINOR_KEY_CHORDS: dict[tuple[int, str], float] = {
    (0, "min"): 0.30, (8, "maj"): 0.14, (5, "min"): 0.12, (10, "maj"): 0.12, (7, "maj"): 0.10,
    (3, "maj"): 0.10, (7, "min"): 0.05, (0, "maj"): 0.01, (5, "maj"): 0.01, (2, "min"): 0.01,
}
CHORD_FLOOR = 0.003
TRIADS = {"maj": (0, 4, 7), "min": (0, 3, 7)}


@dataclass(frozen=True)
class KeyEstimate:
    tonic: int  # pitch class, 0 = C
    mode: str  # "major" or "minor"
    confidence: float


def _unit_centered(m: np.ndarray) -> np.ndarray:
    m = m - m.mean(axis=-1, keepdims=True)
    return m / (np.linalg.norm(m, axis=-1, keepdims=True) + 1e-12)


def _rotations(profile: tuple[float, ...]) -> np.ndarray:
    return np.stack([np.roll(np.asarray(profile), tonic) for tonic in range(12)])


# Rows 0-11: C..B major, rows 12-23: C..B minor, for keys and for triads alike.
KEY_PROFILES = _unit_centered(np.concatenate([_rotations(MAJOR_PROFILE), _rotations(MINOR_PROFILE)]))
TRIAD_TEMPLATES = _unit_centered(
    np.concatenate([_rotations(tuple(float(i in TRIADS[q]) for i in range(12))) for q in ("maj", "min")])
)


def _chord_log_likelihoods() -> np.ndarray:
    """(24 keys, 24 triads) log P(triad | key)."""
    table = np.full((24, 24), np.log(CHORD_FLOOR))
    for mode_row, chords in ((0, MAJOR_KEY_CHORDS), (12, MINOR_KEY_CHORDS)):
        for tonic in range(12):
            for (degree, quality), p in chords.items():
                triad = (tonic + degree) % 12 + (0 if quality == "maj" else 12)
                table[mode_row + tonic, triad] = np.log(p)
    return table


CHORD_LOG_LIKELIHOOD = _chord_log_likelihoods()


def semitone_spectrogram(y: np.ndarray, sr: int, tuning_magnitude: np.ndarray) -> np.ndarray:
    """(84, frames) log-compressed energy per semitone, C1..B7, tuned to the recording;
    silent frames dropped. `tuning_magnitude`: |STFT| of `y` with n_fft 2048 and hop 512, the
    spectrogram librosa's estimate_tuning would compute."""
    # Deviation from A440 in semitones (within ±0.5); cqt wants it in fractions of its own bins.
    tuning = float(librosa.estimate_tuning(S=tuning_magnitude, sr=sr, bins_per_octave=12))
    cqt = np.abs(
        librosa.cqt(
            y, sr=sr, hop_length=HOP, fmin=FMIN, n_bins=12 * BINS_PER_SEMITONE * N_OCTAVES,
            bins_per_octave=12 * BINS_PER_SEMITONE, tuning=tuning * BINS_PER_SEMITONE,
        )
    )
    # Semitone energy = its centre bin and the two neighbours (absorbs residual detuning/vibrato).
    padded = np.pad(cqt, ((1, 1), (0, 0)))
    semis = padded[0:-2:3] + padded[1:-1:3] + padded[2::3]
    loudness = semis.sum(axis=0)
    semis = semis[:, loudness > loudness.max() * 1e-3] if loudness.max() > 0 else semis[:, :0]
    return np.log1p(100 * semis / (semis.max() + 1e-12)) if semis.size else semis


def _fold(semis: np.ndarray, lowest_octave: int = 0) -> np.ndarray:
    return semis[12 * lowest_octave :].reshape(N_OCTAVES - lowest_octave, 12, -1).sum(axis=0)


def profile_correlations(semis: np.ndarray) -> np.ndarray:
    """(24,) Pearson correlation of the mean chroma with each key profile (0-11 major on C..B,
    12-23 minor on C..B)."""
    chroma = _fold(semis)
    # Each frame normalized, so loud passages do not outvote quiet ones.
    pcp = (chroma / (chroma.max(axis=0, keepdims=True) + 1e-12)).mean(axis=1)
    return KEY_PROFILES @ _unit_centered(pcp)


def chord_evidence(semis: np.ndarray) -> tuple[np.ndarray, float]:
    """(24,) mean log P(frame chord | key) over the frames that sound like a triad, and the
    share of frames that clearly do (a tonality measure)."""
    chord_chroma = scipy.ndimage.median_filter(_fold(semis, CHORD_LOWEST_OCTAVE), size=(1, CHORD_SMOOTHING_FRAMES))
    fit = TRIAD_TEMPLATES @ _unit_centered(chord_chroma.T).T  # (24 triads, frames)
    best_fit = fit.max(axis=0)
    triad_share = float(np.mean(best_fit >= CLEAR_TRIAD_FIT))
    labelled = best_fit >= MIN_CHORD_FIT
    if not labelled.any():
        return np.zeros(24), triad_share
    histogram = np.bincount(fit.argmax(axis=0)[labelled], minlength=24) / labelled.sum()
    return CHORD_LOG_LIKELIHOOD @ histogram, triad_share


def estimate_key(y: np.ndarray, sr: int, tuning_magnitude: np.ndarray) -> KeyEstimate | None:
    """None when the audio has no tonal content to speak of (drums only, noise)."""
    semis = semitone_spectrogram(y, sr, tuning_magnitude)
    if semis.shape[1] == 0 or np.ptp(_fold(semis).mean(axis=1)) < 1e-6:
        return None
    correlations = profile_correlations(semis)
    chord_ll, triad_share = chord_evidence(semis)
    profile_fit = float(correlations.max())
    # Noise and drums-only audio fail both tests; every synthesized song passes at least one.
    if profile_fit < TONAL_PROFILE_FIT and triad_share < TONAL_TRIAD_SHARE:
        return None
    scores = correlations + CHORD_WEIGHT * chord_ll
    order = np.argsort(scores)[::-1]
    best = int(order[0])
    # Confident when the audio is clearly tonal and the best key leads the runner-up clearly.
    tonality = max(
        np.clip((profile_fit - 0.55) / 0.3, 0.0, 1.0),
        np.clip((triad_share - 0.3) / 0.5, 0.0, 1.0),
    )
    lead = np.clip((scores[best] - scores[order[1]]) / MARGIN_FOR_FULL_CONFIDENCE, 0.0, 1.0)
    return KeyEstimate(tonic=best % 12, mode="major" if best < 12 else "minor", confidence=float(tonality * lead))
