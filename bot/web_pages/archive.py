""""Download all": a zip of a job's result files, streamed as it is built (nothing is written to disk).

The entries are stored, not deflated: MP3 and FLAC are compressed already, and stored entries make the zip's size
known before it is built (headers + file sizes), so browsers can show real download progress.
"""

from __future__ import annotations

import asyncio
import time
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    name: str  # the name inside the zip
    path: Path
    size: int
    mtime: float


class _Sink:
    """A write-only, unseekable file: zipfile then writes data descriptors instead of seeking back."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def entries_for(paths: dict[str, Path]) -> list[Entry]:
    """Zip entries for `name -> path` (paths must exist; the caller located them)."""
    entries = []
    for name, path in paths.items():
        stat = path.stat()
        entries.append(Entry(name, path, stat.st_size, stat.st_mtime))
    return entries


def _info(entry: Entry, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(entry.name, time.localtime(max(entry.mtime, 315532800))[:6])  # zip dates start in 1980
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    info.file_size = size
    return info


def zip_size(entries: list[Entry]) -> int | None:
    """The exact byte length of `write_zip(entries)`, or None where ZIP64 records would make it differ."""
    if sum(e.size for e in entries) > zipfile.ZIP64_LIMIT // 2:
        return None
    # Headers, data descriptors and the central directory don't depend on the data: measure them on empty entries.
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:  # type: ignore[call-overload]
        for entry in entries:
            with archive.open(_info(entry, 0), "w"):
                pass
    return len(sink.take()) + sum(e.size for e in entries)


async def write_zip(entries: list[Entry], write: Callable[[bytes], Awaitable[None]]) -> None:
    """Build the zip and pass it to `write` piece by piece (reads run in threads; `write` gives back-pressure)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:  # type: ignore[call-overload]
        for entry in entries:
            source = await asyncio.to_thread(open, entry.path, "rb")
            try:
                with archive.open(_info(entry, entry.size), "w") as target:
                    while chunk := await asyncio.to_thread(source.read, CHUNK):
                        target.write(chunk)
                        await write(sink.take())
            finally:
                source.close()
            await write(sink.take())  # the entry's data descriptor
    await write(sink.take())  # the central directory, written on close
