"""Exceptions raised by the storage package."""

from __future__ import annotations

from enum import Enum


class StorageError(Exception):
    """Base class of every error raised by `storage`."""


class SchemaTooNew(StorageError):
    """The database was migrated by a newer version of StemBot than this one."""


class NotFound(StorageError):
    """A user or job that the call names does not exist."""


class DuplicateJob(StorageError):
    """A job (or quota charge) with this id already exists."""


class InvalidTransition(StorageError):
    """A job status change that the state machine does not allow (e.g. done → running)."""

    def __init__(self, job_id: str, current: str, wanted: str) -> None:
        super().__init__(f"job {job_id}: cannot go from {current} to {wanted}")
        self.job_id = job_id
        self.current = current
        self.wanted = wanted


class InvalidName(StorageError, ValueError):
    """A job id or file name that is not allowed (unsafe characters, path traversal, ...)."""


class LinkFailure(str, Enum):
    """Why a link code was refused; `LinkCodeError.message` is the text to show the user."""

    NOT_FOUND = "not_found"
    EXPIRED = "expired"
    USED = "used"
    SAME_PLATFORM = "same_platform"


_LINK_MESSAGES = {
    LinkFailure.NOT_FOUND: "That code doesn't exist. Check it and try again, or create a new one.",
    LinkFailure.EXPIRED: "That code has expired. Create a new one and use it within a few minutes.",
    LinkFailure.USED: "That code has already been used. Create a new one.",
    LinkFailure.SAME_PLATFORM: "Link codes connect a Discord account with a Telegram account: "
    "use the code on the other platform.",
}


class LinkCodeError(StorageError):
    """A link code could not be redeemed; `reason` says why and `message` is user-facing."""

    def __init__(self, reason: LinkFailure) -> None:
        self.reason = reason
        self.message = _LINK_MESSAGES[reason]
        super().__init__(self.message)


class ConstraintViolation(StorageError):
    """A statement broke a UNIQUE or FOREIGN KEY constraint (either database's error, as one type)."""

    def __init__(self, message: str, foreign_key: bool) -> None:
        super().__init__(message)
        self.foreign_key = foreign_key


class DatabaseUnavailable(StorageError):
    """The database server could not be reached or refused us (PostgreSQL); the message names it, never a password."""
