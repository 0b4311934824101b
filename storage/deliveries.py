"""Delivery bookkeeping: who is delivering a result (a lease), and which of its pieces already went.

A result is delivered piece by piece (each stem, then the summary; or one failure notice). Each piece is
recorded once sent, so whoever delivers next (a restarted bot, another process) resumes after it. Only the
holder of a job's lease sends: a claim succeeds when nobody holds a live lease, a graceful stop releases it,
and a crashed holder's lease simply lapses. The job counts as delivered (`jobs.delivered_at`) only once every
piece went (`complete`).
"""

from __future__ import annotations

import enum
from datetime import timedelta

from storage.clock import encode_time
from storage.database import Database
from storage.errors import InvalidTransition
from storage.jobs import _select_jobs, require_job
from storage.models import FINISHED_STATUSES, Job, JobStatus


class PieceOutcome(str, enum.Enum):
    SENT = "sent"  # the platform accepted it
    LINKED = "linked"  # a stem that could not be uploaded: the summary links it instead


_DELIVERABLE = FINISHED_STATUSES | {JobStatus.EXPIRED}


async def claim_delivery(db: Database, job_id: str, owner: str, lease: timedelta) -> bool:
    """Take the job's delivery for `lease`. True for one claimant only: False while another holder's lease is
    live (or this owner already holds it), and once the job is delivered."""
    now = db.clock.now()
    async with db.write() as conn:
        job = await require_job(conn, job_id)
        if job.status not in _DELIVERABLE:
            raise InvalidTransition(job_id, job.status.value, "delivering")
        if job.delivered_at is not None:
            return False
        cursor = await conn.execute(
            """
            INSERT INTO delivery_leases (job_id, owner, expires_at) VALUES (?, ?, ?)
            ON CONFLICT (job_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
            WHERE delivery_leases.expires_at <= ?
            """,
            (job_id, owner, encode_time(now + lease), encode_time(now)),
        )
        return cursor.rowcount == 1


async def renew_delivery(db: Database, job_id: str, owner: str, lease: timedelta) -> bool:
    """Extend `owner`'s lease; False if it is no longer theirs (it lapsed and someone else took it)."""
    now = db.clock.now()
    async with db.write() as conn:
        cursor = await conn.execute(
            "UPDATE delivery_leases SET expires_at = ? WHERE job_id = ? AND owner = ?",
            (encode_time(now + lease), job_id, owner),
        )
        return cursor.rowcount == 1


async def release_delivery(db: Database, job_id: str, owner: str) -> None:
    """Give the lease up (a graceful stop, or a delivery left for later): the next claimant may start at once."""
    async with db.write() as conn:
        await conn.execute("DELETE FROM delivery_leases WHERE job_id = ? AND owner = ?", (job_id, owner))


async def record_piece(db: Database, job_id: str, piece: str, outcome: PieceOutcome) -> None:
    """Record that `piece` went (or was given up for a link). The first record of a piece stays."""
    async with db.write() as conn:
        await conn.execute(
            "INSERT INTO delivery_pieces (job_id, piece, outcome, sent_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (job_id, piece, PieceOutcome(outcome).value, encode_time(db.clock.now())),
        )


async def recorded_pieces(db: Database, job_id: str) -> dict[str, PieceOutcome]:
    """The pieces of the job's result already delivered, by name."""
    async with db.read() as conn, conn.execute(
        "SELECT piece, outcome FROM delivery_pieces WHERE job_id = ? ORDER BY sent_at, piece", (job_id,)
    ) as cursor:
        rows = await cursor.fetchall()
    return {row["piece"]: PieceOutcome(row["outcome"]) for row in rows}


async def complete_delivery(db: Database, job_id: str, owner: str) -> bool:
    """Every piece went: mark the job delivered and drop the lease. True if this call marked it."""
    async with db.write() as conn:
        cursor = await conn.execute(
            "UPDATE jobs SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL",
            (encode_time(db.clock.now()), job_id),
        )
        await conn.execute("DELETE FROM delivery_leases WHERE job_id = ? AND owner = ?", (job_id, owner))
        return cursor.rowcount == 1


async def list_claimable(db: Database, limit: int | None = None) -> list[Job]:
    """Done or failed jobs not delivered yet that nobody is delivering now (no lease, or a lapsed one)."""
    sql = """
        SELECT jobs.* FROM jobs LEFT JOIN delivery_leases AS lease ON lease.job_id = jobs.id
        WHERE jobs.status IN ('done', 'failed') AND jobs.delivered_at IS NULL
          AND (lease.job_id IS NULL OR lease.expires_at <= ?)
        ORDER BY jobs.finished_at, jobs.id
    """
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return await _select_jobs(db, sql, [encode_time(db.clock.now())])
