"""What a worker needs to run a job, as the service specified it: written once at submission, read by the worker.

Stored in the job's own `spec` column: the front end's delivery data stays opaque to the worker,
and the worker never guesses "link or upload" from a display label.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

SPEC_VERSION = 1
DEFAULT_FORMATS = ("mp3", "flac")  # MP3 plays inline in chats and fits upload limits; FLAC is the lossless download


class SourceKind(str, Enum):
    LINK = "link"  # fetched by the worker with yt-dlp
    UPLOAD = "upload"  # a file the service stored in the job's incoming/ folder


@dataclass(frozen=True)
class JobSpec:
    source: SourceKind
    url: str | None = None  # LINK: what to fetch
    upload_name: str | None = None  # UPLOAD: the file's name in the job's incoming/ folder
    max_duration_s: float | None = None  # the user's tier limit (None: the worker's own setting)
    max_bytes: int | None = None  # likewise, for a link's download
    formats: tuple[str, ...] = DEFAULT_FORMATS
    keep_original: bool = True  # the results page plays the input beside the stems
    options: dict[str, Any] = field(default_factory=dict)  # later modes and switches, by name

    def __post_init__(self) -> None:
        if self.source is SourceKind.LINK and not self.url:
            raise ValueError("a link job needs its url")
        if self.source is SourceKind.UPLOAD and self.url:
            raise ValueError("an upload job has no url")

    @property
    def mode(self) -> str:
        """The separation mode (separation_worker/models/modes.py); jobs from before modes: vocals."""
        return str(self.options.get("mode") or "vocals")

    @property
    def raw_copies(self) -> bool:
        """Also keep each stem without loudness normalization (the results page's raw downloads)."""
        return bool(self.options.get("raw_copies", False))

    def with_options(self, **options: Any) -> JobSpec:
        return replace(self, options={**self.options, **options})

    @classmethod
    def link(cls, url: str, **limits: Any) -> JobSpec:
        return cls(SourceKind.LINK, url=url, **limits)

    @classmethod
    def upload(cls, upload_name: str, **limits: Any) -> JobSpec:
        return cls(SourceKind.UPLOAD, upload_name=upload_name, **limits)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": SPEC_VERSION,
                "source": self.source.value,
                "url": self.url,
                "upload_name": self.upload_name,
                "max_duration_s": self.max_duration_s,
                "max_bytes": self.max_bytes,
                "formats": list(self.formats),
                "keep_original": self.keep_original,
                "options": self.options,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        data = json.loads(text)
        if int(data.get("version", 1)) > SPEC_VERSION:
            raise ValueError(f"job spec version {data['version']} is newer than this worker knows ({SPEC_VERSION})")
        return cls(
            source=SourceKind(data["source"]),
            url=data.get("url"),
            upload_name=data.get("upload_name"),
            max_duration_s=data.get("max_duration_s"),
            max_bytes=data.get("max_bytes"),
            formats=tuple(data.get("formats") or DEFAULT_FORMATS),
            keep_original=bool(data.get("keep_original", True)),
            options=dict(data.get("options") or {}),
        )
