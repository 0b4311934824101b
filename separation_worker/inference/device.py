"""Choosing the device and how to run on it (precision, batch size, compilation)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RunConfig:
    device: torch.device
    batch_size: int
    fp16: bool  # autocast to float16 (CUDA only; CPU stays fp32)
    compile: bool  # torch.compile the Roformers' transformer blocks

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
