"""What a front end hands the service, and what it gets back: typed, platform-neutral."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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


@dataclass(frozen=True)
class Refusal:
    """The submission was not accepted and cost nothing. `message` is shown to the user as is."""

    code: str  # quota | queue_full | bad_link | private_link | not_audio | too_long | too_large | busy
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
