"""Waveform data for the results page, computed server-side from the file with ffmpeg.

Decoding in the browser (WebAudio) would make a phone download and hold every stem in full as float PCM before it
draws anything; here ffmpeg decodes each file once at a low rate to mono, and the browser gets ~1,000 small
integers per track. Results are cached in memory by (path, size, mtime): files never change once written.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from separation_worker import media_input

log = logging.getLogger(__name__)

BINS = 1000
RATE = 8000  # Hz: plenty for an envelope, and 1/5 of the samples to scan
LEVELS = 100  # values are 0..LEVELS (JSON integers: small and exact)
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Peaks:
    peak: list[int]  # per bin: the largest |sample|
    rms: list[int]  # per bin: the RMS level, drawn inside the peaks

    def to_json(self) -> dict[str, list[int]]:
        return {"peak": self.peak, "rms": self.rms}


EMPTY = Peaks([], [])


def envelope(samples: np.ndarray, bins: int = BINS) -> Peaks:
    """Peak and RMS per bin of mono samples scaled to -1..1."""
    n = len(samples)
    if n == 0:
        return EMPTY
    bins = min(bins, n)
    edges = np.linspace(0, n, bins + 1).astype(np.int64)[:-1]
    magnitude = np.abs(samples.astype(np.float32))
    peak = np.maximum.reduceat(magnitude, edges)
    counts = np.diff(np.append(edges, n))
    rms = np.sqrt(np.add.reduceat(magnitude.astype(np.float64) ** 2, edges) / counts)

    def levels(values: np.ndarray) -> list[int]:
        return np.clip(np.rint(values * LEVELS), 0, LEVELS).astype(int).tolist()

    return Peaks(levels(peak), levels(rms))


async def decode_peaks(path: Path, bins: int = BINS) -> Peaks:
    """The file's waveform, or no data (drawn flat) when ffmpeg can't decode it."""
    try:
        process = await asyncio.create_subprocess_exec(
            "ffmpeg", "-nostdin", "-v", "error", *media_input.input_args(path), "-ac", "1", "-ar", str(RATE), "-f", "s16le", "pipe:1",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        log.warning("cannot run ffmpeg for waveforms: %s", exc)
        return EMPTY
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        log.warning("waveform of %s timed out", path.name)
        return EMPTY
    if process.returncode != 0:
        log.warning("ffmpeg could not decode %s: %s", path.name, stderr.decode(errors="replace").strip()[:200])
        return EMPTY
    samples = np.frombuffer(stdout[: len(stdout) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    return await asyncio.to_thread(envelope, samples, bins)


class PeaksCache:
    """Waveforms by file identity, least recently used dropped first; ffmpeg runs at most `parallel` at a time."""

    def __init__(self, capacity: int = 128, parallel: int = 2) -> None:
        self._items: OrderedDict[tuple[str, int, int], Peaks] = OrderedDict()
        self._capacity = capacity
        self._slots = asyncio.Semaphore(parallel)

    async def get(self, path: Path) -> Peaks:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        peaks = self._items.get(key)
        if peaks is None:
            async with self._slots:
                peaks = self._items.get(key)  # another request may have computed it while this one waited
                if peaks is None:
                    peaks = await decode_peaks(path)
        self._items[key] = peaks
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)
        return peaks
