"""Fast checks of the independent evaluation sets (tests/song_sets.py)."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from tests import song_sets
from tests.synth_music import fluidsynth_available


def test_sets_are_deterministic_and_seeded():
    for name in song_sets.SET_NAMES:
        assert song_sets.song_set(name, count=24) == song_sets.song_set(name, count=24)
    assert song_sets.song_set("sparse", seed=1) != song_sets.song_set("sparse", seed=0)
    song = song_sets.song_set("swing", count=4)[1]
    assert song_sets.compose(song).notes == song_sets.compose(song).notes


def test_all_24_keys_evenly_and_tempos_in_range():
    for name in song_sets.SET_NAMES:
        songs = song_sets.song_set(name)
        assert len(songs) == 48
        keys = collections.Counter((s.tonic, s.mode) for s in songs)
        assert len(keys) == 24 and set(keys.values()) == {2}, name
        assert all(70 <= s.bpm <= 170 for s in songs), name
        assert any(s.drums for s in songs) and not all(s.drums for s in songs), name
        assert all(s.set_name == name for s in songs)
        assert all(abs(s.detune_cents) <= 25 for s in songs)
    slow_drums = [s for s in song_sets.song_set("harmonic") if s.bpm <= 90 and s.drums]
    assert len(slow_drums) >= 15


def test_holdout_mixes_every_family_from_its_own_stream():
    holdout = song_sets.song_set("holdout")
    assert {s.family for s in holdout} == set(song_sets.FAMILIES)
    others = {s.seed for name in song_sets.SET_NAMES[:5] for s in song_sets.song_set(name)}
    assert not others & {s.seed for s in holdout}


def test_key_label_and_true_tempo():
    song = song_sets.SetSong("x", "harmonic", 1, 100.0, 9, "minor", True, "harmonic/hminor-cadence/backbeat8",
                             False, detune_cents=12.0)
    assert song.key == "A minor"
    assert song.written_bpm * 2 ** (12 / 1200) == pytest.approx(100.0)


def _short(song: song_sets.SetSong) -> song_sets.SetSong:
    import dataclasses

    return dataclasses.replace(song, duration_s=4.0, bpm=150.0)


def _check_render(song: song_sets.SetSong, tmp_path) -> None:
    mix = song_sets.render(song, cache_dir=tmp_path)
    inst = song_sets.render(song, "instrumental", cache_dir=tmp_path)
    assert mix.dtype == np.float32 and mix.ndim == 2 and mix.shape[0] == 2
    assert mix.shape == inst.shape
    assert 0.85 < float(np.max(np.abs(mix))) <= 0.91
    assert 3.0 < mix.shape[1] / 44100 < 12.0
    assert np.array_equal(mix, song_sets.render(song, cache_dir=tmp_path))  # cache hit
    if song.has_vocal:
        assert not np.allclose(mix, inst, atol=1e-3)
    else:
        assert np.array_equal(mix, inst)


def test_additive_render_shape_and_stems(tmp_path):
    songs = song_sets.song_set("additive", count=24)
    vocal = _short(next(s for s in songs if s.has_vocal and s.drums))
    _check_render(vocal, tmp_path)


@pytest.mark.skipif(not fluidsynth_available(), reason="fluidsynth or the GM soundfont is missing")
def test_fluidsynth_render_shape_and_stems(tmp_path):
    songs = song_sets.song_set("offtonic", count=24)
    _check_render(_short(next(s for s in songs if s.has_vocal)), tmp_path)
    _check_render(_short(next(s for s in songs if not s.has_vocal)), tmp_path)
