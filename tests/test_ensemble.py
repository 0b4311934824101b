"""The ensemble is a weighted average of vocal estimates; the stems add back up to the mix."""

import numpy as np
import pytest

from separation_worker.engine import SeparationEngine
from separation_worker.inference.device import run_config
from separation_worker.models.zoo import DEFAULT_ENSEMBLE, ModelSpec, parse_ensemble
from tests.conftest import music


def test_default_ensemble_is_the_documented_one():
    members = {m.checkpoint: (m.weight, m.config) for m in DEFAULT_ENSEMBLE.members}
    assert members == {
        "model_bs_roformer_ep_317_sdr_12.9755.ckpt": (0.40, "model_bs_roformer_ep_317_sdr_12.9755.yaml"),
        "vocals_mel_band_roformer.ckpt": (0.35, "vocals_mel_band_roformer.yaml"),
        "MDX23C-8KFFT-InstVoc_HQ.ckpt": (0.25, "model_2_stem_full_band_8k.yaml"),
    }


def test_weighted_average_of_each_models_stems(engine):
    mix = music(6.5, seed=7)
    out = engine.separate(mix)
    members = DEFAULT_ENSEMBLE.members
    for combined, per_model in ((out.vocals, out.per_model_vocals), (out.instrumental, out.per_model_instrumental)):
        expected = sum(m.weight * per_model[m.name] for m in members) / DEFAULT_ENSEMBLE.total_weight
        np.testing.assert_allclose(combined, expected, rtol=1e-5, atol=1e-6)
    assert len({round(float(np.abs(v).mean()), 6) for v in out.per_model_vocals.values()}) == 3
    # The Roformers output vocals only: their instrumental is the rest of the mix.
    for m in members[:2]:
        np.testing.assert_allclose(out.per_model_vocals[m.name] + out.per_model_instrumental[m.name], mix, atol=1e-6)
    # MDX23C predicts both stems with separate heads: the ensemble's stems sum to the mix
    # up to its weight times what those heads leave out.
    mdx = members[2]
    gap = mix - out.per_model_vocals[mdx.name] - out.per_model_instrumental[mdx.name]
    np.testing.assert_allclose(
        out.vocals + out.instrumental, mix - mdx.weight / DEFAULT_ENSEMBLE.total_weight * gap, atol=1e-5
    )


def test_weights_and_vocals_stem_are_configurable(settings, tmp_path):
    spec_json = (
        '[{"name": "only MDX", "checkpoint": "MDX23C-8KFFT-InstVoc_HQ.ckpt",'
        ' "config": "model_2_stem_full_band_8k.yaml", "weight": 2, "vocals_stem": "Instrumental"}]'
    )
    ensemble = parse_ensemble(spec_json)
    assert ensemble.members == (
        ModelSpec("only MDX", "MDX23C-8KFFT-InstVoc_HQ.ckpt", "model_2_stem_full_band_8k.yaml", 2, "Instrumental"),
    )
    engine = SeparationEngine(ensemble, settings.model_dir, run_config("cpu"))
    mix = music(3.0, seed=1)
    out = engine.separate(mix)
    # With one member the ensemble is that model's chosen output, whatever its weight.
    np.testing.assert_allclose(out.vocals, out.per_model_vocals["only MDX"], atol=1e-6)


def test_ensemble_from_yaml_file(tmp_path):
    path = tmp_path / "ensemble.yaml"
    path.write_text(
        "members:\n"
        "  - {name: A, checkpoint: a.ckpt, config: a.yaml, weight: 0.5}\n"
        "  - {name: B, checkpoint: b.ckpt, config: b.yaml, weight: 0.5, vocals_stem: Vocals}\n"
    )
    ensemble = parse_ensemble(str(path))
    assert [m.name for m in ensemble.members] == ["A", "B"]
    assert ensemble.members[1].vocals_stem == "Vocals"


@pytest.mark.parametrize("bad", ["[]", '[{"name": "x"}]', '[{"name": "x", "checkpoint": "a", "config": "b", "weight": 0}]'])
def test_bad_ensembles_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_ensemble(bad)


def test_models_stay_loaded(engine):
    modules = [m.module for m in engine._models]
    engine.separate(music(1.0))
    assert [m.module for m in engine._models] == modules
