"""Jobs: creation (with the quota charge), the status state machine, results and delivery bookkeeping.

    queued ──> running ──> done
      │  ^        │
      │  └────────┤ (retry)
      ├──> cancelled      running ──> failed
      └──> failed
    any status but expired ──> expired   (the janitor, once the files are gone)

Every transition is a read-check-write in one BEGIN IMMEDIATE transaction, so two processes racing (a worker
starting the job while the user cancels it) can't both win: the loser gets InvalidTransition.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from storage import quota
from storage.clock import encode_time
from storage.database import Database
from storage.errors import ConstraintViolation, DuplicateJob, InvalidTransition, NotFound
from storage.models import (
    FINISHED_STATUSES,
    Acceptance,
    Job,
    JobStatus,
    SpecChange,
    validate_job_id,
)
from storage.sql import Connection

S = JobStatus
# The statuses each status may be entered from.
_ENTERED_FROM: dict[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.RUNNING}),  # a retry: the attempt was interrupted (worker lost, transient error)
    S.RUNNING: frozenset({S.QUEUED}),
    S.DONE: frozenset({S.RUNNING}),
    S.FAILED: frozenset({S.QUEUED, S.RUNNING}),  # from queued: e.g. the queue refused it, or it was lost
    S.CANCELLED: frozenset({S.QUEUED}),  # a running job is not cancellable: the GPU work is already under way
    S.EXPIRED: frozenset({S.QUEUED, S.RUNNING, S.DONE, S.FAILED, S.CANCELLED}),
}
# A job is "delivered" when its final message went out; only possible once it stopped.
_DELIVERABLE = FINISHED_STATUSES | {S.EXPIRED}


async def create_job(
    db: Database, job_id: str, user_id: int, source: str, *, delivery: Any = None, spec: str | None = None
) -> Job:
    """Create a queued job without charging quota. Raises DuplicateJob, or NotFound for an unknown user."""
    async with db.write() as conn:
        return await _insert_job(conn, job_id, user_id, source, delivery, db.clock.now(), spec)


async def accept_job(
    db: Database,
    user_id: int,
    job_id: str,
    source: str,
    limit: int,
    *,
    delivery: Any = None,
    spec: str | None = None,
    window: timedelta = quota.DEFAULT_WINDOW,
    max_in_flight: int | None = None,
    songs: int = 1,
) -> Acceptance:
    """Charge the user's quota and create the queued job, in one transaction.

    A refusal creates nothing (`job` is None); an acceptance always has its job row and its charge.
    With `max_in_flight`, a user who already has that many jobs queued or running is refused too (`busy`),
    checked in the same transaction so concurrent submissions can't slip past it.
    `delivery` is any JSON-serializable value the front end needs to answer later (chat id, message id, ...);
    `spec` is the worker's job specification as JSON text (stored as given: storage does not read it).
    `songs`: what the job costs against the quota (a heavy mode may cost more than one).
    """
    validate_job_id(job_id)
    now = db.clock.now()
    async with db.write() as conn:
        if max_in_flight is not None:
            async with conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE user_id = ? AND status IN ('queued', 'running')", (user_id,)
            ) as cursor:
                row = await cursor.fetchone()
            in_flight = row[0] if row else 0
            if in_flight >= max_in_flight:
                status = await quota.status_in(conn, user_id, limit, now, window, songs)
                return Acceptance(decision=status, job=None, busy=True)
        decision = await quota.charge_in(conn, user_id, job_id, limit, now, window, songs)
        if not decision.accepted:
            return Acceptance(decision=decision, job=None)
        job = await _insert_job(conn, job_id, user_id, source, delivery, now, spec)
    return Acceptance(decision=decision, job=job)


async def change_queued_spec(
    db: Database,
    job_id: str,
    user_id: int,
    spec: str,
    limit: int,
    songs: int = 1,
    window: timedelta = quota.DEFAULT_WINDOW,
) -> SpecChange:
    """Replace the spec of the user's job while it still waits (a worker reads it when it starts the job), and
    make its charge `songs` songs, in one transaction: refused, nothing changes (over the quota, or too late)."""
    async with db.write() as conn:
        job = await fetch_job(conn, job_id)
        if job is None or job.user_id != user_id:
            return SpecChange(changed=False, job=None)
        if job.status is not S.QUEUED:
            return SpecChange(changed=False, job=job)
        decision = await quota.recharge_in(conn, user_id, job_id, limit, db.clock.now(), window, songs)
        if not decision.accepted:
            return SpecChange(changed=False, job=job, decision=decision)
        await conn.execute("UPDATE jobs SET spec = ? WHERE id = ?", (spec, job_id))
        job = await fetch_job(conn, job_id)
    return SpecChange(changed=True, job=job, decision=decision)


async def get_job(db: Database, job_id: str) -> Job | None:
    async with db.read() as conn:
        return await fetch_job(conn, job_id)


async def start_job(db: Database, job_id: str) -> Job:
    """queued → running: a worker begins an attempt (counts it in `attempts`, sets `started_at`)."""
    return await transition(db, job_id, S.RUNNING)


async def finish_job(db: Database, job_id: str, result: Any) -> Job:
    """running → done, storing `result` (any JSON-serializable value) in the same transaction."""
    return await transition(db, job_id, S.DONE, result=result)


async def fail_job(db: Database, job_id: str, error: str, *, refund: bool) -> Job:
    """queued/running → failed with a user-facing `error`; `refund=True` when it was not the user's fault."""
    return await transition(db, job_id, S.FAILED, error=error, refund_reason="failed" if refund else None)


