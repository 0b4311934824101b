"""The GPU path's parts that a CPU can check: MDX23C's split forward, the eager tail, the compile plans.

(Their speed and fp16 SNR are measured by `bench/separation.py --device cuda`.)
"""

from functools import partial

import pytest
import torch

from separation_worker.inference import compiling, mdx23c
from separation_worker.inference.chunking import Batch, batches, run_chunked
from separation_worker.inference.device import keep_on_device
from separation_worker.models.loader import ChunkingParams
from tests.conftest import music


def model_named(engine, family):
    return next(m for m in engine._models if m.family == family)


def test_mdx23c_split_forward_is_its_own_forward(engine):
    model = model_named(engine, "mdx23c")
    x = torch.from_numpy(music(6.0, seed=1))[:, : model.chunking.chunk_size].unsqueeze(0).repeat(2, 1, 1)
    with torch.inference_mode():
        theirs = model.module(x)
        ours = mdx23c.forward_with(model.module, partial(mdx23c.network, model.module))(x)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_cpu_models_are_left_as_they_are(engine):
    for model in engine._models:
        before = (vars(model.module).get("forward"), getattr(model.module, "stft_window_fn", None))
        keep_on_device(model, torch.device("cpu"))
        assert (vars(model.module).get("forward"), getattr(model.module, "stft_window_fn", None)) == before


@pytest.mark.parametrize("total, size, fixed, tail, expected", [
    (19, 8, True, True, [Batch(0, 8, 8), Batch(8, 8, 8), Batch(16, 3, 3, eager=True)]),  # short tail: eager
    (21, 8, True, True, [Batch(0, 8, 8), Batch(8, 8, 8), Batch(16, 5, 8)]),  # long tail: zero-filled
    (19, 8, True, False, [Batch(0, 8, 8), Batch(8, 8, 8), Batch(16, 3, 8)]),
    (19, 8, False, False, [Batch(0, 8, 8), Batch(8, 8, 8), Batch(16, 3, 3)]),
    (3, 1, True, True, [Batch(0, 1, 1), Batch(1, 1, 1), Batch(2, 1, 1)]),
])
def test_batches(total, size, fixed, tail, expected):
    assert batches(total, size, fixed, tail) == expected


def test_a_short_tail_goes_through_the_eager_model_unfilled():
    params = ChunkingParams(chunk_size=512, overlap=2, window="hamming")
    mix = torch.randn(2, 512 * 5)  # 9 chunks: 4 + 4 + a tail of 1
    main, tail = [], []

    def compiled(batch):
        main.append(batch.shape[0])
        return batch

    def eager(batch):
        tail.append(batch.shape[0])
        return batch

    out = run_chunked(compiled, mix, params, 1, batch_size=4, fixed_batch=True, tail_fn=eager)
    torch.testing.assert_close(out[0], mix, rtol=1e-6, atol=1e-6)
    assert main == [4, 4] and tail == [1]


@pytest.mark.parametrize("family, labels", [
    ("bs_roformer", ["network", "transformer blocks"]),
    ("mel_band_roformer", ["network", "transformer blocks"]),
    ("mdx23c", ["network"]),
])
def test_compile_plans_apply_and_undo(engine, family, labels):
    model = model_named(engine, family)
    module = model.module
    own = {id(m): vars(m).get("forward") for m in module.modules()}
    compiled = compiling.Compiled(model.spec.name, compiling.plans_for(model))
    assert [p.label for p in compiled.plans] == labels
    compiled.apply()  # torch.compile is lazy: nothing compiles until called
    replaced = {id(m) for m in module.modules() if vars(m).get("forward") is not own[id(m)]}
    if family == "mdx23c":
        assert replaced == {id(module)}
    else:
        blocks = {id(b) for layer in module.layers for b in layer}
        assert blocks < replaced and id(module.band_split) in replaced
        assert all(id(m) in replaced for m in module.mask_estimators)
        assert compiled.next_plan() and compiled.label == "transformer blocks"
        assert {id(m) for m in module.modules() if vars(m).get("forward") is not own[id(m)]} == blocks
    assert not compiled.next_plan()
    assert all(vars(m).get("forward") is own[id(m)] for m in module.modules())
