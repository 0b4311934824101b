"""Fetching a file a user sent to the bot: streamed to disk once, never whole in memory.

PTB's own download reads the whole file into memory first (up to 2 GB from a local Bot API
server). Here the body streams into the file store's staging folder under a size cap; a local
Bot API server's file (a path on this machine) is copied the same way.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from telegram import File

CHUNK = 1 << 20
TIMEOUT = httpx.Timeout(30.0, read=60.0)


class DownloadFailed(Exception):
    """The file could not be fetched; the message never holds the file's URL (it carries the bot token)."""


def _encoded_url(file_path: str) -> str:
    parts = urlsplit(file_path)
    return urlunsplit(parts._replace(path=quote(parts.path)))


async def download(telegram_file: File, dest: Path, max_bytes: int) -> bool:
    """Stream the file to `dest`; False (and `dest` removed) if it is larger than `max_bytes`."""
    source = str(telegram_file.file_path or "")
    if not source:
        raise DownloadFailed("Telegram gave no file path")
    local = Path(source)
    if local.is_absolute() and local.is_file():  # a local Bot API server hands out paths on this machine
        if local.stat().st_size > max_bytes:
            return False
        await asyncio.to_thread(shutil.copyfile, local, dest)
        return True
    size = 0
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            async with client.stream("GET", _encoded_url(source)) as response:
                if response.status_code != 200:
                    raise DownloadFailed(f"the Bot API answered {response.status_code}")
                with dest.open("wb") as out:
                    async for chunk in response.aiter_bytes(CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            break
                        await asyncio.to_thread(out.write, chunk)
    except httpx.HTTPError as exc:
        raise DownloadFailed(type(exc).__name__) from None
    if size > max_bytes:
        dest.unlink(missing_ok=True)
        return False
    return True
