"""What a front end hands the service, and what it gets back: typed, platform-neutral."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path

from separation_worker.contract.manifest import LoudnessReport, Manifest


@dataclass(frozen=True)
class UserIdentity:
    platform: str  # "telegram" | "discord"
    user_id: str  # the platform's user id
    display_name: str = ""
    holds_pro_role: bool | None = None  # Discord: holds guild_id's Pro role (a DM: the home server's; None: unknown)
    guild_id: str | None = None  # Discord: the server the request was made in (None: a DM, or Telegram)


@dataclass(frozen=True)
class UploadSource:
    """A file the user sent: its bytes or a local path (e.g. downloaded by the front end), and its name."""

    filename: str
    data: bytes | None = None
    path: Path | None = None
    movable: bool = False  # the path is the front end's staged copy (FileStore.staging): moved into the job, not copied


@dataclass(frozen=True)
class LinkSource:
    url: str


Source = UploadSource | LinkSource


@dataclass(frozen=True)
class QuotaInfo:
    pro: bool
    used: int
    limit: int
    remaining: int
    next_free_at: datetime | None  # when the next song frees up; None while one is free


@dataclass(frozen=True)
class JobHandle:
    job_id: str
    position: int | None  # place in the queue (1 = next); None once a worker has it
    quota: QuotaInfo
    mode: str = "vocals"  # the separation mode it runs in (separation_worker/models/modes.py)
    songs: int = 1  # what it cost against the quota


@dataclass(frozen=True)
class ModeOption:
    """A separation mode as a user may be offered it."""

    name: str  # "karaoke"
    title: str  # "Karaoke"
    summary: str  # what it gives
    songs: int  # quota songs one song costs in it
    allowed: bool  # the user's tier may pick it


@dataclass(frozen=True)
class ModeChange:
    """A waiting job's mode was changed."""

    job_id: str
    mode: str
    songs: int
    quota: QuotaInfo


class RefusalCode(str, Enum):
    """Why a submission was refused (metrics count them by this value)."""

    QUOTA = "quota"
    QUEUE_FULL = "queue_full"
    BUSY = "busy"  # we could not queue it (our side)
    BUSY_USER = "busy_user"  # the user's songs in flight
    RATE_LIMITED = "rate_limited"
    BAD_LINK = "bad_link"
    PRIVATE_LINK = "private_link"
    NOT_AUDIO = "not_audio"
    TOO_LONG = "too_long"
    TOO_LARGE = "too_large"
    UNKNOWN_MODE = "unknown_mode"
    PRO_MODE = "pro_mode"  # a mode the user's tier may not pick
    TOO_LATE = "too_late"  # the job's mode can no longer change: a worker has it
    DOWNLOAD_FAILED = "download_failed"  # the front end could not fetch the user's file


@dataclass(frozen=True)
class Refusal:
    """The submission was not accepted and cost nothing. `message` is shown to the user as is."""

    code: RefusalCode
    message: str
    next_free_at: datetime | None = None


@dataclass(frozen=True)
class StemFile:
    name: str  # "vocals" | "instrumental"
    filename: str
    path: Path
    size_bytes: int
    url: str  # signed download link, valid until JobResult.expires_at
    silent: bool = False
    lossless_url: str | None = None  # the same stem as FLAC, when the worker made one
    loudness: LoudnessReport | None = None  # before/after normalization, from the manifest


@dataclass(frozen=True)
class JobResult:
    job_id: str
    title: str
    duration: float
    stems: list[StemFile]
    bpm: float | None
    key: str | None
    camelot: str | None
    summary: str  # "128 BPM · A minor (8A)"
    models: list[dict]
    expires_at: datetime
    result_url: str | None = None  # result.json
    page_url: str | None = None  # the results page (listen, compare, download), valid until expires_at
    raw: dict = field(default_factory=dict)  # the manifest as result.json lays it out (prefer `manifest`)
    manifest: Manifest | None = None  # the worker's typed result manifest
