"""The result manifest: what one separation produced, as `result.json` holds it. One writer, one reader.

The worker (and `stembot separate`) write it with `Manifest.to_json()`; the service, the web page, the CLI and the
bots read it with `Manifest.from_json()` (or `from_dict()` on what SQLite already parsed). Nobody else touches the
JSON. Its layout is the one `result.json` always had: top-level `title`, `duration`, `models`, `timings`, the
analysis fields `bpm`, `bpm_confidence`, `key`, `camelot`, `key_confidence` (and `bpm_alternative` when the tempo
reads about as well at double or half speed), and `stems` as an object keyed by stem
name in stem order; `artist` and `track` (the song's own names, from its tags or its page) when known. The dataclass
holds the stems as a sequence (names are no longer the only thing that orders or identifies them); the reader also
accepts `stems` written as a list of `{name, ...}` so a later layout can switch.

Plain data only: this module imports nothing from the pipeline, numpy or torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

from .analysis import MusicalAnalysis

VERSION = 1  # bump only for a change old readers would misread; added keys don't need it
ANALYSIS_FIELDS = ("bpm", "bpm_confidence", "key", "camelot", "key_confidence", "bpm_alternative")
STAGES = ("fetch", "decode", "separate", "loudness", "analyze", "encode", "total")
_PER_MODEL = "separate."  # timings key prefix: seconds of one ensemble member
# How a stem is named to people: in its file name, its title tag and the title a chat shows.
STEM_LABELS = {
    "vocals": "Vocals",
    "instrumental": "Instrumental",
    "lead_vocals": "Lead Vocals",
    "backing_vocals": "Backing Vocals",
    "instrumental_backing": "Instrumental + Backing",
    "drums": "Drums",
    "bass": "Bass",
    "guitar": "Guitar",
    "piano": "Piano",
    "other": "Other",
    "vocal_reverb": "Vocal Reverb + Noise",
}


def stem_label(name: str) -> str:
    return STEM_LABELS.get(name, name.capitalize())


def stem_title(song_title: str, stem_name: str) -> str:
    """A stem's title as players show it: "Night Drive (Vocals)"."""
    return f"{song_title} ({stem_label(stem_name)})"


class ManifestError(ValueError):
    """The text is not a manifest this reader understands."""


@dataclass(frozen=True)
class FileEntry:
    file: str  # a file name in the job's (or the CLI's) output folder
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "size_bytes": self.size_bytes}

    @classmethod
    def from_dict(cls, data: Any) -> FileEntry:
        data = _object(data, "file entry")
        name, size = data.get("file"), data.get("size_bytes", 0)
        if not isinstance(name, str) or not name:
            raise ManifestError("a file entry needs a file name")
        if not _is_number(size) or size < 0:
            raise ManifestError(f"bad size_bytes for {name!r}")
        return cls(name, int(size))


@dataclass(frozen=True)
class LoudnessReport:
    lufs_before: float | None  # None: silent (no gated blocks)
    lufs_after: float | None
    true_peak_before_dbtp: float | None
    true_peak_after_dbtp: float | None
    gain_db: float
    limited: bool  # peaks were limited to reach the target
    silent: bool

    def rounded(self) -> LoudnessReport:
        """To the 0.01 dB result.json keeps (a manifest holds it so, and reads back equal)."""
        values: dict[str, Any] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        return LoudnessReport(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self.rounded())

    @classmethod
    def from_dict(cls, data: Any) -> LoudnessReport:
        data = _object(data, "loudness report")
        return cls(
            lufs_before=_optional_number(data.get("lufs_before")),
            lufs_after=_optional_number(data.get("lufs_after")),
            true_peak_before_dbtp=_optional_number(data.get("true_peak_before_dbtp")),
            true_peak_after_dbtp=_optional_number(data.get("true_peak_after_dbtp")),
            gain_db=_optional_number(data.get("gain_db")) or 0.0,
            limited=bool(data.get("limited", False)),
            silent=bool(data.get("silent", False)),
        )


