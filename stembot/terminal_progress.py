"""Renders pipeline progress events as tqdm bars on a terminal: one bar per stage, and per model."""

from __future__ import annotations

import sys

from tqdm import tqdm

from separation_worker.progress import ProgressEvent

STAGE_LABELS = {
    "fetch": "Fetching",
    "decode": "Decoding",
    "separate": "Separating",
    "loudness": "Loudness",
    "analyze": "BPM & key",
    "encode": "Encoding",
}
BAR_FORMAT = "{desc} {bar} {percentage:3.0f}% {elapsed}"


class TerminalProgress:
    """Callable progress sink. Silent when stderr is not a terminal, so errors stay one line."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: tqdm | None = None
        self._key: tuple[str, str] | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        per_detail = event.detail_fraction is not None
        key = (event.stage, event.detail if per_detail else "")
        if key != self._key:
            self.close()
            label = STAGE_LABELS.get(event.stage, event.stage)
            if per_detail:
                label = f"{label} · {event.detail}"
            self._bar = tqdm(total=100, desc=f"{label:<34}", file=sys.stderr, bar_format=BAR_FORMAT)
            self._key = key
        fraction = (event.detail_fraction if per_detail else event.fraction) or 0.0
        assert self._bar is not None
        self._bar.n = round(max(0.0, min(1.0, fraction)) * 100)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.n = self._bar.total
            self._bar.close()
            self._bar = None
            self._key = None
