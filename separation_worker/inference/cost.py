"""What one chunk costs a model: FLOPs counted by torch's FlopCounterMode on shape-only (meta) tensors.

Nothing is computed, so counting takes about a second per model on any machine, the time a real chunk
would take on a fast GPU and a fraction of it on a CPU. The count is what the chunk's matrix products,
convolutions and attention cost (FFTs and elementwise work are not counted: a real-size model spends
almost all its time in the former). It is the same on every device; what a FLOP takes here is measured
while separating (inference/estimate.py).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from ..models.loader import ROFORMER_FAMILIES, LoadedModel
from . import mdx23c

log = logging.getLogger(__name__)


class _Counted(Exception):
    """Raised after the model's last counted layer: the rest (masking, inverse STFT) costs no FLOPs to count."""


def flops_per_chunk(model: LoadedModel) -> float | None:
    """FLOPs of one chunk through the model, or None where it cannot be counted (an unknown architecture).

    The model's weights are swapped for meta tensors for the moment it takes, so it must not be separating
    meanwhile (SeparationEngine.costs says when to ask).
    """
    module: Any = model.module  # audio-separator's classes: attributes of their own
    shapes = {name: torch.empty_like(t, device="meta") for name, t in (*module.named_parameters(),
                                                                       *module.named_buffers())}
    try:
        # force_eager: a compiled region would otherwise compile for meta tensors.
        with torch.compiler.set_stance("force_eager"), torch.inference_mode(), FlopCounterMode(display=False) as counter:
            if model.family in ROFORMER_FAMILIES:
                x = torch.zeros(1, 2, model.chunking.chunk_size, device="meta")
                last = module.mask_estimators[-1]
                hook = last.register_forward_hook(_stop)
                try:
                    functional_call(module, shapes, (x,))
                except _Counted:
                    pass
                finally:
                    hook.remove()
            else:  # MDX23C: its network alone (its STFT would take the CPU path for a meta tensor)
                spec = torch.zeros(mdx23c.network_input_shape(module, model.chunking.chunk_size), device="meta")
                functional_call(_Network(module), {f"inner.{k}": v for k, v in shapes.items()}, (spec,))
    except Exception as exc:  # noqa: BLE001 - an estimate is never worth failing a song for
        log.info("could not count %s's FLOPs: %s", model.spec.name, exc)
        return None
    return float(counter.get_total_flops())


def _stop(*_: object) -> None:
    raise _Counted


class _Network(torch.nn.Module):
    """MDX23C's network as a module of its own, for functional_call."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return mdx23c.network(self.inner, spec)
