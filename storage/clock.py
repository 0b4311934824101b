"""Time source and the one timestamp format stored in the database.

Every function that needs "now" gets it from a `Clock`, so tests can move time with `FakeClock` instead of sleeping.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol

UTC = timezone.utc

# Fixed width, always UTC: stored timestamps compare correctly as plain strings in SQL (`charged_at > ?`).
_DB_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to (tests)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _require_aware(start or datetime(2025, 1, 1, 12, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = _require_aware(when)

    def advance(self, delta: timedelta | float) -> datetime:
        """Move forward by a timedelta or a number of seconds; returns the new time."""
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self._now


def encode_time(when: datetime) -> str:
    """A datetime as stored in the database."""
    return _require_aware(when).strftime(_DB_FORMAT)


def decode_time(text: str | None) -> datetime | None:
    """A stored timestamp back as an aware UTC datetime (None stays None)."""
    if text is None:
        return None
    return datetime.strptime(text, _DB_FORMAT).replace(tzinfo=UTC)


def _require_aware(when: datetime) -> datetime:
    # A naive datetime is ambiguous (local time? UTC?); refusing it early beats storing a wrong instant.
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"timestamps must be timezone-aware, got naive {when!r}")
    return when.astimezone(UTC)
