"""Against audio-separator itself, on the zoo's published YAMLs (only the network size shrunk).

Per model: with fp32 and the same chunking, each stem equals audio-separator's own demix.
Whole ensemble: vocals and instrumental equal audio-separator's `Separator` outputs of each model,
read back from the files it writes, combined 0.40/0.35/0.25.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from separation_worker.contract.errors import ModelError
from separation_worker.engine import SeparationEngine
from separation_worker.inference.device import run_config
from separation_worker.models import loader
from separation_worker.models.zoo import DEFAULT_ENSEMBLE, Ensemble, ModelSpec
from tests.conftest import SR, music
from tests.support.model_factory import DOWNLOAD_CHECKS, config_for, write_config, write_ensemble

BS_ROFORMER = DEFAULT_ENSEMBLE.members[0]


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / max(np.sum((estimate - reference) ** 2), 1e-30)))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def reference_for(model_dir: Path, out_dir: Path):
    from audio_separator.separator import Separator

    (model_dir / "download_checks.json").write_text(json.dumps(DOWNLOAD_CHECKS))
    return Separator(model_file_dir=str(model_dir), output_dir=str(out_dir), log_level=logging.ERROR)


@pytest.fixture(scope="module")
def reference_separator(model_dir, tmp_path_factory):
    return reference_for(model_dir, tmp_path_factory.mktemp("ref"))


def published_stems(spec: ModelSpec, files: list[str], out_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vocals, the other stem) from the files audio-separator wrote, named as the model's YAML names them."""
    stems: dict[str, np.ndarray] = {}
    for name in files:
        stem = name.rsplit("_(", 1)[-1].split(")", 1)[0] if "_(" in name else ""
        audio, rate = sf.read(out_dir / Path(name).name, dtype="float32", always_2d=True)
        assert rate == SR
        stems[stem.casefold()] = audio.T
    assert "vocals" in stems and len(stems) == 2, f"{spec.name}: audio-separator wrote {sorted(stems)}"
    other = next(v for k, v in stems.items() if k != "vocals")
    return stems["vocals"], other


@pytest.mark.parametrize("index", range(len(DEFAULT_ENSEMBLE.members)), ids=[m.name for m in DEFAULT_ENSEMBLE.members])
def test_model_matches_audio_separator(index, engine, reference_separator):
    model = engine._models[index]
    spec = model.spec
    # Longer than every model's chunk, not a multiple of any step: seams and a tail window.
    mix = music(13.37, seed=index)

    reference_separator.load_model(spec.checkpoint)
    theirs = reference_separator.model_instance.demix(mix.copy(), override_model_segment_size=False)
    theirs = {name.casefold(): stem for name, stem in theirs.items()}

    x = torch.from_numpy(mix)
    vocals, instrumental = (s.numpy() for s in engine.split_of(model, engine.separate_model(model, x), x))
    others = [stem for name, stem in theirs.items() if name != "vocals"]
    for ours, reference in ((vocals, theirs["vocals"]), (instrumental, others[0])):
        assert ours.shape == reference.shape == mix.shape
        assert np.abs(reference).max() > 1e-3  # a real output, not an empty one
        relative_error = np.linalg.norm(ours - reference) / np.linalg.norm(reference)
        assert relative_error < 1e-4, f"{spec.name}: relative error {relative_error:.2e}"


def test_ensemble_matches_audio_separators_outputs_combined(engine, reference_separator, tmp_path):
    mix = music(11.3, seed=5)
    song = tmp_path / "song.wav"
    sf.write(song, mix.T, SR, subtype="FLOAT")
    out_dir = Path(reference_separator.output_dir)

    combined_vocals = np.zeros_like(mix)
    combined_instrumental = np.zeros_like(mix)
    for spec in DEFAULT_ENSEMBLE.members:
        reference_separator.load_model(spec.checkpoint)
        vocals, instrumental = published_stems(spec, reference_separator.separate(str(song)), out_dir)
        combined_vocals += spec.weight / DEFAULT_ENSEMBLE.total_weight * vocals
        combined_instrumental += spec.weight / DEFAULT_ENSEMBLE.total_weight * instrumental

    ours = engine.separate(mix)
    # audio-separator writes 16-bit files: its quantization noise bounds the match.
    assert snr_db(ours.vocals, combined_vocals) > 40
    assert snr_db(ours.instrumental, combined_instrumental) > 40
    assert correlation(ours.vocals, combined_vocals) > 0.9999
    # The inversion this guards against: vocals that are really the accompaniment.
    assert correlation(ours.vocals, mix) < 0.9


def test_bs_roformer_loads_the_same_under_either_published_spelling(tmp_path, engine):
    """UVR's copy says Vocals/Instrumental, the training repository's vocals/other: same vocals."""
    ensemble = Ensemble(members=(BS_ROFORMER,))
    mix = music(4.0, seed=3)
    results = []
    for variant in ("", "training-repo"):
        model_dir = write_ensemble(tmp_path / (variant or "uvr"), ensemble=ensemble, variant=variant)
        variant_engine = SeparationEngine(ensemble, model_dir, run_config("cpu"))
        variant_engine.load(allow_download=False)
        results.append(variant_engine.separate(mix).vocals)
    assert loader.read_config(tmp_path / "uvr" / BS_ROFORMER.config)["training"]["target_instrument"] == "Vocals"
    np.testing.assert_array_equal(results[0], results[1])


def _bs_roformer_with(tmp_path: Path, **training) -> Path:
    """The tiny BS-Roformer whose YAML names its stems otherwise."""
    model_dir = write_ensemble(tmp_path / "models", ensemble=Ensemble(members=(BS_ROFORMER,)))
    config = config_for(BS_ROFORMER.config)
    config["training"].update(training)
    write_config(model_dir / BS_ROFORMER.config, config)
    return model_dir


def test_single_target_accompaniment_model_gives_the_rest_as_vocals(tmp_path):
    model_dir = _bs_roformer_with(tmp_path, instruments=["Vocals", "Instrumental"], target_instrument="Instrumental")
    engine = SeparationEngine(Ensemble(members=(BS_ROFORMER,)), model_dir, run_config("cpu"))
    engine.load(allow_download=False)
    mix = music(3.0, seed=2)
    model = engine._models[0]
    x = torch.from_numpy(mix)
    target = engine.separate_model(model, x)["Instrumental"].numpy()
    out = engine.separate(mix)
    np.testing.assert_allclose(out.instrumental, target, atol=1e-6)
    np.testing.assert_allclose(out.vocals, mix - target, atol=1e-6)


def test_a_model_without_vocals_is_a_clear_error(tmp_path):
    model_dir = _bs_roformer_with(tmp_path, instruments=["drums", "bass"], target_instrument="drums")
    engine = SeparationEngine(Ensemble(members=(BS_ROFORMER,)), model_dir, run_config("cpu"))
    with pytest.raises(ModelError, match=r"BS-Roformer: none of its outputs \['drums'\].*is the vocals"):
        engine.load(allow_download=False)
