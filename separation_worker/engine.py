"""The separation engine: the ensemble's models, loaded once and kept warm, run over a song.

vocals = weighted average of each model's vocal estimate; instrumental = mix - vocals,
so the two stems add back up to the input exactly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .inference.chunking import run_chunked
from .inference.device import RunConfig, run_config
from .models import loader
from .models.zoo import Ensemble, ModelSpec, parse_ensemble

log = logging.getLogger(__name__)

# (model index, model name, fraction of that model's chunks done)
ModelProgress = Callable[[int, str, float], None]
# Seconds a separation has queued so far for the device, behind other jobs'; may raise to give up its place.
DeviceWait = Callable[[float], None]
WAIT_REPORT_S = 0.5  # how often a queued separation hears how long it has waited


@dataclass
class EnsembleOutput:
    vocals: np.ndarray  # (2, n) float32
    instrumental: np.ndarray
    per_model_vocals: dict[str, np.ndarray]
    per_model_instrumental: dict[str, np.ndarray] = field(default_factory=dict)
    seconds_per_model: dict[str, float] = field(default_factory=dict)


class SeparationEngine:
    def __init__(self, ensemble: Ensemble, model_dir: Path, run: RunConfig, model_mirror: str = ""):
        self.ensemble = ensemble
        self.model_dir = Path(model_dir)
        self.model_mirror = model_mirror  # where missing models are fetched from ("": the zoo's hosts)
        self.run = run
        self._models: list[loader.LoadedModel] = []
        self._compiled: dict[int, _Compiled] = {}  # by id(model): the models still running compiled
        self.device_lock = DeviceLock()  # one separation on the device at a time (a worker runs several jobs)

    @classmethod
    def from_settings(cls, settings, device: str | None = None) -> SeparationEngine:
        run = run_config(device or settings.device, settings.batch_size, settings.compile)
        return cls(parse_ensemble(settings.ensemble), settings.model_dir, run, settings.model_mirror)

    @property
    def loaded(self) -> bool:
        return len(self._models) == len(self.ensemble.members)

    def load(
        self,
        allow_download: bool = True,
        on_download: Callable[[ModelSpec], None] | None = None,
        warm_up: bool = True,
    ) -> None:
        """Load every model (downloading what is missing); a no-op once loaded.

        With compilation on, `warm_up` compiles each model now rather than during the first song.
        """
        if self.loaded:
            return
        if self.run.compile:
            # Keep compiled kernels next to the models so a restart reuses them.
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.model_dir / "torchinductor"))
        for spec in self.ensemble.members:
            model = loader.load(spec, self.model_dir, self.run.device, allow_download, on_download, self.model_mirror)
            if self.run.device.type == "cuda":
                _allow_flash_attention(model.module)
            if self.run.compile and model.family in loader.ROFORMER_FAMILIES:
                compiled = _compile_transformers(model)
                if compiled is not None:
                    self._compiled[id(model)] = compiled
                    if warm_up:
                        self._warm_up(model)
            self._models.append(model)

    def _warm_up(self, model: loader.LoadedModel) -> None:
        """Compile now (about a minute per model on first use) rather than on the first user's song.

        torch.compile is lazy: a missing C compiler or a backend bug only shows at this first call,
        where separate_model's guard turns it into eager running.
        """
        silence = torch.zeros(2, model.chunking.chunk_size, device=self.run.device)
        self.separate_model(model, silence)

    def _fall_back_to_eager(self, model: loader.LoadedModel, exc: BaseException) -> None:
        compiled = self._compiled.pop(id(model))
        compiled.revert()
        _warn_compile_failed(model.spec.name, exc)

    def separate_model(
        self, model: loader.LoadedModel, mix: torch.Tensor, progress: Callable[[float], None] | None = None
    ) -> dict[str, torch.Tensor]:
        """One model over the whole song: {stem name: (2, n) float32 tensor on the device}."""

        def call(batch: torch.Tensor) -> torch.Tensor:
            autocast = (
                torch.autocast("cuda", dtype=torch.float16) if self.run.fp16 else contextlib.nullcontext()
            )
            with autocast:
                return model.module(batch)

        def forward(batch: torch.Tensor) -> torch.Tensor:
            if id(model) not in self._compiled:
                return call(batch)
            try:
                return call(batch)
            except torch.OutOfMemoryError:
                raise  # the batch, not the compiler: eager would need the same memory
            except Exception as exc:
                # Compile errors come as many types (dynamo's, inductor's, Triton's RuntimeErrors, a missing
                # compiler); any failure of a compiled call gets one eager rerun, and a real model error
                # then raises from the eager call itself.
                self._fall_back_to_eager(model, exc)
            return call(batch)

        stems = run_chunked(
            forward,
            mix,
            model.chunking,
            num_stems=len(model.outputs),
            batch_size=self.run.batch_size,
            progress=(lambda done, total: progress(done / total)) if progress else None,
            fixed_batch=self.run.compile,
        )
        return dict(zip(model.outputs, stems))

    def split_of(
        self, model: loader.LoadedModel, stems: dict[str, torch.Tensor], mix: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(vocals, instrumental) from one model's outputs, each stem as its YAML names it.

        A model that predicts both (MDX23C) gives both; a single-target model's other stem is
        the mix minus its target, as audio-separator computes it.
        """
        outputs = [stems[name] for name in model.roles.outputs]
        vocals_at, accompaniment_at = model.roles.vocals, model.roles.accompaniment
        accompaniment = outputs[accompaniment_at] if accompaniment_at is not None else None
        if vocals_at is not None:
            vocals = outputs[vocals_at]
        else:
            assert accompaniment is not None  # OutputRoles guarantees one of the two
            vocals = mix - accompaniment
        return vocals, accompaniment if accompaniment is not None else mix - vocals

    def separate(
        self, mix: np.ndarray, progress: ModelProgress | None = None, waiting: DeviceWait | None = None
    ) -> EnsembleOutput:
        """The ensemble over one song, holding the device: concurrent calls take turns, first come first served.

        `waiting` hears how long this call has queued behind others (every WAIT_REPORT_S, then the total once
        its turn came); it is never called when the device was free.
        """
        with self.device_lock.hold(waiting):
            return self.run_ensemble(mix, progress)

    def run_ensemble(self, mix: np.ndarray, progress: ModelProgress | None = None) -> EnsembleOutput:
        """The separation itself; the caller holds `device_lock` (`separate` does)."""
        self.load()
        x = torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32)).to(self.run.device)
        vocals = torch.zeros_like(x)
        instrumental = torch.zeros_like(x)
        per_model: dict[str, np.ndarray] = {}
        per_model_instrumental: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}
        for index, model in enumerate(self._models):
            started = time.perf_counter()
            report = (lambda f, i=index, n=model.spec.name: progress(i, n, f)) if progress else None
            model_vocals, model_instrumental = self.split_of(model, self.separate_model(model, x, report), x)
            share = model.spec.weight / self.ensemble.total_weight
            vocals += model_vocals * share
            instrumental += model_instrumental * share
            per_model[model.spec.name] = model_vocals.cpu().numpy()
            per_model_instrumental[model.spec.name] = model_instrumental.cpu().numpy()
            _synchronize(self.run.device)
            seconds[model.spec.name] = time.perf_counter() - started
        return EnsembleOutput(
            vocals=vocals.cpu().numpy(),
            instrumental=instrumental.cpu().numpy(),
            per_model_vocals=per_model,
            per_model_instrumental=per_model_instrumental,
            seconds_per_model=seconds,
        )

    def describe(self) -> list[dict]:
        return [
            {"name": m.name, "checkpoint": m.checkpoint, "weight": m.weight} for m in self.ensemble.members
        ]


