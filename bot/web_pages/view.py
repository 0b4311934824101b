"""A job's result.json (see `separation_worker.result`), turned into what the results page shows.

Everything here is pure: file links come from a `link(filename)` callable, so the page can sign them with the
page's own expiry. Only names that are valid single file names are ever linked or zipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.links import valid_filename
from bot.web_pages.fs import locate
from separation_worker.contract.analysis import MusicalAnalysis
from separation_worker.audio_io import format_duration
from separation_worker.result import RESULT_FILE

log = logging.getLogger(__name__)

Link = Callable[[str], str]

ORIGINAL = "original"
STEM_ORDER = ("vocals", "instrumental")  # others (future stems) follow in result.json's order
FORMAT_ORDER = ("mp3", "flac", "wav")
FORMAT_LABELS = {"mp3": "MP3 320", "flac": "FLAC", "wav": "WAV"}
ANALYSIS_FIELDS = ("bpm", "bpm_confidence", "key", "camelot", "key_confidence")


@dataclass(frozen=True)
class Download:
    label: str  # "MP3 320", "FLAC", "WAV"
    kind: str  # "mp3" | "flac" | "wav": lossy or lossless, for styling
    filename: str
    url: str
    size: str  # "9.4 MB"


@dataclass(frozen=True)
class Track:
    key: str  # "original" | "vocals" | "instrumental"
    label: str  # "Full mix", "Vocals", ...
    play_filename: str  # what the player streams (the MP3 when there is one) and the waveform is drawn from
    play_url: str
    downloads: tuple[Download, ...]
    is_stem: bool
    silent: bool = False
    loudness: str = ""  # "−14.0 LUFS · −1.0 dBTP", empty when unknown


@dataclass(frozen=True)
class ResultsView:
    title: str
    duration: float
    duration_text: str  # "3:25"
    summary: str  # "128 BPM · A minor (8A)"
    tracks: tuple[Track, ...]
    zip_size: int  # bytes of the audio files the zip will hold


def read_result(files_root: Path, job_id: str) -> dict[str, Any] | None:
    """The job's parsed result.json, or None when its folder or the file is gone (or unreadable)."""
    path = locate(files_root, job_id, RESULT_FILE)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("unreadable %s for job %s: %s", RESULT_FILE, job_id, exc)
        return None
    return data if isinstance(data, dict) and isinstance(data.get("stems"), dict) else None


def build_view(data: dict[str, Any], link: Link) -> ResultsView:
    """The page's content for a parsed result.json; `link(filename)` signs a file's download URL."""
    tracks: list[Track] = []
    original = _file_entry(data.get("original"))
    if original:
        name, size = original
        tracks.append(Track(ORIGINAL, "Full mix", name, link(name), (_download(name, size, link),), is_stem=False))
    for key, stem in _stems(data):
        formats = _formats(stem)
        if not formats:
            continue
        play = formats.get("mp3") or next(iter(formats.values()))
        loudness = stem.get("loudness") if isinstance(stem.get("loudness"), dict) else {}
        tracks.append(Track(
            key=key,
            label=key.replace("_", " ").capitalize(),
            play_filename=play[0],
            play_url=link(play[0]),
            downloads=tuple(_download(name, size, link) for name, size in formats.values()),
            is_stem=True,
            silent=bool(stem.get("silent")),
            loudness=_loudness_text(loudness),
        ))
    analysis = MusicalAnalysis(**{k: data.get(k) for k in ANALYSIS_FIELDS})
    duration = _number(data.get("duration"))
    return ResultsView(
        title=str(data.get("title") or "Untitled"),
        duration=duration,
        duration_text=format_duration(duration),
        summary=analysis.summary(),
        tracks=tuple(tracks),
        zip_size=sum(size for _, size in _all_entries(data)),
    )


def result_files(data: dict[str, Any]) -> list[str]:
    """Exactly the job's result files named by result.json (every stem format, the original, result.json itself)."""
    return [name for name, _ in _all_entries(data)]


def size_text(size: int) -> str:
    # Binary units, as Discord and Telegram state their upload limits.
    if size >= 2**20:
        return f"{size / 2**20:.1f} MB"
    return f"{max(1, round(size / 2**10))} KB"


def _all_entries(data: dict[str, Any]) -> list[tuple[str, int]]:
    seen: dict[str, int] = {}
    for _, stem in _stems(data):
        for name, size in _formats(stem).values():
            seen.setdefault(name, size)
    original = _file_entry(data.get("original"))
    if original:
        seen.setdefault(*original)
    seen.setdefault(RESULT_FILE, 0)
    return list(seen.items())


def _stems(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    stems = {k: v for k, v in data.get("stems", {}).items() if isinstance(k, str) and isinstance(v, dict)}
    order = [k for k in STEM_ORDER if k in stems] + [k for k in stems if k not in STEM_ORDER]
    return [(k, stems[k]) for k in order]


def _formats(stem: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """format -> (file name, size), MP3 first then lossless; the primary `file` counts when `files` lacks it."""
    found: dict[str, tuple[str, int]] = {}
    files = stem.get("files") if isinstance(stem.get("files"), dict) else {}
    for fmt, entry in files.items():
        parsed = _file_entry(entry)
        if parsed:
            found[str(fmt).lower()] = parsed
    primary = _file_entry(stem)
    if primary and all(name != primary[0] for name, _ in found.values()):
        found.setdefault(Path(primary[0]).suffix.lstrip(".").lower(), primary)
    order = [f for f in FORMAT_ORDER if f in found] + [f for f in found if f not in FORMAT_ORDER]
    return {f: found[f] for f in order}


def _file_entry(entry: Any) -> tuple[str, int] | None:
    if not isinstance(entry, dict):
        return None
    name = entry.get("file")
    if not isinstance(name, str) or not valid_filename(name) or name == RESULT_FILE:
        return None
    return name, int(_number(entry.get("size_bytes")))


def _download(name: str, size: int, link: Link) -> Download:
    kind = Path(name).suffix.lstrip(".").lower()
    return Download(FORMAT_LABELS.get(kind, kind.upper()), kind, name, link(name), size_text(size))


def _loudness_text(report: dict[str, Any]) -> str:
    lufs, peak = report.get("lufs_after"), report.get("true_peak_after_dbtp")
    if not isinstance(lufs, (int, float)):
        return ""
    text = f"{lufs:.1f} LUFS".replace("-", "−")
    if isinstance(peak, (int, float)):
        text += f" · {peak:.1f} dBTP".replace("-", "−")
    return text


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
