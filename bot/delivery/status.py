"""A status message edited as a job moves: at most once per interval, and always ending on the latest text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class ThrottledStatus:
    """`show(text)` edits at once when the last edit is `interval_s` old, else once the interval is over, with
    the latest text then wanted (texts in between are skipped). Only changes are sent."""

    def __init__(self, edit: Callable[[str], Awaitable[None]], interval_s: float):
        self.edit = edit
        self.interval_s = interval_s
        self.shown = ""
        self.wanted = ""
        self.last_edit = float("-inf")
        self._timer: asyncio.Task | None = None

    async def show(self, text: str) -> None:
        self.wanted = text
        wait = self.last_edit + self.interval_s - time.monotonic()
        if wait <= 0:
            await self._flush()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._flush_after(wait))

    async def settle(self, text: str) -> None:
        """Show `text` now, whatever the interval (the last word: done, uploading)."""
        self.cancel()
        self.wanted = text
        await self._flush()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._flush()

    async def _flush(self) -> None:
        if self.wanted != self.shown:
            self.shown = self.wanted
            self.last_edit = time.monotonic()
            await self.edit(self.wanted)
