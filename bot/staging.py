"""An upload's staging folder in the file store, for async front ends (created and removed off the event loop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from storage import FileStore


@asynccontextmanager
async def staged_upload(files: FileStore) -> AsyncIterator[Path]:
    """A fresh folder for one upload (FileStore.staging); removing a large file must not block the loop."""
    staging = files.staging()
    folder = await asyncio.to_thread(staging.__enter__)
    try:
        yield folder
    finally:
        await asyncio.to_thread(staging.__exit__, None, None, None)
