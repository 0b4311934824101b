"""A job's manifest (`separation_worker.contract.manifest`, its result.json), turned into what the results page shows.

Everything here is pure: file links come from a `link(filename)` callable, so the page can sign them with the
page's own expiry. Only names that are valid single file names are ever linked or zipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.links import valid_filename
from bot.web_pages.mix import GAIN_RANGE, SEMITONES, TEMPO_RANGE, mix_sources
from bot.wording import mode_title
from separation_worker.contract.manifest import (
    FileEntry,
    LoudnessReport,
    Manifest,
    ManifestError,
    StemEntry,
    stem_label,
)
from separation_worker.contract.messages import format_duration
from separation_worker.contract.modes import DEFAULT_MODE
from storage.files import MANIFEST_FILE, FileStore

log = logging.getLogger(__name__)

Link = Callable[[str], str]

ORIGINAL = "original"
STEM_ORDER = ("vocals", "instrumental")  # others (future stems) follow in the manifest's order
FORMAT_ORDER = ("mp3", "flac", "wav")
FORMAT_LABELS = {"mp3": "MP3 320", "flac": "FLAC", "wav": "WAV"}


RAW_LABEL = "Raw FLAC"  # the stem before loudness normalization: the stems add up to the song


@dataclass(frozen=True)
class Download:
    label: str  # "MP3 320", "FLAC", "WAV"
    kind: str  # "mp3" | "flac" | "wav" | "raw" (unnormalized FLAC): for styling and the link's name
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
class MixerRow:
    key: str  # a partition stem ("drums"); mix stems such as instrumental_backing have no row
    label: str
    play_url: str
    balance: float  # the gain that undoes the stem file's loudness normalization (mix.py applies the same)


@dataclass(frozen=True)
class MixerLimits:
    gain_max: float = GAIN_RANGE[1]
    tempo_min: float = TEMPO_RANGE[0]
    tempo_max: float = TEMPO_RANGE[1]
    semitones: int = SEMITONES


@dataclass(frozen=True)
class ResultsView:
    title: str
    duration: float
    duration_text: str  # "3:25"
    summary: str  # "128 BPM · A minor (8A)"
    tracks: tuple[Track, ...]
    zip_size: int  # bytes of the audio files the zip will hold
    mixer: tuple[MixerRow, ...] = ()
    mode_title: str = ""  # "Karaoke"; "" for the default mode (vocals + instrumental says itself)
    mixer_limits: MixerLimits = MixerLimits()


def read_manifest(store: FileStore, job_id: str) -> Manifest | None:
    """The job's manifest, or None when its folder or result.json is gone (or unreadable)."""
    text = store.read_manifest(job_id)
    if text is None:
        return None
    try:
        return Manifest.from_json(text)
    except ManifestError as exc:
        log.warning("unreadable %s for job %s: %s", MANIFEST_FILE, job_id, exc)
        return None


def build_view(manifest: Manifest, link: Link) -> ResultsView:
    """The page's content for a job's manifest; `link(filename)` signs a file's download URL."""
    tracks: list[Track] = []
    if manifest.original and _linkable(manifest.original):
        entry = manifest.original
        tracks.append(Track(ORIGINAL, "Full mix", entry.file, link(entry.file), (_download(entry, link),), is_stem=False))
    for stem in _ordered(manifest.stems):
        formats = _formats(stem)
        if not formats:
            continue
        play = formats.get("mp3") or next(iter(formats.values()))
        tracks.append(Track(
            key=stem.name,
            label=stem_label(stem.name),
            play_filename=play.file,
            play_url=link(play.file),
            downloads=tuple(_download(entry, link) for entry in formats.values())
            + ((_download(stem.raw, link, RAW_LABEL, "raw"),) if stem.raw and _linkable(stem.raw) else ()),
            is_stem=True,
            silent=stem.silent,
            loudness=_loudness_text(stem.loudness),
        ))
    return ResultsView(
        title=manifest.title or "Untitled",
        duration=manifest.duration,
        duration_text=format_duration(manifest.duration),
        summary=manifest.analysis.summary(),
        mode_title="" if manifest.mode == DEFAULT_MODE else mode_title(manifest.mode),
        tracks=tuple(tracks),
        zip_size=sum(entry.size_bytes for entry in _linkable_files(manifest)),
        mixer=tuple(
            MixerRow(s.name, stem_label(s.name), link(s.play_file), s.balance)
            for s in mix_sources(manifest)
        ),
    )


def result_files(manifest: Manifest) -> list[str]:
    """Exactly the job's result files the manifest names (every stem format, the original, result.json itself)."""
    return [entry.file for entry in _linkable_files(manifest)] + [MANIFEST_FILE]


def size_text(size: int) -> str:
    # Binary units, as Discord and Telegram state their upload limits.
    if size >= 2**20:
        return f"{size / 2**20:.1f} MB"
    return f"{max(1, round(size / 2**10))} KB"


def _linkable(entry: FileEntry) -> bool:
    # Only plain single file names are linked or zipped; result.json is listed once, on its own.
    return valid_filename(entry.file) and entry.file != MANIFEST_FILE


def _linkable_files(manifest: Manifest) -> list[FileEntry]:
    """The files the zip holds: every stem format and the original; the raw copies only on their own (they would
    double it)."""
    raw = {stem.raw.file for stem in manifest.stems if stem.raw}
    return [entry for entry in manifest.files() if _linkable(entry) and entry.file not in raw]


def _ordered(stems: tuple[StemEntry, ...]) -> list[StemEntry]:
    known = [s for name in STEM_ORDER for s in stems if s.name == name]
    return known + [s for s in stems if s.name not in STEM_ORDER]


def _formats(stem: StemEntry) -> dict[str, FileEntry]:
    """format -> file, MP3 first then lossless."""
    found = {fmt: entry for fmt, entry in stem.files.items() if _linkable(entry)}
    order = [f for f in FORMAT_ORDER if f in found] + [f for f in found if f not in FORMAT_ORDER]
    return {f: found[f] for f in order}


def _download(entry: FileEntry, link: Link, label: str | None = None, kind: str | None = None) -> Download:
    kind = kind or Path(entry.file).suffix.lstrip(".").lower()
    return Download(label or FORMAT_LABELS.get(kind, kind.upper()), kind, entry.file, link(entry.file),
                    size_text(entry.size_bytes))


def _loudness_text(report: LoudnessReport | None) -> str:
    if report is None or report.lufs_after is None:
        return ""
    text = f"{report.lufs_after:.1f} LUFS".replace("-", "−")
    if report.true_peak_after_dbtp is not None:
        text += f" · {report.true_peak_after_dbtp:.1f} dBTP".replace("-", "−")
    return text
