"""Separation modes: the ensemble, then split models over its stems; every mode's stems add back up to the input.

The split models are the zoo's published YAMLs (tests/support/published_configs, see PROVENANCE.md) with only the
network size shrunk, loaded through the same code path as the ensemble.
"""

import json

import numpy as np
import pytest
import torch

from separation_worker import audio_io
from separation_worker.contract.modes import MODE_NAMES
from separation_worker.engine import SeparationEngine
from separation_worker.inference.device import run_config
from separation_worker.models import loader
from separation_worker.models.modes import DEFAULT_MODE, MODES, mode_named
from separation_worker.models.zoo import FAST_ENSEMBLE
from tests.conftest import music, write_audio
from tests.support.model_factory import PUBLISHED_CONFIGS, published_config, write_model
from tests.test_cli import run_cli


def test_modes_are_the_documented_ones():
    assert list(MODES) == list(MODE_NAMES) == ["vocals", "karaoke", "stems", "clean-vocals"] and DEFAULT_MODE == "vocals"
    assert MODES["karaoke"].order == ("lead_vocals", "backing_vocals", "instrumental", "instrumental_backing")
    assert MODES["karaoke"].parts == ("lead_vocals", "backing_vocals", "instrumental")
    assert MODES["stems"].order == ("vocals", "drums", "bass", "guitar", "piano", "other")
    assert MODES["clean-vocals"].parts[:2] == ("vocals", "instrumental")
    with pytest.raises(ValueError, match="unknown mode 'choir': one of vocals, karaoke, stems, clean-vocals"):
        mode_named("choir")


@pytest.mark.parametrize("name", [n for n in MODES if MODES[n].splits])
def test_every_kept_stem_is_one_the_published_yaml_names(name):
    for split in MODES[name].splits:
        assert (PUBLISHED_CONFIGS / split.model.config).is_file(), split.model.config
        training = published_config(split.model.config)["training"]
        published = {str(n).casefold() for n in training["instruments"]}
        for spellings, _ours in split.keep:
            assert published & {s.casefold() for s in spellings}, (split.model.config, spellings, published)


MIX = music(4.0, seed=3)


@pytest.fixture(scope="module")
def separated(engine):
    """Each mode's separation of MIX, once (the ensemble dominates the cost)."""
    return {name: engine.separate(MIX, mode=mode) for name, mode in MODES.items()}


@pytest.mark.parametrize("name", list(MODES))
def test_stems_add_back_up_to_the_input(separated, name):
    mode, out = MODES[name], separated[name]
    assert list(out.stems) == list(mode.order)
    np.testing.assert_allclose(sum(out.stems[p] for p in mode.parts), MIX, atol=2e-5)
    for stem in out.stems.values():
        assert stem.shape == MIX.shape and stem.dtype == np.float32 and np.abs(stem).max() > 0
    for mixed, parts in mode.mixes:
        np.testing.assert_allclose(out.stems[mixed], sum(out.stems[p] for p in parts), atol=1e-6)
    # The ensemble runs as in the default mode: the splits only refine its stems.
    np.testing.assert_allclose(out.vocals, separated["vocals"].vocals, atol=1e-6)


def test_karaoke_splits_the_ensembles_vocals_into_lead_and_backing(engine, separated):
    default, out = separated["vocals"].stems, separated["karaoke"].stems
    np.testing.assert_allclose(out["lead_vocals"] + out["backing_vocals"], default["vocals"], atol=1e-5)
    np.testing.assert_allclose(out["instrumental"], default["instrumental"], atol=1e-6)
    # The lead is the karaoke model's own target, run on the ensemble's vocals.
    model = engine.split_model(MODES["karaoke"].splits[0].model)
    (lead,) = engine.separate_model(model, torch.from_numpy(default["vocals"])).values()
    np.testing.assert_allclose(out["lead_vocals"], lead.numpy(), atol=1e-6)


def test_clean_vocals_are_the_vocals_dereverbed_then_denoised(engine, separated):
    out = separated["clean-vocals"].stems
    dereverb, denoise = (engine.split_model(s.model) for s in MODES["clean-vocals"].splits)
    (dry,) = engine.separate_model(dereverb, torch.from_numpy(separated["vocals"].stems["vocals"])).values()
    (clean,) = engine.separate_model(denoise, dry).values()
    np.testing.assert_allclose(out["vocals"], clean.numpy(), atol=1e-5)


