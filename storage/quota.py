"""The song quota: a rolling window of charges in a ledger, one row per accepted job.

A charge counts (as its `songs`: a heavy mode may cost more than one) while it is younger than the window and not
refunded. Deciding and charging happen in one
BEGIN IMMEDIATE transaction, so concurrent submissions (any number of connections or processes) are serialized
and never exceed the limit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from storage.clock import decode_time, encode_time
from storage.database import Database
from storage.errors import ConstraintViolation, DuplicateJob, NotFound
from storage.models import QuotaDecision, validate_job_id
from storage.sql import Connection

DEFAULT_WINDOW = timedelta(hours=24)


async def quota_status(
    db: Database, user_id: int, limit: int, window: timedelta = DEFAULT_WINDOW, songs: int = 1
) -> QuotaDecision:
    """The user's quota now, without charging; `accepted` says whether a submission of `songs` songs would be."""
    _check_limit(limit)
    async with db.read() as conn:
        return await status_in(conn, user_id, limit, db.clock.now(), window, songs)


async def status_in(
    conn: Connection, user_id: int, limit: int, now: datetime, window: timedelta, songs: int = 1
) -> QuotaDecision:
    """Within an open transaction: `quota_status` (would `songs` more fit?)."""
    charges = await _live_charges(conn, user_id, now, window)
    return _decide(accepted=len(charges) + songs <= limit, charges=charges, limit=limit, window=window, songs=songs)


async def try_charge(
    db: Database, user_id: int, job_id: str, limit: int, window: timedelta = DEFAULT_WINDOW
) -> QuotaDecision:
    """Charge one song to the user for `job_id` if the window has room. Raises DuplicateJob if already charged.

    Prefer `jobs.accept_job`, which also creates the job in the same transaction.
    """
    async with db.write() as conn:
        return await charge_in(conn, user_id, job_id, limit, db.clock.now(), window)


async def refund(db: Database, job_id: str, reason: str = "") -> bool:
    """Give the charge of `job_id` back. True if this call refunded it; False if it was already, or never charged."""
    async with db.write() as conn:
        return await refund_in(conn, job_id, reason, db.clock.now())


async def charge_in(
    conn: Connection,
    user_id: int,
    job_id: str,
    limit: int,
    now: datetime,
    window: timedelta,
    songs: int = 1,
) -> QuotaDecision:
    """Within an open write transaction: `try_charge`, for `songs` songs."""
    validate_job_id(job_id)
    _check_limit(limit)
    _check_songs(songs)
    charges = await _live_charges(conn, user_id, now, window)
    if len(charges) + songs > limit:
        return _decide(accepted=False, charges=charges, limit=limit, window=window, songs=songs)
    try:
        await conn.execute(
            "INSERT INTO quota_ledger (user_id, job_id, charged_at, songs) VALUES (?, ?, ?, ?)",
            (user_id, job_id, encode_time(now), songs),
        )
    except ConstraintViolation as error:
        if error.foreign_key:
            raise NotFound(f"no user with id {user_id}") from None
        raise DuplicateJob(f"job {job_id} was already charged") from None
    return _decide(accepted=True, charges=[*charges, *[now] * songs], limit=limit, window=window)


async def recharge_in(
    conn: Connection, user_id: int, job_id: str, limit: int, now: datetime, window: timedelta, songs: int
) -> QuotaDecision:
    """Within an open write transaction: make the live charge of `job_id` `songs` songs if the quota has room for
    that (its other charges + `songs` <= limit, or the cost goes down); else change nothing (`accepted` False)."""
    _check_limit(limit)
    _check_songs(songs)
    async with conn.execute(
        "SELECT charged_at, songs FROM quota_ledger WHERE job_id = ? AND user_id = ? AND refunded_at IS NULL",
        (job_id, user_id),
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"job {job_id} holds no live charge of user {user_id}")
    others = await _live_charges(conn, user_id, now, window, excluding=job_id)
    if len(others) + songs > limit and songs > int(row[1]):
        return _decide(accepted=False, charges=others, limit=limit, window=window, songs=songs)
    await conn.execute("UPDATE quota_ledger SET songs = ? WHERE job_id = ?", (songs, job_id))
    own = decode_time(row[0])
    assert own is not None
    charged = sorted([*others, *([own] * songs if own > now - window else [])])
    return _decide(accepted=True, charges=charged, limit=limit, window=window)


async def refund_in(conn: Connection, job_id: str, reason: str, now: datetime) -> bool:
    """Within an open write transaction: `refund`."""
    cursor = await conn.execute(
        "UPDATE quota_ledger SET refunded_at = ?, refund_reason = ? WHERE job_id = ? AND refunded_at IS NULL",
        (encode_time(now), reason, job_id),
    )
    return cursor.rowcount == 1


async def _live_charges(
    conn: Connection, user_id: int, now: datetime, window: timedelta, excluding: str = ""
) -> list[datetime]:
    """The user's unrefunded charges inside the window (but `excluding`'s), oldest first: one entry per song."""
    async with conn.execute(
        """
        SELECT charged_at, songs FROM quota_ledger
        WHERE user_id = ? AND refunded_at IS NULL AND charged_at > ? AND job_id != ?
        ORDER BY charged_at
        """,
        (user_id, encode_time(now - window), excluding),
    ) as cursor:
        rows = await cursor.fetchall()
    return [decode_time(row[0]) for row in rows for _ in range(int(row[1]))]  # type: ignore[misc]


def _decide(
    accepted: bool, charges: list[datetime], limit: int, window: timedelta, songs: int = 1
) -> QuotaDecision:
    used = len(charges)
    next_free_at = None
    must_leave = used + songs - limit
    if limit > 0 and 0 < must_leave <= used:
        # Room for `songs` comes when that many charges have left the window: when the must_leave-th oldest does
        # (the oldest, for one song at a full quota, unless the limit was lowered meanwhile).
        next_free_at = charges[must_leave - 1] + window
    return QuotaDecision(
        accepted=accepted, used=used, limit=limit, remaining=max(0, limit - used), next_free_at=next_free_at
    )


def _check_songs(songs: int) -> None:
    if songs < 1:
        raise ValueError(f"a charge is at least one song, not {songs}")


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise ValueError(f"quota limit must be >= 0, not {limit}")
