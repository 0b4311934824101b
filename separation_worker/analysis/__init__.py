"""Tempo and key of a song, as shown to users: "128 BPM · A minor (8A)"."""

from __future__ import annotations

import librosa
import numpy as np
import scipy.ndimage

from ..contract.analysis import UNKNOWN, MusicalAnalysis
from .camelot import PITCH_CLASSES, camelot_code, key_name, pitch_class
from .key import TUNING_HOP, estimate_key
from .tempo import HOP as TEMPO_HOP
from .tempo import N_FFT, estimate_tempo, onsets

__all__ = ["MusicalAnalysis", "analyze", "camelot_code", "key_name", "pitch_class"]

ANALYSIS_SR = 22050
MIN_AUDIBLE_S = 3.0
# A 50 ms frame counts as audible above -60 dBFS RMS (and within 60 dB of the loudest frame).
SILENCE_DBFS = -60.0
FRAME_S = 0.05
MAX_GAP_S = 1.6  # a beat at 40 BPM
MAX_CHANNELS = 8


def _to_mono(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"samples must be (channels, n) or (n,), got shape {x.shape}")
    if 0 < x.shape[1] <= MAX_CHANNELS < x.shape[0]:  # (n, channels), as soundfile returns it
        x = x.T
    return x.mean(axis=0)


def _audible_seconds(y: np.ndarray, sr: int) -> float:
    """Seconds of audible signal, counting gaps shorter than MAX_GAP_S as signal (the silence
    between the clicks of a metronome or the notes of a sparse riff belongs to the music)."""
    frame = max(1, int(FRAME_S * sr))
    n = len(y) // frame
    if n == 0:
        return 0.0
    rms = np.sqrt(np.mean(y[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1))
    threshold = max(10 ** (SILENCE_DBFS / 20), rms.max() * 10 ** (SILENCE_DBFS / 20))
    audible = rms > threshold
    gap = int(MAX_GAP_S / FRAME_S)
    # Closing fills inner gaps up to `gap` frames; padding keeps the edges from being filled.
    closed = scipy.ndimage.binary_closing(np.pad(audible, gap), structure=np.ones(gap + 1, bool))[gap:-gap]
    return float(np.count_nonzero(closed) * FRAME_S)


def analyze(samples: np.ndarray, sample_rate: int) -> MusicalAnalysis:
    """BPM and key of `samples` (float, (channels, n) or (n,)). Pass the instrumental stem
    when there is one: vocals blur both. Returns unknowns, not a guess, for silence or for
    less than ~3 s of audible signal."""
    y = _to_mono(samples)
    if not np.all(np.isfinite(y)):
        y = np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0)
    if sample_rate != ANALYSIS_SR and len(y):
        y = librosa.resample(y, orig_sr=sample_rate, target_sr=ANALYSIS_SR, res_type="soxr_hq")
    if _audible_seconds(y, ANALYSIS_SR) < MIN_AUDIBLE_S:
        return UNKNOWN

    # One STFT serves the onset envelope (every frame) and the tuning estimate (every other frame:
    # its hop is twice the onset's and the frames are centred, so they coincide).
    magnitude = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=TEMPO_HOP))
    onset = onsets(magnitude, ANALYSIS_SR)
    tempo = estimate_tempo(onset.full, ANALYSIS_SR / TEMPO_HOP, accents=onset)
    key = estimate_key(y, ANALYSIS_SR, magnitude[:, :: TUNING_HOP // TEMPO_HOP])
    return MusicalAnalysis(
        bpm=round(tempo.bpm, 1) if tempo else None,
        bpm_confidence=round(tempo.confidence, 3) if tempo else 0.0,
        key=key_name(key.tonic, key.mode) if key else None,
        camelot=camelot_code(PITCH_CLASSES[key.tonic], key.mode) if key else None,
        key_confidence=round(key.confidence, 3) if key else 0.0,
        bpm_alternative=round(tempo.alternative, 1) if tempo and tempo.alternative else None,
    )