@dataclass(frozen=True)
class StemEntry:
    name: str  # "vocals" | "instrumental" (other names may follow)
    files: Mapping[str, FileEntry]  # format -> file; the first is the primary one (the job's first format)
    silent: bool = False
    loudness: LoudnessReport | None = None
    raw: FileEntry | None = None  # the stem without loudness normalization (24-bit FLAC), when one was kept

    def __post_init__(self) -> None:
        if not self.files:
            raise ManifestError(f"stem {self.name!r} has no files")
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))  # frozen all the way down
        if self.loudness is not None:
            object.__setattr__(self, "loudness", self.loudness.rounded())

    @property
    def primary(self) -> FileEntry:
        return next(iter(self.files.values()))

    def file(self, fmt: str) -> FileEntry | None:
        return self.files.get(fmt)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.primary.to_dict(),  # `file`/`size_bytes`: the primary file, for readers that predate `files`
            "label": stem_label(self.name),  # as people see it (derived from the name: not read back)
            "files": {fmt: entry.to_dict() for fmt, entry in self.files.items()},
            "silent": self.silent,
            "loudness": self.loudness.to_dict() if self.loudness else None,
            **({"raw": self.raw.to_dict()} if self.raw else {}),
        }

    @classmethod
    def from_dict(cls, name: str, data: Any) -> StemEntry:
        data = _object(data, f"stem {name!r}")
        files = {str(fmt).lower(): FileEntry.from_dict(e) for fmt, e in _object(data.get("files", {}), "files").items()}
        if "file" in data:  # the primary file leads; very old files named only it
            primary = FileEntry.from_dict(data)
            fmt = next((f for f, e in files.items() if e.file == primary.file), _suffix(primary.file))
            files = {fmt: files.get(fmt, primary), **files}
        loudness = LoudnessReport.from_dict(data["loudness"]) if data.get("loudness") is not None else None
        raw = FileEntry.from_dict(data["raw"]) if data.get("raw") is not None else None
        return cls(name, files, bool(data.get("silent", loudness.silent if loudness else False)), loudness, raw)


@dataclass(frozen=True)
class Timings:
    """Seconds per stage; None for a stage that didn't run (no fetch for a file, no decode for decoded audio)."""

    fetch: float | None = None
    decode: float | None = None
    separate: float | None = None
    loudness: float | None = None
    analyze: float | None = None
    encode: float | None = None
    total: float | None = None
    per_model: Mapping[str, float] = field(default_factory=dict)  # ensemble member -> seconds (within separate)

    def __post_init__(self) -> None:
        # Milliseconds, as result.json keeps them: a manifest equals what reading it back gives.
        for stage in STAGES:
            value = getattr(self, stage)
            if value is not None:
                object.__setattr__(self, stage, round(float(value), 3))
        per_model = {name: round(float(s), 3) for name, s in self.per_model.items()}
        object.__setattr__(self, "per_model", MappingProxyType(per_model))

    @classmethod
    def from_stages(cls, seconds: Mapping[str, float]) -> Timings:
        """From the flat `stage -> seconds` the pipeline measures (`separate.<model>` for each member)."""
        per_model = {k[len(_PER_MODEL):]: v for k, v in seconds.items() if k.startswith(_PER_MODEL)}
        return cls(**{s: float(seconds[s]) for s in STAGES if s in seconds}, per_model=per_model)

    def to_dict(self) -> dict[str, float]:
        """Today's flat layout, in pipeline order: `fetch`, `decode`, `separate`, `separate.<model>`…, `total`."""
        out: dict[str, float] = {}
        for stage in STAGES:
            value = getattr(self, stage)
            if value is not None:
                out[stage] = value
            if stage == "separate":
                out.update({f"{_PER_MODEL}{name}": s for name, s in self.per_model.items()})
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Timings:
        data = _object(data, "timings")
        numbers = {str(k): float(v) for k, v in data.items() if _is_number(v)}
        return cls.from_stages(numbers)


@dataclass(frozen=True)
class ModelInfo:
    name: str  # shown to users
    checkpoint: str
    weight: float
    splits: str | None = None  # a mode's split model: the stem it splits (None: an ensemble member)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "checkpoint": self.checkpoint, "weight": self.weight}
        return {**data, "splits": self.splits} if self.splits else data

    @classmethod
    def from_dict(cls, data: Any) -> ModelInfo:
        data = _object(data, "model")
        return cls(str(data.get("name", "")), str(data.get("checkpoint", "")),
                   float(_optional_number(data.get("weight")) or 0.0), _optional_str(data.get("splits")))


