"""Global tempo (BPM) from an onset-strength envelope.

Steps: onset envelope -> autocorrelation averaged over ~12 s windows (robust to slow drift)
-> every candidate period scored by its autocorrelation at 1, 2, 3 and 4 beats times a
log-normal tempo prior (this rules out 3/2-type errors) -> the lower or upper reading of that
pulse's octave chosen on the music's own evidence (octave.py), both kept when it is a close call
-> the period refined to a fraction of a frame with a comb over all beat multiples within ~24 s
of the whole-song autocorrelation, which is what makes the decimal meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import librosa
import numpy as np

from .octave import Backbeat, choose_octave

HOP = 256  # 11.6 ms at 22050 Hz
N_FFT = 2048
N_MELS = 96
# Hi-hats and cymbals live above this; below it are the onsets that mark beats from their subdivisions.
ACCENT_FMAX = 2000.0
BASS_FMAX = 200.0
# Low and high ends of a beat, kick (or bass note) and snare (or claps, hats): the backbeat test.
KICK_FMAX, SNARE_FMIN = BASS_FMAX, ACCENT_FMAX
TREND_FRAMES = 33  # ~0.4 s moving average
MIN_BPM, MAX_BPM = 40.0, 240.0
# Listeners and DJ software place most pop/electronic music between ~80 and ~160 BPM.
PRIOR_CENTER_BPM = 120.0
PRIOR_WIDTH_OCTAVES = 0.9
WINDOW_S = 12.0
COMB_BEATS = 4
REFINE_SPAN_S = 24.0  # beat multiples used by the precision comb
# Pulse strength (mean normalized autocorrelation at 1..4 beats): white noise scores ~0.03,
# the weakest synthesized songs ~0.15, typical ones ~0.6.
MIN_PULSE = 0.08
CONFIDENT_PULSE = 0.4


@dataclass(frozen=True)
class TempoEstimate:
    bpm: float
    confidence: float
    alternative: float | None = None  # double or half of `bpm`, when the octave is a close call


@dataclass(frozen=True)
class Onsets:
    """Spectral-flux onset strength, slow trend removed (so autocorrelation sees pulses), per frame."""

    full: np.ndarray  # all bands: what the pulse is found in
    # Below ACCENT_FMAX (kick, snare body, bass, chords): where the beats are told apart from their
    # subdivisions. The bass band (kick, bass) and the band above it count equally, however few mel bands
    # the bass band has.
    low: np.ndarray
    # Magnitude (not dB) flux below KICK_FMAX and above SNARE_FMIN, for the backbeat test: dB flux counts
    # a faint onset in a quiet band like a loud one, and told kick from snare less well on the dev sets.
    kick: np.ndarray
    snare: np.ndarray


def onsets(magnitude: np.ndarray, sr: int) -> Onsets:
    """`magnitude`: |STFT| with N_FFT and HOP, as librosa's onset_strength would compute it."""
    fmax = min(11025, sr // 2)
    mel = librosa.feature.melspectrogram(S=magnitude**2, sr=sr, n_mels=N_MELS, fmax=fmax)
    db = librosa.power_to_db(mel)
    freqs = librosa.mel_frequencies(n_mels=N_MELS, fmax=fmax)
    bass, body = freqs < BASS_FMAX, (freqs >= BASS_FMAX) & (freqs < ACCENT_FMAX)
    return Onsets(
        full=_detrended_flux(db, sr), low=_detrended_flux(db[bass], sr) + _detrended_flux(db[body], sr),
        kick=_band_flux(mel[freqs < KICK_FMAX]), snare=_band_flux(mel[freqs >= SNARE_FMIN]),
    )


def _detrended_flux(db: np.ndarray, sr: int) -> np.ndarray:
    return _detrended(librosa.onset.onset_strength(S=db, sr=sr, hop_length=HOP))


def _band_flux(power: np.ndarray) -> np.ndarray:
    """Rise of a band's total magnitude, frame to frame."""
    magnitude = np.sqrt(power.sum(axis=0))
    return _detrended(np.maximum(np.diff(magnitude, prepend=magnitude[:1]), 0.0))


def _detrended(env: np.ndarray) -> np.ndarray:
    trend = np.convolve(env, np.ones(TREND_FRAMES) / TREND_FRAMES, mode="same")
    return np.maximum(env - trend, 0.0)


def _autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray:
    n = len(x)
    spec = np.fft.rfft(x - x.mean(), 2 ** int(np.ceil(np.log2(2 * n))))
    ac = np.fft.irfft(np.abs(spec) ** 2)[:max_lag]
    return ac / (ac[0] + 1e-12)


def _windowed_autocorrelation(x: np.ndarray, win: int, max_lag: int) -> np.ndarray:
    """Mean of normalized autocorrelations over half-overlapping windows, each weighted by its energy."""
    if len(x) <= win:
        return _autocorrelation(x, max_lag)
    total = np.zeros(max_lag)
    weight = 0.0
    for start in range(0, len(x) - win + 1, win // 2):
        seg = x[start : start + win]
        w = float(np.std(seg))
        if w > 0:
            total += w * _autocorrelation(seg, max_lag)
            weight += w
    return total / weight if weight else total


def _interp(ac: np.ndarray, lags: np.ndarray) -> np.ndarray:
    return np.interp(lags, np.arange(len(ac)), ac, right=0.0)


def estimate_tempo(
    env: np.ndarray, fps: float, accents: np.ndarray | Onsets | None = None,
) -> TempoEstimate | None:
    """Tempo from an onset envelope sampled at `fps` frames/s; None when there is no pulse.
    `accents` (default `env`): the envelope whose off-beats decide the octave (Onsets.low), or all of
    `onsets()`, whose kick and snare bands then add the backbeat to that decision."""
    if len(env) < 4 * fps or not np.any(env > 0):
        return None
    max_lag = int(min(len(env) - 1, 60 * fps / MIN_BPM * COMB_BEATS + 2))
    local = _windowed_autocorrelation(env, int(WINDOW_S * fps), max_lag)

    bpms = np.exp(np.linspace(np.log(MIN_BPM), np.log(MAX_BPM), 1200))
    lags = 60 * fps / bpms
    # A beat period repeats: average the autocorrelation at 1..4 beats. This is what settles
    # T vs 2T vs T/2 (and 3/2-type syncopation): at the true period every multiple lines up,
    # at a subdivision or a dotted value only some do; the prior breaks the remaining ties.
    strength = np.mean([_interp(local, k * lags) for k in range(1, COMB_BEATS + 1)], axis=0)
    prior = np.exp(_log_prior(bpms))
    best = int(np.argmax(strength * prior))
    if strength[best] < MIN_PULSE:
        return None

    def comb_strength(bpm: float) -> float:
        return float(np.mean(_interp(local, 60 * fps / bpm * np.arange(1, COMB_BEATS + 1))))

    envelopes = Backbeat(env, accents.kick, accents.snare) if isinstance(accents, Onsets) else None
    low = accents.low if isinstance(accents, Onsets) else env if accents is None else accents
    octave = choose_octave(float(bpms[best]), low, fps, comb_strength, _log_prior, envelopes)
    period = _refine_period(env, fps, 60 * fps / octave.bpm)
    pulse = float(np.clip((strength[best] - MIN_PULSE) / CONFIDENT_PULSE, 0.0, 1.0))
    bpm = 60 * fps / period
    alternative = bpm * octave.other / octave.bpm if octave.ambiguous else None
    return TempoEstimate(bpm=bpm, confidence=pulse * octave.certainty, alternative=alternative)


def _log_prior(bpm: Any) -> Any:
    """Log of the log-normal tempo prior, for a BPM or an array of them."""
    return -0.5 * (np.log2(np.asarray(bpm) / PRIOR_CENTER_BPM) / PRIOR_WIDTH_OCTAVES) ** 2


def _refine_period(env: np.ndarray, fps: float, period: float) -> float:
    """Sub-frame beat period: maximize the whole-song autocorrelation summed at k*period for
    every beat multiple k within REFINE_SPAN_S; errors shrink with k, so this is precise."""
    n_beats = max(2, int(REFINE_SPAN_S * fps / period))
    max_lag = min(len(env) - 1, int((n_beats + 1) * period * 1.05) + 2)
    ac = _autocorrelation(env, max_lag)
    n_beats = max(1, min(n_beats, int((max_lag - 1) / (period * 1.05))))
    k = np.arange(1, n_beats + 1)
    # Coarse-to-fine search within ±3 % (the coarse grid is ~0.15 % apart).
    lo, hi = period * 0.97, period * 1.03
    for _ in range(3):
        grid = np.linspace(lo, hi, 61)
        comb = np.array([_interp(ac, k * p).sum() for p in grid])
        best = grid[int(np.argmax(comb))]
        step = grid[1] - grid[0]
        lo, hi = best - 2 * step, best + 2 * step
    return float(best)
