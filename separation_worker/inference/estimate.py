"""How long a separation will take on this device, measured from its first chunks.

Each model's work is its chunks times what one chunk costs (FLOPs, inference/cost.py). The seconds a unit
of work takes are measured as the song goes: a model under way is predicted from its own chunks so far,
models not yet started from the rate measured on those that have. Platform-agnostic: it reads the pipeline's
progress events, and a front end shows what it says.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..progress import ProgressEvent


@dataclass(frozen=True)
class ModelCost:
    name: str
    chunks: int  # the song's chunks for this model
    rows: int  # what the model is given: the chunks, plus the zero-filled rows of a fixed-shape last batch
    work_per_chunk: float  # FLOPs of one chunk (or samples per chunk where FLOPs could not be counted)

    @property
    def work(self) -> float:
        return self.rows * self.work_per_chunk


@dataclass(frozen=True)
class Estimate:
    elapsed_s: float  # since the separation started
    remaining_s: float
    seconds_per_work: float  # the device's measured rate (seconds per FLOP, in the costs' unit)

    @property
    def total_s(self) -> float:
        return self.elapsed_s + self.remaining_s


class Estimator:
    """Remaining time over a list of models run one after the other, from (model, chunks done) reports."""

    def __init__(
        self, costs: Sequence[ModelCost], clock: Callable[[], float] = time.perf_counter, started: float | None = None
    ):
        if not costs:
            raise ValueError("nothing to estimate")
        self.costs = tuple(costs)
        self._clock = clock
        self.started = clock() if started is None else started
        self._last_report = self.started  # a model starts when the previous report was made
        self._current = -1
        self._model_started = self.started
        self._done = 0  # chunks of the current model
        self._finished_s = 0.0  # seconds of the models before the current one
        self._finished_work = 0.0

    def report(self, index: int, chunks_done: int) -> Estimate:
        now = self._clock()
        while self._current < index:  # the models before `index` are done
            if self._current >= 0:
                self._finished_s += self._last_report - self._model_started
                self._finished_work += self.costs[self._current].work
            self._current += 1
            self._model_started = self._last_report
            self._done = 0
        self._done = chunks_done
        self._last_report = now
        return self._estimate(now)

    def _estimate(self, now: float) -> Estimate:
        cost = self.costs[self._current]
        spent = now - self._model_started
        done_work = cost.work * min(1.0, self._done / max(cost.chunks, 1))
        rate = spent / done_work if done_work > 0 else 0.0
        # Later models at the rate measured so far, weighted by work (the current model's own rate for itself).
        measured_s, measured_work = self._finished_s + spent, self._finished_work + done_work
        overall = measured_s / measured_work if measured_work > 0 else rate
        later = sum(c.work for c in self.costs[self._current + 1 :])
        remaining = rate * (cost.work - done_work) + overall * later
        return Estimate(elapsed_s=now - self.started, remaining_s=max(0.0, remaining), seconds_per_work=overall)

    def seconds_for(self, costs: Sequence[ModelCost], estimate: Estimate) -> float:
        """What other models (another preset's) would take on this song at the rate measured so far."""
        return estimate.seconds_per_work * sum(c.work for c in costs)


CostsFor = Callable[[int], Sequence[ModelCost]]  # the song's length in samples -> its models' costs


class ProgressEta:
    """Follows a song's progress events and estimates the separation's remaining time.

    `costs_for` is asked once, at the first model's first chunks: the models are loaded then, and idle
    between two of the separation's own batches (counting FLOPs needs them idle); the time it takes is
    left out of the measurement.
    """

    def __init__(self, costs_for: CostsFor, sample_rate: int, clock: Callable[[], float] = time.perf_counter):
        self._costs_for = costs_for
        self._sample_rate = sample_rate
        self._clock = clock
        self._length = 0  # samples, once decoded
        self._stage_started: float | None = None
        self.estimator: Estimator | None = None
        self.latest: Estimate | None = None

    def observe(self, event: ProgressEvent) -> Estimate | None:
        """The estimate this event gives, if any (None until the first chunks are done)."""
        if event.stage == "decode" and event.duration:
            self._length = round(event.duration * self._sample_rate)
        if event.stage != "separate" or not self._length:
            return None
        if event.detail_fraction is None:  # the stage's start, or a wait for the device: no model runs yet
            if self.estimator is None:
                self._stage_started = self._clock()
            return None
        if self.estimator is None:
            before = self._clock()
            costs = self._costs_for(self._length)
            if not costs:
                self._length = 0  # nothing to estimate with: stay silent for this song
                return None
            started = (before if self._stage_started is None else self._stage_started) + self._clock() - before
            self.estimator = Estimator(costs, self._clock, started=started)
        names = [c.name for c in self.estimator.costs]
        if event.detail not in names:
            return None
        index = names.index(event.detail)
        done = round(event.detail_fraction * self.estimator.costs[index].chunks)
        self.latest = self.estimator.report(index, done)
        return self.latest
