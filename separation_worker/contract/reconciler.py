"""Redis is a cache of the queue, SQLite is the record: put back what Redis lost.

If Redis restarts empty (ours keeps nothing on disk), jobs still queued or running in SQLite
are enqueued again. Enqueueing is idempotent (the job id is arq's id), so any number of
workers may run this at once.
"""

from __future__ import annotations

import logging

from arq.connections import ArqRedis

from storage import Database, InvalidTransition, jobs
from storage.models import JobStatus

from . import queue

log = logging.getLogger(__name__)


async def reconcile(db: Database, redis: ArqRedis) -> list[str]:
    """Re-enqueue every queued/running job Redis no longer knows; returns their ids."""
    restored = []
    for job in await jobs.list_jobs(db, JobStatus.QUEUED, JobStatus.RUNNING):
        if await queue.is_known(redis, job.id):
            continue
        if job.status is JobStatus.RUNNING:
            try:
                await jobs.requeue_job(db, job.id)  # its worker's claim died with Redis
            except InvalidTransition:
                continue  # it finished meanwhile
        if await queue.enqueue(redis, job.id):
            restored.append(job.id)
    if restored:
        log.warning("re-enqueued %d job(s) that Redis had lost: %s", len(restored), ", ".join(restored))
    return restored
