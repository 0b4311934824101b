"""Chunked inference over a whole song: overlapping windows, batched, overlap-added on the device.

The schedule and window follow audio-separator's MDXC separator exactly (so fp32 results match
it), but chunks go through the model in batches and the accumulation never leaves the device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.signal import windows

from ..models.loader import ChunkingParams

ModelFn = Callable[[torch.Tensor], torch.Tensor]  # (batch, channels, chunk) -> (batch, [stems,] channels, chunk)
ChunkProgress = Callable[[int, int], None]  # (chunks done, chunks total)


@dataclass(frozen=True)
class ChunkPlan:
    front_pad: int
    back_pad: int
    starts: tuple[int, ...]  # in padded coordinates


def plan(length: int, params: ChunkingParams) -> ChunkPlan:
    chunk, step = params.chunk_size, params.step
    if step <= 0:
        raise ValueError(f"overlap {params.overlap} exceeds chunk size {chunk}")
    if params.window == "rect":
        # MDX23C: pad so that every sample is covered by exactly `overlap` whole windows.
        front = chunk - step
        back = step - (length - chunk) % step + chunk - step
        total = front + length + back
        return ChunkPlan(front, back, tuple(range(0, total - chunk + 1, step)))
    if length <= chunk:
        # Shorter than one window: zero-pad to a full one, so every chunk has the same shape.
        return ChunkPlan(0, chunk - length, (0,))
    starts = list(range(0, length - chunk, step))
    starts.append(length - chunk)  # the tail window ends exactly at the end, as audio-separator's does
    return ChunkPlan(0, 0, tuple(dict.fromkeys(starts)))


def window_for(params: ChunkingParams, device: torch.device) -> torch.Tensor:
    if params.window == "hamming":
        return torch.tensor(windows.hamming(params.chunk_size), dtype=torch.float32, device=device)
    return torch.ones(params.chunk_size, dtype=torch.float32, device=device)


@dataclass(frozen=True)
class Batch:
    first: int  # index of its first chunk in the plan
    count: int  # the song's chunks in it
    size: int  # rows the model is given: count, or more where zero-filled to the compiled shape
    eager: bool = False  # a short tail run uncompiled rather than zero-filled


def batches(total: int, batch_size: int, fixed_batch: bool = False, eager_tail: bool = False) -> list[Batch]:
    """How `total` chunks go through the model, `batch_size` at a time.

    `fixed_batch` zero-fills the last batch to `batch_size` (one shape: no recompiles under torch.compile).
    With `eager_tail` a last batch of at most half a batch runs uncompiled at its own size instead: that
    costs less than the zero-filled one unless compiling made the model more than twice as fast.
    """
    out = []
    for first in range(0, total, batch_size):
        count = min(batch_size, total - first)
        if count == batch_size or not fixed_batch:
            out.append(Batch(first, count, count))
        elif eager_tail and count <= batch_size // 2:
            out.append(Batch(first, count, count, eager=True))
        else:
            out.append(Batch(first, count, batch_size))
    return out


@torch.inference_mode()
def run_chunked(
    model_fn: ModelFn,
    mix: torch.Tensor,
    params: ChunkingParams,
    num_stems: int,
    batch_size: int,
    progress: ChunkProgress | None = None,
    fixed_batch: bool = False,
    tail_fn: ModelFn | None = None,
) -> torch.Tensor:
    """Separate `mix` (channels, samples) into (stems, channels, samples), float32, on mix's device.

    `fixed_batch` zero-fills the last batch so every call has one shape (no recompiles under torch.compile);
    given `tail_fn` (the model run uncompiled), a last batch of at most half a batch goes through it unfilled.
    """
    channels, length = mix.shape
    chunk = params.chunk_size
    schedule = plan(length, params)
    padded = F.pad(mix, (schedule.front_pad, schedule.back_pad))
    window = window_for(params, mix.device)
    result = torch.zeros(num_stems, channels, padded.shape[-1], dtype=torch.float32, device=mix.device)
    weight = torch.zeros(padded.shape[-1], dtype=torch.float32, device=mix.device)

    total = len(schedule.starts)
    for b in batches(total, batch_size, fixed_batch, eager_tail=tail_fn is not None):
        starts = schedule.starts[b.first : b.first + b.count]
        batch = torch.stack([padded[:, s : s + chunk] for s in starts])
        if b.size > b.count:
            batch = F.pad(batch, (0, 0, 0, 0, 0, b.size - b.count))
        out = (tail_fn if b.eager and tail_fn is not None else model_fn)(batch)[: b.count].float()
        out = out.reshape(b.count, num_stems, channels, chunk) * window
        for i, s in enumerate(starts):
            result[..., s : s + chunk] += out[i]
            weight[s : s + chunk] += window
        if progress:
            progress(b.first + b.count, total)

    result /= weight.clamp_min(1e-10)
    return result[..., schedule.front_pad : schedule.front_pad + length]