async def cancel_job(db: Database, job_id: str) -> Job:
    """queued → cancelled, refunding the charge. Raises InvalidTransition if a worker already started it."""
    return await transition(db, job_id, S.CANCELLED, refund_reason="cancelled")


async def requeue_job(db: Database, job_id: str) -> Job:
    """running → queued, for a retry (the attempt count is kept)."""
    return await transition(db, job_id, S.QUEUED)


async def transition(
    db: Database,
    job_id: str,
    to: JobStatus | str,
    *,
    error: str | None = None,
    result: Any = None,
    refund_reason: str | None = None,
) -> Job:
    """Move a job to status `to` if the state machine allows it (else InvalidTransition; NotFound if unknown).

    `error` and `result` are stored with the change; a `refund_reason` also refunds the job's quota charge.
    Returns the job as it is after the change.
    """
    async with db.write() as conn:
        return await transition_in(
            conn, job_id, JobStatus(to), db.clock.now(), error=error, result=result, refund_reason=refund_reason
        )


async def transition_in(
    conn: Connection,
    job_id: str,
    to: JobStatus,
    now: datetime,
    *,
    error: str | None = None,
    result: Any = None,
    refund_reason: str | None = None,
) -> Job:
    """Within an open write transaction: `transition`."""
    job = await require_job(conn, job_id)
    if job.status not in _ENTERED_FROM[to]:
        raise InvalidTransition(job_id, job.status.value, to.value)
    changed = dataclasses.replace(
        job,
        status=to,
        started_at=now if to is S.RUNNING else job.started_at,
        attempts=job.attempts + 1 if to is S.RUNNING else job.attempts,
        finished_at=now if to in FINISHED_STATUSES else job.finished_at,
        expired_at=now if to is S.EXPIRED else job.expired_at,
        error=error if error is not None else job.error,
        result_json=_to_json(result) if result is not None else job.result_json,
    )
    await conn.execute(
        """
        UPDATE jobs SET status = ?, started_at = ?, attempts = ?, finished_at = ?, expired_at = ?, error = ?,
                        result = ?
        WHERE id = ? AND status = ?
        """,
        (
            changed.status.value,
            _time_or_none(changed.started_at),
            changed.attempts,
            _time_or_none(changed.finished_at),
            _time_or_none(changed.expired_at),
            changed.error,
            changed.result_json,
            job_id,
            job.status.value,
        ),
    )
    if refund_reason is not None:
        await quota.refund_in(conn, job_id, refund_reason, now)
    return changed


async def store_result(db: Database, job_id: str, result: Any) -> None:
    """Store (or replace) the job's result, any JSON-serializable value, without changing its status."""
    await _set_column(db, job_id, "result", _to_json(result))


async def set_delivery(db: Database, job_id: str, delivery: Any) -> None:
    """Replace the job's delivery info (e.g. once the "queued" message exists and has an id)."""
    await _set_column(db, job_id, "delivery", _to_json(delivery))


