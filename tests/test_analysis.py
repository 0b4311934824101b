"""Known-answer tests for BPM and key estimation (separation_worker.analysis)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # synth_music, whichever rootdir pytest picks

import synth_music

from separation_worker.analysis import ANALYSIS_SR, MusicalAnalysis, analyze, camelot_code
from separation_worker.analysis.tempo import HOP as TEMPO_HOP
from separation_worker.analysis.tempo import estimate_tempo

SR = 22050

# The standard Camelot wheel, written out rather than derived, to check the formula against.
CAMELOT_WHEEL = {
    "1B": "B major", "1A": "G# minor", "2B": "F# major", "2A": "D# minor",
    "3B": "C# major", "3A": "A# minor", "4B": "G# major", "4A": "F minor",
    "5B": "D# major", "5A": "C minor", "6B": "A# major", "6A": "G minor",
    "7B": "F major", "7A": "D minor", "8B": "C major", "8A": "A minor",
    "9B": "G major", "9A": "E minor", "10B": "D major", "10A": "B minor",
    "11B": "A major", "11A": "F# minor", "12B": "E major", "12A": "C# minor",
}


def within(estimate: float | None, truth: float, tolerance: float = 0.04) -> bool:
    return estimate is not None and abs(estimate - truth) <= tolerance * truth


# --- Camelot -----------------------------------------------------------------------------------


@pytest.mark.parametrize("code, key", sorted(CAMELOT_WHEEL.items()))
def test_camelot_wheel(code: str, key: str) -> None:
    tonic, mode = key.split()
    assert camelot_code(tonic, mode) == code


def test_camelot_covers_all_24_keys_once() -> None:
    codes = {camelot_code(t, m) for t in synth_music.PITCH_NAMES for m in ("major", "minor")}
    assert len(codes) == 24


@pytest.mark.parametrize(
    "tonic, mode, code",
    [("Bb", "major", "6B"), ("Eb", "minor", "2A"), ("Db", "major", "3B"), ("Gb", "major", "2B"),
     ("Ab", "minor", "1A"), ("Cb", "major", "1B"), ("E#", "minor", "4A"), ("a", "Minor", "8A")],
)
def test_camelot_accepts_flats_and_other_spellings(tonic: str, mode: str, code: str) -> None:
    assert camelot_code(tonic, mode) == code


@pytest.mark.parametrize("tonic, mode", [("H", "major"), ("", "minor"), ("C#x", "major"), ("C", "dorian")])
def test_camelot_rejects_garbage(tonic: str, mode: str) -> None:
    with pytest.raises(ValueError):
        camelot_code(tonic, mode)


# --- MusicalAnalysis ---------------------------------------------------------------------------


def test_summary_formats() -> None:
    full = MusicalAnalysis(bpm=128.0, bpm_confidence=0.9, key="A minor", camelot="8A", key_confidence=0.8)
    assert full.summary() == "128 BPM · A minor (8A)"
    fractional = dataclasses.replace(full, bpm=97.5, key="F# major", camelot="2B")
    assert fractional.summary() == "97.5 BPM · F# major (2B)"
    assert dataclasses.replace(full, key=None, camelot=None, key_confidence=0.0).summary() == "128 BPM · key unknown"
    assert dataclasses.replace(full, bpm=None, bpm_confidence=0.0).summary() == "BPM unknown · A minor (8A)"
    unknown = MusicalAnalysis(bpm=None, bpm_confidence=0.0, key=None, camelot=None, key_confidence=0.0)
    assert unknown.summary() == "BPM unknown · key unknown"
    assert dataclasses.replace(full, bpm=75.0, bpm_alternative=150.0).summary() == "75 BPM (or 150) · A minor (8A)"
    assert dataclasses.replace(full, bpm=140.2, bpm_alternative=70.1).summary() == "140.2 BPM (or 70.1) · A minor (8A)"


def test_to_dict_and_frozen() -> None:
    result = MusicalAnalysis(bpm=120.0, bpm_confidence=0.5, key="C major", camelot="8B", key_confidence=0.7)
    assert result.to_dict() == {
        "bpm": 120.0, "bpm_confidence": 0.5, "key": "C major", "camelot": "8B", "key_confidence": 0.7,
    }
    assert dataclasses.replace(result, bpm=75.0, bpm_alternative=150.0).to_dict()["bpm_alternative"] == 150.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.bpm = 100.0  # type: ignore[misc]


# --- Unknowns instead of guesses ---------------------------------------------------------------


def assert_unknown(result: MusicalAnalysis) -> None:
    assert (result.bpm, result.key, result.camelot) == (None, None, None)
    assert result.bpm_confidence == 0.0 and result.key_confidence == 0.0


@pytest.mark.parametrize("shape", [(SR * 10,), (2, 44100 * 10)])
def test_silence_is_unknown(shape: tuple[int, ...]) -> None:
    assert_unknown(analyze(np.zeros(shape, dtype=np.float32), 44100 if len(shape) == 2 else SR))


def test_empty_input_is_unknown() -> None:
    assert_unknown(analyze(np.zeros((2, 0), dtype=np.float32), 44100))


def test_very_short_audio_is_unknown() -> None:
    clip = synth_music.additive_progression(0, "major", ("I", "IV", "V", "I"), repeats=1)[: SR // 2]
    assert_unknown(analyze(clip, SR))


def test_short_sound_padded_with_silence_is_unknown() -> None:
    # 2 s of music inside 20 s of silence is still less than ~3 s of signal.
    music = synth_music.additive_progression(9, "minor", ("i", "iv", "V", "i"), repeats=1)[: 2 * SR]
    padded = np.zeros(20 * SR, dtype=np.float32)
    padded[9 * SR : 9 * SR + len(music)] = music
    assert_unknown(analyze(padded, SR))


def test_noise_has_no_key_or_tempo() -> None:
    noise = np.random.default_rng(0).normal(0, 0.1, 15 * SR).astype(np.float32)
    assert_unknown(analyze(noise, SR))


# --- Tempo -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bpm", [97.0, 128.0, 174.0, 140.5])
def test_click_track_tempo(bpm: float) -> None:
    # Exact tempo expected (no x2 / x1/2 allowance): with every beat equally loud but the
    # downbeat accented, the 1-4-beat comb and the prior settle on the click rate itself.
    result = analyze(synth_music.click_track(bpm, 20.0), SR)
    assert within(result.bpm, bpm, 0.01), result
    assert result.bpm_confidence > 0.5
    assert result.key is None  # clicks have no key


def _pulse_envelope(bpm: float, hits: tuple[tuple[float, float], ...], seconds: float = 30.0) -> np.ndarray:
    """An onset envelope with `hits` (offset within the beat, strength) on every beat."""
    fps = ANALYSIS_SR / TEMPO_HOP
    env = np.zeros(int(seconds * fps))
    beat = 60 * fps / bpm
    for k in range(int(len(env) / beat) + 1):
        for offset, strength in hits:
            i = int(round((k + offset) * beat))
            if i < len(env):
                env[i] += strength
    return env


@pytest.mark.parametrize(
    "bpm, hits, expected",
    [
        (75.0, ((0, 1.0), (0.5, 0.35)), 75.0),  # a slow backbeat under quieter eighth-note hi-hats
        (150.0, ((0, 1.0), (0.5, 0.35)), 150.0),  # the same pattern, fast: the hats are the subdivision
        (90.0, ((0, 1.0), (2 / 3, 0.4)), 90.0),  # swung eighths are not a faster beat
    ],
)
def test_tempo_octave_follows_the_subdivisions(bpm, hits, expected) -> None:
    estimate = estimate_tempo(_pulse_envelope(bpm, hits), ANALYSIS_SR / TEMPO_HOP)
    assert estimate is not None and within(estimate.bpm, expected, 0.01), estimate
    if estimate.alternative is not None:  # a close call names the other reading, never a third one
        assert within(estimate.alternative, expected * 2, 0.01) or within(estimate.alternative, expected / 2, 0.01)


def test_tempo_decimal_is_precise() -> None:
    result = analyze(synth_music.click_track(123.4, 30.0), SR)
    assert result.bpm is not None and abs(result.bpm - 123.4) <= 0.15


# --- Key ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tonic, mode, progression",
    [
        (0, "major", ("I", "V", "vi", "IV")),
        (6, "major", ("ii", "V", "I", "I")),
        (10, "major", ("IV", "V", "I", "vi")),
        (9, "minor", ("i", "iv", "V", "i")),
        (3, "minor", ("i", "VI", "iv", "V")),
        (4, "minor", ("i", "VII", "VI", "V")),
    ],
)
def test_chord_progression_key(tonic: int, mode: str, progression: tuple[str, ...]) -> None:
    audio = synth_music.additive_progression(tonic, mode, progression, bpm=100)
    result = analyze(audio, SR)
    assert result.key == f"{synth_music.PITCH_NAMES[tonic]} {mode}"
    assert result.camelot == camelot_code(synth_music.PITCH_NAMES[tonic], mode)
    assert result.key_confidence > 0.3
    assert within(result.bpm, 100.0)


def test_input_layouts_and_rates_agree() -> None:
    mono = synth_music.additive_progression(7, "major", ("I", "IV", "V", "I"), bpm=110, repeats=2)
    stereo = np.stack([mono, mono])
    reference = analyze(mono, SR)
    assert analyze(stereo, SR) == reference
    assert analyze(stereo.T.copy(), SR) == reference  # (n, channels) as soundfile returns it
    upsampled = np.repeat(stereo, 2, axis=1)  # crude 44.1 kHz version: same tempo and key
    at_44k = analyze(upsampled, 2 * SR)
    assert at_44k.key == reference.key and within(at_44k.bpm, 110.0)


# --- Rendered songs (FluidSynth) ---------------------------------------------------------------

needs_fluidsynth = pytest.mark.skipif(
    not synth_music.fluidsynth_available(), reason="fluidsynth or the GM soundfont is missing"
)


@needs_fluidsynth
@pytest.mark.parametrize(
    "spec",
    [
        synth_music.SongSpec("drums-minor", seed=11, bpm=126.0, tonic=9, mode="minor", drums=True, duration_s=20.0),
        synth_music.SongSpec(
            "no-drums-major", seed=5, bpm=92.5, tonic=2, mode="major", drums=False, duration_s=20.0, detune_cents=-20.0
        ),
    ],
    ids=lambda s: s.name,
)
def test_rendered_song(spec: synth_music.SongSpec, tmp_path: Path) -> None:
    _, audio = synth_music.render_song(spec, cache_dir=tmp_path)
    result = analyze(audio, synth_music.RENDER_SR)
    assert within(result.bpm, spec.true_bpm), (result, synth_music.compose(spec).description)
    assert result.key == spec.key, (result, synth_music.compose(spec).description)
