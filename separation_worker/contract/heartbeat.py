"""Heartbeat files: each long-running process says it is alive and working; `stembot health ROLE` reads them.

Container healthchecks run `stembot health` in the same container, so a file in a local folder is enough, and it
says more than "the process exists": a worker beats only once its models are loaded, a bot only while polling or
connected. One file per process (`<role>-<pid>.json`), so the worker processes of a multi-GPU container each count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

BEAT_EVERY_S = 10.0
STALE_AFTER_S = 3 * BEAT_EVERY_S  # three missed beats: hung, or stuck reconnecting


@dataclass(frozen=True)
class Beat:
    role: str
    pid: int
    at: float  # time.time() of the last beat
    detail: str = ""  # e.g. "cuda:0", "@stembot"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Beat:
        data = json.loads(text)
        return cls(role=str(data["role"]), pid=int(data["pid"]), at=float(data["at"]), detail=str(data.get("detail", "")))


class Heartbeat:
    """Writes this process's beat file every BEAT_EVERY_S while `healthy()` holds; removes it on stop."""

    def __init__(self, folder: Path, role: str, healthy: Callable[[], bool] = lambda: True, detail: str = ""):
        self.path = folder / f"{role}-{os.getpid()}.json"
        self.role, self.healthy, self.detail = role, healthy, detail
        self._task: asyncio.Task | None = None

    def beat(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_suffix(".tmp")
        temp.write_text(Beat(self.role, os.getpid(), time.time(), self.detail).to_json())
        os.replace(temp, self.path)  # a reader never sees half a file

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                if self.healthy():
                    self.beat()
            except OSError:
                pass  # a full or read-only disk shows as a stale beat, which is what the healthcheck should see
            await asyncio.sleep(BEAT_EVERY_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self.path.unlink()


@dataclass(frozen=True)
class Health:
    healthy: bool
    summary: str  # one line for the operator


def read_health(folder: Path, role: str, now: float | None = None) -> Health:
    """Healthy when at least one live process of the role beat recently and none of the live ones is stale."""
    now = time.time() if now is None else now
    fresh: list[Beat] = []
    stale: list[Beat] = []
    for path in sorted(folder.glob(f"{role}-*.json")):
        try:
            beat = Beat.from_json(path.read_text())
        except (OSError, ValueError, KeyError):
            continue  # being replaced, or not ours
        if not _alive(beat.pid):
            with contextlib.suppress(OSError):
                path.unlink()  # left by a process that died without stopping its heartbeat
            continue
        (fresh if now - beat.at <= STALE_AFTER_S else stale).append(beat)
    if stale:
        ages = ", ".join(f"pid {b.pid} {now - b.at:.0f} s ago" for b in stale)
        return Health(False, f"{role}: no heartbeat for over {STALE_AFTER_S:.0f} s ({ages})")
    if not fresh:
        return Health(False, f"{role}: no running {role} has reported in {folder}")
    details = ", ".join(b.detail or f"pid {b.pid}" for b in fresh)
    return Health(True, f"{role}: {len(fresh)} healthy ({details})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
