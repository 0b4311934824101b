"""Progress events the pipeline emits; front ends render them (a terminal bar, a chat message)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

STAGES = ("fetch", "decode", "separate", "loudness", "analyze", "encode")


@dataclass(frozen=True)
class ProgressEvent:
    stage: str  # one of STAGES
    fraction: float  # 0..1 within the stage
    detail: str = ""  # e.g. the model running during "separate"
    detail_fraction: float | None = None  # 0..1 within `detail` (that model's chunks)
    duration: float | None = None  # the song's length, once decoded
    device_wait: float | None = None  # seconds queued so far for the device behind other jobs ("separate")


ProgressCallback = Callable[[ProgressEvent], None]


def ignore(_: ProgressEvent) -> None:
    pass