@dataclass(frozen=True)
class Manifest:
    title: str
    source: str  # the link, the upload's path or a label; never a secret
    duration: float  # seconds
    sample_rate: int
    format: str  # the primary format
    stems: tuple[StemEntry, ...]
    models: tuple[ModelInfo, ...]
    device: str
    precision: str
    timings: Timings
    bpm: float | None
    bpm_confidence: float
    key: str | None
    camelot: str | None
    key_confidence: float
    original: FileEntry | None = None  # the input, encoded, when kept for comparison
    bpm_alternative: float | None = None  # absent before tempo ambiguity was reported
    # The song as its tags (or its page) name it; `title` stays the display title ("Artist - Track").
    artist: str | None = None
    track: str | None = None
    mode: str = "vocals"  # the separation mode (models/modes.py); absent before modes: vocals
    raw: bool = False  # stems as separated, without loudness normalization (they null against the input)
    version: int = VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "duration", round(float(self.duration), 3))  # as result.json keeps it
        object.__setattr__(self, "stems", tuple(self.stems))
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "artist", _optional_text(self.artist))  # blank is unknown, as the reader sees it
        object.__setattr__(self, "track", _optional_text(self.track))
        names = [s.name for s in self.stems]
        if len(set(names)) != len(names):
            raise ManifestError(f"stem names repeat: {names}")

    @property
    def analysis(self) -> MusicalAnalysis:
        return MusicalAnalysis(**{k: getattr(self, k) for k in ANALYSIS_FIELDS})

    @property
    def song_title(self) -> str:
        """The track's own title when known (no artist in it), else the display title."""
        return self.track or self.title

    def stem_title(self, name: str) -> str:
        """The stem's title tag, e.g. "Night Drive (Vocals)" (what the pipeline wrote into the file)."""
        return stem_title(self.song_title, name)

    def stem(self, name: str) -> StemEntry | None:
        return next((s for s in self.stems if s.name == name), None)

    def files(self) -> list[FileEntry]:
        """Every output file it names, once each: each stem's formats in order, then the original."""
        seen: dict[str, FileEntry] = {}
        for stem in self.stems:
            for entry in (*stem.files.values(), *([stem.raw] if stem.raw else [])):
                seen.setdefault(entry.file, entry)
        if self.original is not None:
            seen.setdefault(self.original.file, self.original)
        return list(seen.values())

    # -- the one writer ----------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": self.version,
            "title": self.title,
            **({"artist": self.artist} if self.artist is not None else {}),
            **({"track": self.track} if self.track is not None else {}),
            "source": self.source,
            "duration": self.duration,
            "sample_rate": self.sample_rate,
            "format": self.format,
            "mode": self.mode,
            "raw": self.raw,
            "stems": {s.name: s.to_dict() for s in self.stems},  # name-keyed, in stem order: the layout readers know
            "models": [m.to_dict() for m in self.models],
            "device": self.device,
            "precision": self.precision,
            "timings": self.timings.to_dict(),
        }
        if self.original is not None:
            data["original"] = self.original.to_dict()
        data.update(self.analysis.to_dict())
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    # -- the one reader ----------------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"not JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Reads every layout written so far (no `version`: the same layout as version 1)."""
        data = _object(data, "manifest")
        version = data.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1 or version > VERSION:
            raise ManifestError(f"manifest version {version!r} is not one this reader knows (up to {VERSION})")
        try:
            return cls(
                title=str(data.get("title") or ""),
                source=str(data.get("source") or ""),
                duration=float(_optional_number(data.get("duration")) or 0.0),
                sample_rate=int(_optional_number(data.get("sample_rate")) or 0),
                format=str(data.get("format") or ""),
                stems=tuple(_read_stems(data.get("stems"))),
                models=tuple(ModelInfo.from_dict(m) for m in _list(data.get("models", []), "models")),
                device=str(data.get("device") or ""),
                precision=str(data.get("precision") or ""),
                timings=Timings.from_dict(data.get("timings", {})),
                bpm=_optional_number(data.get("bpm")),
                bpm_confidence=_optional_number(data.get("bpm_confidence")) or 0.0,
                key=_optional_str(data.get("key")),
                camelot=_optional_str(data.get("camelot")),
                key_confidence=_optional_number(data.get("key_confidence")) or 0.0,
                bpm_alternative=_optional_number(data.get("bpm_alternative")),
                original=FileEntry.from_dict(data["original"]) if data.get("original") is not None else None,
                artist=_optional_text(data.get("artist")),  # absent before the tags were kept
                track=_optional_text(data.get("track")),
                mode=str(data.get("mode") or "vocals"),
                raw=bool(data.get("raw", False)),
                version=version,
            )
        except (TypeError, ValueError) as exc:  # e.g. a float('x') deep inside: one error type for callers
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(str(exc)) from None


def _read_stems(value: Any) -> Iterable[StemEntry]:
    if isinstance(value, dict):  # the layout written so far: {name: stem}
        return [StemEntry.from_dict(str(name), stem) for name, stem in value.items()]
    if isinstance(value, list):  # a list of {name, ...}: accepted so the writer may switch layouts later
        return [StemEntry.from_dict(str(_object(s, "stem").get("name", "")), s) for s in value]
    raise ManifestError("`stems` must be an object keyed by stem name (or a list of stems)")


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ManifestError(f"{what} must be a JSON object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ManifestError(f"{what} must be a JSON list")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _optional_number(value: Any) -> float | None:
    if value is None:
        return None
    if not _is_number(value):
        raise ManifestError(f"expected a number, got {value!r}")
    return float(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _optional_text(value: Any) -> str | None:
    """A name: None when absent or blank."""
    if value is None:
        return None
    return str(value).strip() or None


def _suffix(name: str) -> str:
    return name.rpartition(".")[2].lower() if "." in name else ""
