"""The job queue: arq on Redis. StemBot's job id is the arq job id, so a job is never enqueued twice."""

from __future__ import annotations

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.asyncio import Redis

QUEUE_NAME = "stembot:queue"
JOB_FUNCTION = "separate_job"


async def connect(redis_url: str) -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=QUEUE_NAME)


async def enqueue(redis: ArqRedis, job_id: str) -> bool:
    """Queue the job; False if arq already holds it (queued, running, or its result is kept)."""
    job = await redis.enqueue_job(JOB_FUNCTION, job_id, _job_id=job_id, _queue_name=QUEUE_NAME)
    return job is not None


async def is_known(redis: ArqRedis, job_id: str) -> bool:
    """Whether Redis still knows the job (it may have restarted empty: then SQLite re-enqueues it)."""
    return bool(await redis.exists(job_key_prefix + job_id)) or await redis.zscore(QUEUE_NAME, job_id) is not None


async def waiting_ids(redis: Redis) -> list[str]:
    """Jobs waiting for a worker, oldest first (running jobs stay in arq's queue: leave them out)."""
    ids = [i.decode() if isinstance(i, bytes) else i for i in await redis.zrange(QUEUE_NAME, 0, -1)]
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(in_progress_key_prefix + job_id)
        running = await pipe.execute()
    return [job_id for job_id, busy in zip(ids, running) if not busy]


async def position(redis: ArqRedis, job_id: str) -> int | None:
    """1 = next to start; None when the job is not waiting (running, finished or unknown)."""
    waiting = await waiting_ids(redis)
    return waiting.index(job_id) + 1 if job_id in waiting else None


async def remove(redis: ArqRedis, job_id: str) -> bool:
    """Take a waiting job off the queue (cancel). False if a worker already started it."""
    if await redis.exists(in_progress_key_prefix + job_id):
        return False
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(QUEUE_NAME, job_id)
        pipe.delete(job_key_prefix + job_id)
        removed, _ = await pipe.execute()
    return bool(removed)
