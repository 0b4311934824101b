"""The frozen dataclasses that cross the storage boundary, and the naming rules they obey."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from storage.clock import decode_time
from storage.errors import InvalidName
from storage.sql import Row

PLATFORMS = ("discord", "telegram")

# Job ids become folder names under the file store, so they are restricted to characters that are safe there.
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def validate_job_id(job_id: str) -> str:
    """Return `job_id` if it is 1-128 characters of [A-Za-z0-9_-]; raise InvalidName otherwise."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise InvalidName(f"invalid job id {job_id!r}: use 1-128 characters from A-Z a-z 0-9 _ -")
    return job_id


def validate_platform(platform: str) -> str:
    if platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}; expected one of {', '.join(PLATFORMS)}")
    return platform


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    def __str__(self) -> str:  # "done", not "JobStatus.DONE", in messages and logs
        return self.value


FINISHED_STATUSES = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})


@dataclass(frozen=True)
class User:
    id: int  # internal id, used by every other call
    platform: str  # "discord" | "telegram"
    platform_user_id: str
    display_name: str
    linked_user_id: int | None  # the account on the other platform, once linked
    pro_role_held: bool  # Discord: held the Pro role of `pro_role_guild_id` when last seen there
    pro_role_seen_at: datetime | None  # when pro_role_held was last recorded
    pro_role_guild_id: str | None  # the server whose Pro role that was
    created_at: datetime
    last_seen_at: datetime
    default_mode: str | None = None  # the separation mode the user's songs get unless they pick one

    @classmethod
    def from_row(cls, row: Row) -> User:
        return cls(
            id=row["id"],
            platform=row["platform"],
            platform_user_id=row["platform_user_id"],
            display_name=row["display_name"],
            linked_user_id=row["linked_user_id"],
            pro_role_held=bool(row["pro_role_held"]),
            pro_role_seen_at=decode_time(row["pro_role_seen_at"]),
            pro_role_guild_id=row["pro_role_guild_id"],
            created_at=decode_time(row["created_at"]),  # type: ignore[arg-type]
            last_seen_at=decode_time(row["last_seen_at"]),  # type: ignore[arg-type]
            default_mode=row["default_mode"],
        )


@dataclass(frozen=True)
class Job:
    id: str
    user_id: int
    source: str  # URL or original file name, for display
    status: JobStatus
    created_at: datetime
    started_at: datetime | None  # start of the latest attempt
    finished_at: datetime | None  # reached done, failed or cancelled
    delivered_at: datetime | None
    expired_at: datetime | None
    error: str | None  # user-facing reason of a failure
    result_json: str | None
    attempts: int  # times the job went queued → running
    delivery_json: str | None  # the front end's own data (chat id, message id, ...); opaque here
    spec_json: str | None = None  # what the worker runs (separation_worker.contract.job_spec); opaque here

    @property
    def result(self) -> Any:
        """The result, decoded from JSON (None if not stored yet)."""
        return None if self.result_json is None else json.loads(self.result_json)

    @property
    def delivery(self) -> Any:
        """The delivery info, decoded from JSON (None if none was given)."""
        return None if self.delivery_json is None else json.loads(self.delivery_json)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @classmethod
    def from_row(cls, row: Row) -> Job:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            source=row["source"],
            status=JobStatus(row["status"]),
            created_at=decode_time(row["created_at"]),  # type: ignore[arg-type]
            started_at=decode_time(row["started_at"]),
            finished_at=decode_time(row["finished_at"]),
            delivered_at=decode_time(row["delivered_at"]),
            expired_at=decode_time(row["expired_at"]),
            error=row["error"],
            result_json=row["result"],
            attempts=row["attempts"],
            delivery_json=row["delivery"],
            spec_json=row["spec"],
        )


@dataclass(frozen=True)
class QuotaDecision:
    """A user's quota in the rolling window, and whether the submission was (or would be) accepted."""

    accepted: bool  # try_charge: charged now; quota_status: a submission now would be accepted
    used: int  # charges in the window, counting this one if it was accepted
    limit: int
    remaining: int
    next_free_at: datetime | None  # when a slot frees up; None while one is free


@dataclass(frozen=True)
class SpecChange:
    """The outcome of `change_queued_spec`."""

    changed: bool
    job: Job | None  # the job as it is now (None: no such job of that user)
    decision: QuotaDecision | None = None  # the quota after (or, refused, for) the change; None: not waiting

    @property
    def too_late(self) -> bool:
        """A worker has the job already (or it ended): its spec can no longer change."""
        return self.job is not None and self.decision is None


@dataclass(frozen=True)
class Acceptance:
    """The outcome of `accept_job`: the quota decision, and the job when accepted."""

    decision: QuotaDecision
    job: Job | None
    busy: bool = False  # refused because the user already had `max_in_flight` jobs queued or running

    @property
    def accepted(self) -> bool:
        return self.job is not None


@dataclass(frozen=True)
class ProGrant:
    id: int
    user_id: int
    granted_by: str  # who granted it (admin's name or id), free text
    granted_at: datetime
    until: datetime | None  # None: no expiry
    revoked_at: datetime | None
    note: str
    guild_id: str | None = None  # the Discord server it holds in; None: everywhere

    def active_at(self, when: datetime) -> bool:
        return self.revoked_at is None and (self.until is None or when < self.until)

    @classmethod
    def from_row(cls, row: Row) -> ProGrant:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            granted_by=row["granted_by"],
            granted_at=decode_time(row["granted_at"]),  # type: ignore[arg-type]
            until=decode_time(row["until"]),
            revoked_at=decode_time(row["revoked_at"]),
            note=row["note"],
            guild_id=row["guild_id"],
        )


@dataclass(frozen=True)
class LinkCode:
    code: str
    user_id: int
    expires_at: datetime