class DeviceLock:
    """A critical section granted in arrival order (FIFO), unlike threading.Lock; a waiter may give up its place."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._turns: deque[threading.Event] = deque()  # the waiters, oldest first
        self._held = False

    @property
    def waiting(self) -> int:
        """How many callers are queued for it now."""
        return len(self._turns)

    @contextlib.contextmanager
    def hold(self, waiting: DeviceWait | None = None) -> Iterator[None]:
        waited = self._acquire(waiting)
        try:
            if waited is not None and waiting is not None:
                waiting(waited)  # the total: may still raise (a timeout), then the turn passes on
            yield
        finally:
            self._release()

    def _acquire(self, waiting: DeviceWait | None) -> float | None:
        """Seconds waited, or None when it was free."""
        with self._guard:
            if not self._held and not self._turns:
                self._held = True
                return None
            turn = threading.Event()
            self._turns.append(turn)
        started = time.monotonic()
        try:
            while not turn.wait(WAIT_REPORT_S):
                if waiting is not None:
                    waiting(time.monotonic() - started)
        except BaseException:
            with self._guard:
                if turn.is_set():  # handed to us just as we gave up: hand it on
                    self._hand_on()
                else:
                    self._turns.remove(turn)
            raise
        return time.monotonic() - started

    def _release(self) -> None:
        with self._guard:
            self._hand_on()

    def _hand_on(self) -> None:  # with _guard held
        if self._turns:
            self._turns.popleft().set()  # stays held: the next waiter owns it now
        else:
            self._held = False


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _allow_flash_attention(module: torch.nn.Module) -> None:
    # audio-separator only enables the flash SDPA kernel on A100s; allow every backend and let torch pick.
    from audio_separator.separator.uvr_lib_v5.roformer.attend import FlashAttentionConfig

    for sub in module.modules():
        if hasattr(sub, "cuda_config") and getattr(sub, "flash", False):
            sub.cuda_config = FlashAttentionConfig(True, True, True)


@dataclass
class _Compiled:
    """A model's compiled transformer blocks, with what each block's `forward` was, to undo it."""

    blocks: list[tuple[torch.nn.Module, Callable | None]] = field(default_factory=list)

    def revert(self) -> None:
        for block, own_forward in self.blocks:
            if own_forward is None:
                del block.forward  # back to the class's forward
            else:
                block.forward = own_forward


def _compile_transformers(model: loader.LoadedModel) -> _Compiled | None:
    """Regional torch.compile of the repeated transformer blocks (the bulk of a Roformer's time).

    Each block's `forward` is replaced by its compiled version (state-dict keys unchanged), so undoing
    it needs nothing private to torch.
    """
    compiled = _Compiled()
    try:
        for layer in model.module.layers:  # type: ignore[union-attr]
            for block in layer:
                compiled.blocks.append((block, vars(block).get("forward")))
                block.forward = torch.compile(block.forward)
    except Exception as exc:  # an old torch, an unsupported Python or backend: eager still works
        compiled.revert()
        _warn_compile_failed(model.spec.name, exc)
        return None
    return compiled


def _warn_compile_failed(name: str, exc: BaseException) -> None:
    # `stembot -v` puts the root logger at INFO (the worker's own loggers are at INFO either way).
    verbose = logging.getLogger().getEffectiveLevel() <= logging.INFO
    log.warning("torch.compile failed for %s (%s), running eagerly", name, _short_reason(exc),
                exc_info=exc if verbose else None)


_NAMED = re.compile(r"[A-Za-z_][\w.]*: ")


def _short_reason(exc: BaseException) -> str:
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
