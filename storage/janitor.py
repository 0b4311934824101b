"""The janitor: nothing outlives the file TTL.

A job's files are deleted `ttl` after it finished (done, failed, cancelled), or `ttl` after it was created if it
never finished (stuck, lost, uploads and partial downloads of failed attempts), and the job is marked expired.
Folders with no job row (an upload staged before its job was accepted, a crash) go once nothing in them changed
for `ttl`. Safe to run repeatedly, and from more than one process: a second sweep finds nothing left to do.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta

from storage.clock import Clock, encode_time
from storage.database import Database
from storage.files import FileStore

log = logging.getLogger(__name__)

_ID_CHUNK = 500  # stays below SQLite's limit on parameters per statement
STALE_STAGING = timedelta(hours=1)


@dataclass(frozen=True)
class SweepReport:
    expired_jobs: tuple[str, ...]  # jobs marked expired by this sweep
    deleted_job_dirs: tuple[str, ...]  # folders of expired jobs deleted
    deleted_orphans: tuple[str, ...]  # folders without a job row deleted
    failed_deletions: tuple[str, ...]  # folders that could not be deleted (retried next sweep)
    purged_link_codes: int  # link codes that expired more than ttl ago, deleted


async def sweep(db: Database, files: FileStore, ttl: timedelta, clock: Clock | None = None) -> SweepReport:
    """Expire jobs and delete files older than `ttl` (by `clock`, default the database's)."""
    now = (clock or db.clock).now()
    cutoff = encode_time(now - ttl)
    async with db.write() as conn:
        # A job that never finished failed on our side: give its charge back (reason "expired").
        await conn.execute(
            """
            UPDATE quota_ledger SET refunded_at = ?, refund_reason = 'expired'
            WHERE refunded_at IS NULL
              AND job_id IN (SELECT id FROM jobs WHERE status IN ('queued', 'running') AND created_at <= ?)
            """,
            (encode_time(now), cutoff),
        )
        async with conn.execute(
            """
            UPDATE jobs SET status = 'expired', expired_at = ?
            WHERE status != 'expired' AND COALESCE(finished_at, created_at) <= ?
            RETURNING id
            """,
            (encode_time(now), cutoff),
        ) as cursor:
            expired = tuple(sorted(row[0] for row in await cursor.fetchall()))
        cursor = await conn.execute("DELETE FROM link_codes WHERE expires_at <= ?", (cutoff,))
        purged_codes = cursor.rowcount

    # An upload is staged for seconds; one an hour old was left by a front end that died mid-upload.
    await asyncio.to_thread(files.sweep_staging, now - STALE_STAGING)
    folders = await asyncio.to_thread(files.list_job_dirs)
    statuses = await _statuses(db, [folder.job_id for folder in folders])
    deleted: list[str] = []
    orphans: list[str] = []
    failed: list[str] = []
    for folder in folders:
        status = statuses.get(folder.job_id)
        if status == "expired":
            target = deleted
        elif status is None and encode_time(folder.modified_at) <= cutoff:
            target = orphans
        else:
            continue
        try:
            await asyncio.to_thread(files.delete_job_files, folder.job_id)
        except OSError as error:
            log.warning("could not delete %s: %s", folder.path, error)
            failed.append(folder.job_id)
            continue
        target.append(folder.job_id)
    if expired or deleted or orphans or failed:
        log.info(
            "janitor: %d jobs expired, %d job folders and %d orphan folders deleted, %d failed",
            len(expired), len(deleted), len(orphans), len(failed),
        )
    return SweepReport(expired, tuple(deleted), tuple(orphans), tuple(failed), purged_codes)


async def _statuses(db: Database, job_ids: list[str]) -> dict[str, str]:
    """The status of each of these jobs that has a row."""
    found: dict[str, str] = {}
    async with db.read() as conn:
        for start in range(0, len(job_ids), _ID_CHUNK):
            chunk = job_ids[start : start + _ID_CHUNK]
            async with conn.execute(
                f"SELECT id, status FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})", chunk
            ) as cursor:
                found.update({row[0]: row[1] for row in await cursor.fetchall()})
    return found
