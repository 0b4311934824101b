"""Renders pipeline progress events as tqdm bars on a terminal: one bar per stage, and per model.

While separating, the bar also shows the time the separation has left (`show_eta`).
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from separation_worker.contract.messages import format_duration
from separation_worker.progress import ProgressEvent

STAGE_LABELS = {
    "fetch": "Fetching",
    "decode": "Decoding",
    "separate": "Separating",
    "loudness": "Loudness",
    "analyze": "BPM & key",
    "encode": "Encoding",
}
BAR_FORMAT = "{desc} {bar} {percentage:3.0f}% {elapsed}{postfix}"


class TerminalProgress:
    """Callable progress sink. Silent when stderr is not a terminal, so errors stay one line."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: tqdm | None = None
        self._key: tuple[str, str] | None = None
        self._eta: str = ""  # kept across the separation's per-model bars

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
            if event.stage == "separate" and self._eta:
                self._bar.set_postfix_str(self._eta, refresh=False)
        fraction = (event.detail_fraction if per_detail else event.fraction) or 0.0
        assert self._bar is not None
        self._bar.n = round(max(0.0, min(1.0, fraction)) * 100)
        self._bar.refresh()

    def show_eta(self, remaining_s: float) -> None:
        """The separation's remaining time (all its models), on the bar from now on."""
        self._eta = f"ETA {format_duration(remaining_s)}"
        if self.enabled and self._bar is not None:
            self._bar.set_postfix_str(self._eta)

    def note(self, line: str) -> None:
        """One line on stderr, above the bar when one is drawn."""
        if self.enabled and self._bar is not None:
            tqdm.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.n = self._bar.total
            self._bar.close()
            self._bar = None
            self._key = None
