"""torch.compile for the ensemble's models, by region, with a way back.

Each compiled region is a module whose `forward` is replaced by its compiled version (state-dict keys
unchanged), so undoing it needs nothing private to torch. A model has plans, most compiled first:

- Roformers: the network but the STFTs (the band split, every transformer block, the final norm and the
  mask estimators), then the transformer blocks alone (the bulk of their time);
- MDX23C: its network between STFT and inverse as one graph (inference/mdx23c.py).

Shapes are static (`dynamic=False`): every call has the engine's batch size (inference/chunking.py), so
one compilation per region serves every song. torch.compile is lazy: a plan that cannot run (no C compiler
for Triton, a backend bug) fails at its first call, and the engine then moves to the next plan, and past the
last one to eager running, with one warning line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..models.loader import ROFORMER_FAMILIES, LoadedModel
from . import mdx23c

log = logging.getLogger(__name__)

Forward = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Plan:
    label: str  # what it compiles, for the log
    regions: Callable[[], list[tuple[torch.nn.Module, Forward]]]  # (module, its compiled forward), made on apply


@dataclass
class Compiled:
    """The plan a model runs compiled with now, and what each of its modules' `forward` was, to undo it."""

    name: str
    plans: list[Plan]
    current: int = 0
    _replaced: list[tuple[torch.nn.Module, Forward | None]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.plans[self.current].label

    def apply(self) -> None:
        try:
            for module, forward in self.plans[self.current].regions():
                self._replaced.append((module, vars(module).get("forward")))
                module.forward = forward  # type: ignore[method-assign]
        except Exception:
            self.revert()
            raise

    def revert(self) -> None:
        for module, own_forward in reversed(self._replaced):
            if own_forward is None:
                del module.forward  # back to the class's forward
            else:
                module.forward = own_forward  # type: ignore[method-assign]
        self._replaced.clear()

    def next_plan(self) -> bool:
        """Undo this plan and apply the next one; False (and nothing compiled) when none is left."""
        self.revert()
        while self.current + 1 < len(self.plans):
            self.current += 1
            try:
                self.apply()
                return True
            except Exception as exc:  # an unsupported torch or backend: try the plan after
                log.info("torch.compile of %s's %s failed: %s", self.name, self.label, short_reason(exc))
        return False


def _compiled(fn: Forward) -> Forward:
    return torch.compile(fn, dynamic=False)  # type: ignore[return-value]


def plans_for(model: LoadedModel) -> list[Plan]:
    module = model.module
    if model.family in ROFORMER_FAMILIES:

        def blocks() -> list[torch.nn.Module]:
            return [block for layer in module.layers for block in layer]  # type: ignore[union-attr]

        def network() -> list[torch.nn.Module]:
            final_norm = getattr(module, "final_norm", None)
            around = [module.band_split, *([final_norm] if isinstance(final_norm, torch.nn.Module) else []),
                      *module.mask_estimators]  # type: ignore[misc]
            return [*blocks(), *around]

        return [
            Plan("network", lambda: [(m, _compiled(m.forward)) for m in network()]),
            Plan("transformer blocks", lambda: [(m, _compiled(m.forward)) for m in blocks()]),
        ]

    def mdx_network() -> list[tuple[torch.nn.Module, Forward]]:
        def run_network(spec: torch.Tensor) -> torch.Tensor:
            return mdx23c.network(module, spec)

        return [(module, mdx23c.forward_with(module, _compiled(run_network)))]

    return [Plan("network", mdx_network)]


def compile_model(model: LoadedModel) -> Compiled | None:
    """The model with its first plan that applies; None (running eagerly, after one warning) if none does."""
    compiled = Compiled(model.spec.name, plans_for(model))
    try:
        compiled.apply()
        return compiled
    except Exception as exc:  # an old torch, an unsupported Python or backend: eager still works
        if compiled.next_plan():
            return compiled
        warn_compile_failed(model.spec.name, exc)
        return None


def warn_compile_failed(name: str, exc: BaseException) -> None:
    # `stembot -v` puts the root logger at INFO (the worker's own loggers are at INFO either way).
    verbose = logging.getLogger().getEffectiveLevel() <= logging.INFO
    log.warning("torch.compile failed for %s (%s), running eagerly", name, short_reason(exc),
                exc_info=exc if verbose else None)


_NAMED = re.compile(r"[A-Za-z_][\w.]*: ")


def short_reason(exc: BaseException) -> str:
    """The innermost cause's type and first line: dynamo's own message is a paragraph of advice."""
    root = exc
    while True:
        inner = root.__cause__ or (None if root.__suppress_context__ else root.__context__)
        if inner is None or not str(inner).strip():
            break
        root = inner
    lines = str(root).strip().splitlines()
    first = lines[0] if lines else ""
    # Inductor's message already starts with the type it wraps ("InvalidCxxCompiler: No working C++ ...").
    reason = first if _NAMED.match(first) else f"{type(root).__name__}: {first}" if first else type(root).__name__
    return reason if len(reason) <= 200 else reason[:197] + "..."