def test_the_karaoke_authors_spelling_loads_the_same(tmp_path, model_dir):
    """Its author's YAML names the lead "karaoke" and the rest "other"; the zoo's copy says Vocals/Instrumental."""
    spec = MODES["karaoke"].splits[0].model
    for variant, folder in (("", tmp_path / "zoo"), ("training-repo", tmp_path / "author")):
        write_model(folder, spec.checkpoint, spec.config, seed=10, variant=variant)
        if variant:  # and under its author's file name, as a copy from the author's repository would be
            (folder / spec.config).rename(folder / "config_mel_band_roformer_karaoke.yaml")
        for member in FAST_ENSEMBLE.members:  # one ensemble member is enough to feed the split
            for file in (member.checkpoint, member.config):
                (folder / file).symlink_to(model_dir / file)
    stems = []
    for folder in (tmp_path / "zoo", tmp_path / "author"):
        engine = SeparationEngine(FAST_ENSEMBLE, folder, run_config("cpu"))
        stems.append(engine.separate(music(3.0, seed=2), mode=MODES["karaoke"]).stems)
    author_yaml = tmp_path / "author" / "config_mel_band_roformer_karaoke.yaml"
    assert loader.read_config(author_yaml)["training"]["target_instrument"] == "karaoke"
    assert not (tmp_path / "author" / spec.config).exists()
    for name in MODES["karaoke"].order:
        np.testing.assert_allclose(stems[0][name], stems[1][name], atol=1e-6)


def test_separate_mode_stems_raw_writes_six_stems_that_null_against_the_input(tmp_path, cli_env):
    song = write_audio(tmp_path / "band.wav", music(3.0, seed=4, level=0.1))
    out = tmp_path / "out"
    proc = run_cli(["separate", str(song), "--out", str(out), "--mode", "stems", "--raw", "--format", "wav",
                    "--preset", "fast"], cli_env)  # one ensemble member: the split is what is tested
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["mode"] == "stems" and result["raw"] is True
    assert list(result["stems"]) == ["vocals", "drums", "bass", "guitar", "piano", "other"]
    assert [s["label"] for s in result["stems"].values()] == ["Vocals", "Drums", "Bass", "Guitar", "Piano", "Other"]
    assert [m["name"] for m in result["models"]][-1] == "BS-Roformer SW"
    assert result["models"][-1]["splits"] == "instrumental"
    stems = [audio_io.decode(out / s["file"], 60).samples for s in result["stems"].values()]
    assert all(s["file"].endswith(".wav") for s in result["stems"].values())
    original = audio_io.decode(song, 60).samples
    assert np.abs(sum(stems) - original).max() < 1e-4  # 24-bit quantization only


def test_separate_mode_karaoke_names_its_files_for_people(tmp_path, cli_env):
    song = write_audio(tmp_path / "Night Drive.wav", music(3.0, seed=6))
    out = tmp_path / "out"
    proc = run_cli(["separate", str(song), "--out", str(out), "--mode", "karaoke", "--preset", "fast"], cli_env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["mode"] == "karaoke" and result["raw"] is False
    files = [s["file"] for s in result["stems"].values()]
    assert files == ["Night Drive (Lead Vocals).mp3", "Night Drive (Backing Vocals).mp3",
                     "Night Drive (Instrumental).mp3", "Night Drive (Instrumental + Backing).mp3"]
    assert all((out / f).is_file() for f in files)
    assert all(s["loudness"]["lufs_after"] is not None for s in result["stems"].values() if not s["silent"])
    assert "Lead Vocals" in proc.stdout or "Lead Vocals" in files[0]


def test_raw_refuses_a_lossy_format(tmp_path, cli_env):
    song = write_audio(tmp_path / "a.wav", music(1.0))
    proc = run_cli(["separate", str(song), "--out", str(tmp_path / "o"), "--raw", "--format", "mp3"], cli_env)
    assert proc.returncode == 2 and "lossless" in proc.stderr and not (tmp_path / "o").exists()


def test_models_list_and_download_cover_the_modes_models(cli_env, tmp_path):
    listed = run_cli(["models", "list", "--mode", "all"], cli_env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    names = [spec.checkpoint for mode in MODES.values() for spec in mode.models]
    assert all(name in listed.stdout for name in names) and listed.stdout.count("[present]") == 3 + len(set(names))
    fetched = run_cli(["models", "download", "--mode", "karaoke,stems"], cli_env)  # all there: no network needed
    assert fetched.returncode == 0 and fetched.stdout.strip().endswith("All 5 models are in " + cli_env["STEMBOT_MODEL_DIR"])
    missing = run_cli(["models", "list", "--mode", "karaoke"], {**cli_env, "STEMBOT_MODEL_DIR": str(tmp_path / "none")})
    assert missing.returncode == 1
    assert missing.stdout.splitlines()[-1] == (
        "4 of 4 models are missing or damaged: run `stembot models download --mode karaoke`")
    bad = run_cli(["models", "download", "--mode", "choir"], cli_env)
    assert bad.returncode == 2 and "unknown mode 'choir'" in bad.stderr
