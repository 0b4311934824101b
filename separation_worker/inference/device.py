"""Choosing the device and how to run on it (precision, batch size, compilation)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from ..models.loader import ROFORMER_FAMILIES, LoadedModel
from . import mdx23c


@dataclass(frozen=True)
class RunConfig:
    device: torch.device
    batch_size: int
    fp16: bool  # autocast to float16 (CUDA only; CPU stays fp32)
    compile: bool  # torch.compile the models (inference/compiling.py)

    @property
    def precision(self) -> str:
        return "fp16-autocast" if self.fp16 else "fp32"


def resolve_device(requested: str) -> torch.device:
    requested = requested.lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("CUDA was requested (--device cuda) but no CUDA GPU is available")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("MPS was requested (--device mps) but is not available on this machine")
    return torch.device(requested)


def run_config(device_setting: str, batch_size: int = 0, compile_setting: str = "auto") -> RunConfig:
    device = resolve_device(device_setting)
    on_cuda = device.type == "cuda"
    if batch_size <= 0:
        # Bounded: memory per batch is fixed, so a long song never needs more.
        batch_size = {"cuda": 8, "mps": 4}.get(device.type, 1)  # CPUs gain nothing from batching
    compile_ = on_cuda if compile_setting == "auto" else compile_setting == "true"
    return RunConfig(device=device, batch_size=batch_size, fp16=on_cuda, compile=compile_)


def prepare(run: RunConfig) -> None:
    """Process-wide settings for running on `run.device`."""
    if run.device.type == "cuda":
        # Every convolution has one shape per model (fixed batches): cuDNN's fastest algorithm for it is
        # found once and kept.
        torch.backends.cudnn.benchmark = True


def keep_on_device(model: LoadedModel, device: torch.device) -> None:
    """Nothing copied from the host inside a forward pass on a GPU: each such copy makes the host wait for it.

    Both architectures build their STFT window on the CPU and copy it on every call; MDX23C's inverse also
    copies a zero tensor (inference/mdx23c.py). CPUs (and MPS, where audio-separator moves complex work to
    the CPU itself) keep the models as they are.
    """
    if device.type != "cuda":
        return
    module: Any = model.module  # audio-separator's classes: attributes of their own
    if model.family in ROFORMER_FAMILIES:
        module.stft_window_fn = _Fixed(module.stft_window_fn().to(device))
    else:
        mdx23c.keep_window_on(module, device)
        module.forward = mdx23c.forward_with(module, partial(mdx23c.network, module))


@dataclass(frozen=True)
class _Fixed:
    """A window function that returns the window made once (`.to(device)` of it is then a no-op)."""

    window: torch.Tensor

    def __call__(self, *_: object, **__: object) -> torch.Tensor:
        return self.window
