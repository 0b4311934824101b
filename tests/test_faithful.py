"""With fp32 and the same chunking, each model's output equals audio-separator's own separation."""

import json
import logging

import numpy as np
import pytest
import torch

from separation_worker.models.zoo import DEFAULT_ENSEMBLE
from tests.conftest import music
from tests.support.model_factory import DOWNLOAD_CHECKS


@pytest.fixture(scope="module")
def reference_separator(model_dir, tmp_path_factory):
    from audio_separator.separator import Separator

    (model_dir / "download_checks.json").write_text(json.dumps(DOWNLOAD_CHECKS))
    return Separator(
        model_file_dir=str(model_dir), output_dir=str(tmp_path_factory.mktemp("ref")), log_level=logging.ERROR
    )


@pytest.mark.parametrize("index", range(len(DEFAULT_ENSEMBLE.members)), ids=[m.name for m in DEFAULT_ENSEMBLE.members])
def test_model_matches_audio_separator(index, engine, reference_separator):
    model = engine._models[index]
    spec = model.spec
    # Longer than every model's chunk, not a multiple of any step: seams and a tail window.
    mix = music(13.37, seed=index)

    reference_separator.load_model(spec.checkpoint)
    theirs = reference_separator.model_instance.demix(mix.copy(), override_model_segment_size=False)
    theirs = theirs[spec.vocals_stem] if isinstance(theirs, dict) else theirs

    ours = engine.separate_model(model, torch.from_numpy(mix))[spec.vocals_stem].numpy()
    assert ours.shape == theirs.shape == mix.shape
    assert np.abs(theirs).max() > 1e-3  # a real output, not an empty one
    relative_error = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
    assert relative_error < 1e-4, f"{spec.name}: relative error {relative_error:.2e}"