async def mark_delivered(db: Database, job_id: str) -> bool:
    """Record that the job's final message went out. True only for the one call that recorded it.

    Deliverers call this *before* sending (or claim-then-send), so a job is delivered once even when the
    reconciler and the normal path race. Raises InvalidTransition while the job is still queued or running.
    """
    async with db.write() as conn:
        job = await require_job(conn, job_id)
        if job.status not in _DELIVERABLE:
            raise InvalidTransition(job_id, job.status.value, "delivered")
        cursor = await conn.execute(
            "UPDATE jobs SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL",
            (encode_time(db.clock.now()), job_id),
        )
        return cursor.rowcount == 1


async def list_jobs(db: Database, *statuses: JobStatus | str, limit: int | None = None) -> list[Job]:
    """Jobs in any of `statuses`, oldest first (for the reconciler: queued and running)."""
    if not statuses:
        return []
    values = [JobStatus(status).value for status in statuses]
    sql = f"SELECT * FROM jobs WHERE status IN ({', '.join('?' * len(values))}) ORDER BY created_at, id"
    return await _select_jobs(db, sql + _limit_clause(limit), values)


async def list_undelivered(db: Database, limit: int | None = None) -> list[Job]:
    """Done or failed jobs whose final message was not delivered yet, oldest finish first."""
    sql = """
        SELECT * FROM jobs WHERE status IN ('done', 'failed') AND delivered_at IS NULL
        ORDER BY finished_at, id
    """
    return await _select_jobs(db, sql + _limit_clause(limit), [])


async def get_queued_job(db: Database, user_id: int) -> Job | None:
    """The user's oldest queued job (what /cancel cancels), or None."""
    jobs = await _select_jobs(
        db, "SELECT * FROM jobs WHERE user_id = ? AND status = 'queued' ORDER BY created_at, id LIMIT 1", [user_id]
    )
    return jobs[0] if jobs else None


async def list_user_jobs(db: Database, user_id: int, limit: int = 20) -> list[Job]:
    """The user's most recent jobs, newest first."""
    return await _select_jobs(
        db, "SELECT * FROM jobs WHERE user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?", [user_id, limit]
    )


async def fetch_job(conn: Connection, job_id: str) -> Job | None:
    """Within an open transaction: the job, or None."""
    async with conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cursor:
        row = await cursor.fetchone()
    return None if row is None else Job.from_row(row)


async def require_job(conn: Connection, job_id: str) -> Job:
    """Within an open transaction: the job, or NotFound."""
    job = await fetch_job(conn, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


async def _insert_job(
    conn: Connection,
    job_id: str,
    user_id: int,
    source: str,
    delivery: Any,
    now: datetime,
    spec: str | None = None,
) -> Job:
    validate_job_id(job_id)
    try:
        async with conn.execute(
            "INSERT INTO jobs (id, user_id, source, status, created_at, delivery, spec)"
            " VALUES (?, ?, ?, 'queued', ?, ?, ?) RETURNING *",
            (job_id, user_id, source, encode_time(now), None if delivery is None else _to_json(delivery), spec),
        ) as cursor:
            row = await cursor.fetchone()
    except ConstraintViolation as error:
        if error.foreign_key:
            raise NotFound(f"no user with id {user_id}") from None
        raise DuplicateJob(f"job {job_id} already exists") from None
    assert row is not None
    return Job.from_row(row)


async def _set_column(db: Database, job_id: str, column: str, value: str) -> None:
    async with db.write() as conn:
        cursor = await conn.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (value, job_id))
        if cursor.rowcount != 1:
            raise NotFound(f"no job with id {job_id}")


async def _select_jobs(db: Database, sql: str, params: Iterable[object]) -> list[Job]:
    async with db.read() as conn, conn.execute(sql, tuple(params)) as cursor:
        rows = await cursor.fetchall()
    return [Job.from_row(row) for row in rows]


def _limit_clause(limit: int | None) -> str:
    return "" if limit is None else f" LIMIT {int(limit)}"


def _to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _time_or_none(when: datetime | None) -> str | None:
    return None if when is None else encode_time(when)
