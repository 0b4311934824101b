"""`--preset fast`: Kim's Mel-Band Roformer alone, as data beside the ensemble; the manifest names what ran."""

import json

import numpy as np
import pytest

from separation_worker import audio_io
from separation_worker.models.zoo import (
    DEFAULT_ENSEMBLE,
    FAST_ENSEMBLE,
    PRESETS,
    ensemble_for,
    parse_ensemble,
)
from tests.conftest import music, write_audio
from tests.test_cli import run_cli

MEL_BAND = DEFAULT_ENSEMBLE.members[1]


def test_presets_are_data():
    assert set(PRESETS) == {"default", "fast"}
    assert PRESETS["default"] is DEFAULT_ENSEMBLE
    (only,) = PRESETS["fast"].members
    assert (only.name, only.checkpoint, only.config, only.vocals_stem) == (
        "Mel-Band Roformer", "vocals_mel_band_roformer.ckpt", "vocals_mel_band_roformer.yaml", MEL_BAND.vocals_stem)
    assert only.weight == 1.0


def test_the_default_preset_is_the_configured_ensemble_and_others_replace_it():
    custom = '[{"name": "A", "checkpoint": "a.ckpt", "config": "a.yaml", "weight": 1}]'
    assert ensemble_for("default") == DEFAULT_ENSEMBLE
    assert [m.name for m in ensemble_for("default", custom).members] == ["A"]
    assert ensemble_for("fast", custom) == FAST_ENSEMBLE
    with pytest.raises(ValueError, match="unknown preset 'turbo'"):
        ensemble_for("turbo")


def test_a_preset_reads_back_as_a_setting():
    for ensemble in PRESETS.values():
        assert parse_ensemble(ensemble.to_setting()) == ensemble


def test_separate_with_the_fast_preset_runs_mel_band_alone(tmp_path, cli_env, engine):
    x = music(3.0, level=0.05)
    song = write_audio(tmp_path / "quiet.wav", x)
    # Loudness neutralised (as in test_cli), so the stems are the model's own output.
    env = {**cli_env, "STEMBOT_MAX_GAIN_DB": "0", "STEMBOT_LOUDNESS_TARGET_LUFS": "0"}
    out = tmp_path / "fast"
    proc = run_cli(["separate", str(song), "--out", str(out), "--format", "wav", "--preset", "fast"], env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["models"] == [{"name": "Mel-Band Roformer", "checkpoint": MEL_BAND.checkpoint, "weight": 1.0}]
    vocals = audio_io.decode(out / "quiet (Vocals).wav", 60).samples
    expected = engine.separate(audio_io.decode(song, 60).samples).per_model_vocals[MEL_BAND.name]
    assert np.abs(vocals - expected).max() < 1e-4  # 24-bit quantization only
    assert "Separating on" not in proc.stderr  # a few seconds: no hint


def test_help_names_the_presets(cli_env):
    proc = run_cli(["separate", "--help"], cli_env)
    assert proc.returncode == 0
    assert "--preset {default,fast}" in proc.stdout
