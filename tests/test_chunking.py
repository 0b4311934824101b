"""Chunked overlap-add must be transparent: an identity model gives back its input everywhere."""

import pytest
import torch

from separation_worker.inference.chunking import plan, run_chunked
from separation_worker.models.loader import ChunkingParams

SCHEDULES = [
    ChunkingParams(chunk_size=1000, overlap=4, window="hamming"),  # Roformer-like
    ChunkingParams(chunk_size=1000, overlap=1, window="hamming"),  # no overlap but the tail
    ChunkingParams(chunk_size=1020, overlap=4, window="rect"),  # MDX23C-like, divisible
    ChunkingParams(chunk_size=1000, overlap=3, window="rect"),  # step does not divide the chunk
]
LENGTHS = [1, 37, 249, 999, 1000, 1001, 1250, 2503, 7919]


@pytest.mark.parametrize("params", SCHEDULES, ids=lambda p: f"{p.window}-{p.chunk_size}-{p.overlap}")
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_identity_model_is_transparent(params, length, batch_size):
    torch.manual_seed(length)
    mix = torch.randn(2, length)
    out = run_chunked(lambda batch: batch, mix, params, num_stems=1, batch_size=batch_size)
    assert out.shape == (1, 2, length)
    # Start, end and seams included: compare every sample.
    torch.testing.assert_close(out[0], mix, rtol=1e-6, atol=1e-6)


def test_multi_stem_outputs_and_fixed_batches():
    params = ChunkingParams(chunk_size=512, overlap=2, window="rect")
    mix = torch.randn(2, 3000)
    calls = []

    def two_stems(batch):
        calls.append(batch.shape[0])
        return torch.stack([batch, -2 * batch], dim=1)

    out = run_chunked(two_stems, mix, params, num_stems=2, batch_size=4, fixed_batch=True)
    torch.testing.assert_close(out[0], mix, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out[1], -2 * mix, rtol=1e-6, atol=1e-6)
    assert set(calls) == {4}  # the last batch was zero-filled to the same shape


def test_progress_reports_every_batch():
    params = ChunkingParams(chunk_size=100, overlap=2, window="hamming")
    seen = []
    run_chunked(lambda b: b, torch.randn(2, 1000), params, 1, batch_size=5, progress=lambda d, t: seen.append((d, t)))
    total = len(plan(1000, params).starts)
    assert seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_roformer_schedule_matches_audio_separator():
    from audio_separator.separator.architectures.mdxc_separator import MDXCSeparator

    for length in (5000, 8000, 12345):
        ours = plan(length, ChunkingParams(chunk_size=4000, overlap=4, window="hamming")).starts
        assert list(ours) == MDXCSeparator._roformer_chunk_starts(length, 4000, 1000)
