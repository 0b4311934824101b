"""The separation engine: the ensemble's models, loaded once and kept warm, run over a song.

vocals = weighted average of each model's vocal estimate; instrumental = the same of each model's instrumental
(the mix minus its vocals, or MDX23C's own instrumental head). The stems written share what the pair leaves out,
so they add back up to the input exactly. A mode's split models (models/modes.py) then run over those stems,
loaded on first use and kept.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .contract.errors import ModelError
from .inference import compiling, cost
from .inference import device as device_setup
from .inference.chunking import batches, plan, run_chunked
from .inference.device import RunConfig, run_config
from .inference.estimate import ModelCost
from .models import loader
from .models.modes import MODES, Mode, Split
from .models.zoo import Ensemble, ModelSpec, parse_ensemble

log = logging.getLogger(__name__)

# (model index, model name, fraction of that model's chunks done)
ModelProgress = Callable[[int, str, float], None]
# Seconds a separation has queued so far for the device, behind other jobs'; may raise to give up its place.
DeviceWait = Callable[[float], None]
WAIT_REPORT_S = 0.5  # how often a queued separation hears how long it has waited


@dataclass
class EnsembleOutput:
    # The ensemble's estimates, each the weighted average of its members' (as audio-separator's outputs combine).
    vocals: np.ndarray  # (2, n) float32
    instrumental: np.ndarray
    per_model_vocals: dict[str, np.ndarray]
    per_model_instrumental: dict[str, np.ndarray] = field(default_factory=dict)
    seconds_per_model: dict[str, float] = field(default_factory=dict)
    # The mode's stems, in its order: they partition the mix exactly (a mode's mixes come on top).
    stems: dict[str, np.ndarray] = field(default_factory=dict)


class SeparationEngine:
    def __init__(self, ensemble: Ensemble, model_dir: Path, run: RunConfig, model_mirror: str = ""):
        self.ensemble = ensemble
        self.model_dir = Path(model_dir)
        self.model_mirror = model_mirror  # where missing models are fetched from ("": the zoo's hosts)
        self.run = run
        self._models: list[loader.LoadedModel] = []
        self._split_models: dict[tuple[str, str], loader.LoadedModel] = {}  # by (checkpoint, config), once used
        self._compiled: dict[int, compiling.Compiled] = {}  # by id(model): the models still running compiled
        self._flops: dict[int, float | None] = {}  # by id(model): one chunk's FLOPs, once counted
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
        device_setup.prepare(self.run)
        for spec in self.ensemble.members:
            self._models.append(self._load_model(spec, allow_download, on_download, warm_up, member=True))

    def load_mode(
        self, mode: Mode, allow_download: bool = True, on_download: Callable[[ModelSpec], None] | None = None
    ) -> None:
        """The ensemble and the mode's split models (each loaded once, then kept with the ensemble)."""
        self.load(allow_download, on_download)
        for spec in mode.models:
            self.split_model(spec, allow_download, on_download)

    def split_model(
        self, spec: ModelSpec, allow_download: bool = True, on_download: Callable[[ModelSpec], None] | None = None
    ) -> loader.LoadedModel:
        key = (spec.checkpoint, spec.config)
        if key not in self._split_models:
            self._split_models[key] = self._load_model(spec, allow_download, on_download, warm_up=True, member=False)
        return self._split_models[key]

    def _load_model(
        self,
        spec: ModelSpec,
        allow_download: bool,
        on_download: Callable[[ModelSpec], None] | None,
        warm_up: bool,
        member: bool,
    ) -> loader.LoadedModel:
        model = loader.load(spec, self.model_dir, self.run.device, allow_download, on_download, self.model_mirror,
                            member=member)
        if self.run.device.type == "cuda":
            _allow_flash_attention(model.module)
        device_setup.keep_on_device(model, self.run.device)
        if self.run.compile:
            compiled = compiling.compile_model(model)
            if compiled is not None:
                self._compiled[id(model)] = compiled
                if warm_up:
                    self.warm_up(model)
        return model

    def warm_up(self, model: loader.LoadedModel) -> None:
        """Compile now (about a minute per model on first use) rather than on the first user's song.

        One batch of silence of the shape every song's batches have. torch.compile is lazy: a missing C
        compiler or a backend bug only shows at this first call, where separate_model's guard turns it into
        the next plan, or eager running.
        """
        silence = torch.zeros(self.run.batch_size, 2, model.chunking.chunk_size, device=self.run.device)
        with torch.inference_mode():
            self._forward(model)(silence)
        _synchronize(self.run.device)

    def _fall_back(self, model: loader.LoadedModel, exc: BaseException) -> None:
        """A compiled call failed: the model's next compile plan, or eager running after one warning."""
        compiled = self._compiled[id(model)]
        failed = compiled.label
        if compiled.next_plan():
            log.info("torch.compile of %s's %s failed (%s); compiling its %s only", model.spec.name, failed,
                     compiling.short_reason(exc), compiled.label)
            return
        del self._compiled[id(model)]
        compiling.warn_compile_failed(model.spec.name, exc)

    def separate_model(
        self, model: loader.LoadedModel, mix: torch.Tensor, progress: Callable[[float], None] | None = None
    ) -> dict[str, torch.Tensor]:
        """One model over the whole song: {stem name: (2, n) float32 tensor on the device}."""
        stems = run_chunked(
            self._forward(model),
            mix,
            model.chunking,
            num_stems=len(model.outputs),
            batch_size=self.run.batch_size,
            progress=(lambda done, total: progress(done / total)) if progress else None,
            fixed_batch=self.run.compile,
            tail_fn=self._eager(model) if self.run.compile else None,
        )
        return dict(zip(model.outputs, stems))

    def _call(self, model: loader.LoadedModel, batch: torch.Tensor) -> torch.Tensor:
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.run.fp16 else contextlib.nullcontext()
        with autocast:
            return model.module(batch)

    def _forward(self, model: loader.LoadedModel) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(batch: torch.Tensor) -> torch.Tensor:
            while id(model) in self._compiled:
                try:
                    return self._call(model, batch)
                except torch.OutOfMemoryError:
                    raise  # the batch, not the compiler: eager would need the same memory
                except Exception as exc:
                    # Compile errors come as many types (dynamo's, inductor's, Triton's RuntimeErrors, a missing
                    # compiler); any failure of a compiled call reruns with the next plan, then eagerly, and a
                    # real model error then raises from the eager call itself.
                    self._fall_back(model, exc)
            return self._call(model, batch)

        return forward

    def _eager(self, model: loader.LoadedModel) -> Callable[[torch.Tensor], torch.Tensor]:
        """The model uncompiled, for a last batch too short to be worth zero-filling to the compiled shape."""

        def forward(batch: torch.Tensor) -> torch.Tensor:
            with torch.compiler.set_stance("force_eager"):
                return self._call(model, batch)

        return forward

    def costs(self, length: int, members: tuple[ModelSpec, ...] | None = None) -> list[ModelCost]:
        """What separating `length` samples costs each model (of `members`, which may name a mode's split models: []
        unless all are loaded).

        Counting a model's FLOPs (once) swaps its weights for a moment: ask from a separation's own progress
        callback (between its batches, as inference/estimate.py does) or while none runs.
        """
        wanted = members if members is not None else self.ensemble.members
        # By checkpoint: a model loaded with its YAML under another published name is still that model.
        by_files = {m.spec.checkpoint: m for m in (*self._models, *self._split_models.values())}
        models = [by_files.get(spec.checkpoint) for spec in wanted]
        if not models or any(m is None for m in models):
            return []
        for model in models:
            assert model is not None
            if id(model) not in self._flops:
                self._flops[id(model)] = cost.flops_per_chunk(model)
        counted = all(self._flops[id(m)] for m in models if m is not None)
        out = []
        for model in models:
            assert model is not None
            chunks = len(plan(length, model.chunking).starts)
            rows = sum(b.size for b in batches(chunks, self.run.batch_size, self.run.compile, self.run.compile))
            # Where FLOPs could not be counted for every model, samples through the model stand in for them.
            work = self._flops[id(model)] if counted else model.chunking.chunk_size
            out.append(ModelCost(model.spec.name, chunks, rows, float(work or 0.0)))
        return out

    def split_of(
        self, model: loader.LoadedModel, stems: dict[str, torch.Tensor], mix: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(vocals, instrumental) from one model's outputs, each stem as its YAML names it.

        A model that predicts both (MDX23C) gives both; a single-target model's other stem is
        the mix minus its target, as audio-separator computes it.
        """
        roles = model.vocal_roles
        outputs = [stems[name] for name in roles.outputs]
        vocals_at, accompaniment_at = roles.vocals, roles.accompaniment
        accompaniment = outputs[accompaniment_at] if accompaniment_at is not None else None
        if vocals_at is not None:
            vocals = outputs[vocals_at]
        else:
            assert accompaniment is not None  # OutputRoles guarantees one of the two
            vocals = mix - accompaniment
        return vocals, accompaniment if accompaniment is not None else mix - vocals

    def steps(self, mode: Mode) -> tuple[ModelSpec, ...]:
        """The models a separation in `mode` runs, in order: the ensemble, then each split (its progress counts
        them, and its ETA costs them)."""
        return (*self.ensemble.members, *(split.model for split in mode.splits))

    def separate(
        self,
        mix: np.ndarray,
        progress: ModelProgress | None = None,
        waiting: DeviceWait | None = None,
        mode: Mode = MODES["vocals"],
    ) -> EnsembleOutput:
        """The ensemble (and the mode's splits) over one song, holding the device: concurrent calls take turns,
        first come first served.

        `waiting` hears how long this call has queued behind others (every WAIT_REPORT_S, then the total once
        its turn came); it is never called when the device was free.
        """
        with self.device_lock.hold(waiting):
            return self.run_ensemble(mix, progress, mode)

    def run_ensemble(
        self, mix: np.ndarray, progress: ModelProgress | None = None, mode: Mode = MODES["vocals"]
    ) -> EnsembleOutput:
        """The separation itself; the caller holds `device_lock` (`separate` does)."""
        self.load_mode(mode)
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
        # A member with its own instrumental head (MDX23C) leaves the pair a little short of the mix. The stems must
        # add back up to it (raw stems null against the input), so the gap is shared equally: the least change to
        # both estimates that makes them sum to the mix.
        half_gap = (x - vocals - instrumental) / 2
        stems = {"vocals": vocals + half_gap, "instrumental": instrumental + half_gap}
        for step, split in enumerate(mode.splits, start=len(self._models)):
            started = time.perf_counter()
            name = split.model.name
            report = (lambda f, i=step, n=name: progress(i, n, f)) if progress else None
            self._apply_split(split, stems, report)
            _synchronize(self.run.device)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
        for mixed, parts in mode.mixes:
            stems[mixed] = sum((stems[p] for p in parts[1:]), stems[parts[0]])
        return EnsembleOutput(
            vocals=vocals.cpu().numpy(),
            instrumental=instrumental.cpu().numpy(),
            per_model_vocals=per_model,
            per_model_instrumental=per_model_instrumental,
            seconds_per_model=seconds,
            stems={name: stems[name].cpu().numpy() for name in mode.order},
        )

    def _apply_split(
        self, split: Split, stems: dict[str, torch.Tensor], progress: Callable[[float], None] | None
    ) -> None:
        """Replace `split.source` by the model's kept stems, adding what is left to `split.rest`."""
        model = self.split_model(split.model)
        source = stems.pop(split.source)
        outputs = self.separate_model(model, source, progress)
        by_name = {name.casefold(): stem for name, stem in outputs.items()}
        if len(outputs) == 1 and len(model.stems) == 2:  # a single-target model: its other stem is the rest
            other = next(n for n in model.stems if n.casefold() not in by_name)
            by_name[other.casefold()] = source - next(iter(outputs.values()))
        kept = torch.zeros_like(source)
        for spellings, ours in split.keep:
            stem = next((by_name[n.casefold()] for n in spellings if n.casefold() in by_name), None)
            if stem is None:
                raise ModelError(f"{model.spec.name}: its YAML names none of {list(spellings)} "
                                 f"(it has {list(model.stems)})")
            stems[ours] = stem
            kept += stem
        rest = source - kept
        stems[split.rest] = stems[split.rest] + rest if split.rest in stems else rest

    def describe(self, mode: Mode = MODES["vocals"]) -> list[dict]:
        members = [{"name": m.name, "checkpoint": m.checkpoint, "weight": m.weight} for m in self.ensemble.members]
        splits = [
            {"name": s.model.name, "checkpoint": s.model.checkpoint, "weight": 1.0, "splits": s.source}
            for s in mode.splits
        ]
        return members + splits


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
