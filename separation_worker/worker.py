"""The arq worker: models loaded once in on_startup and kept warm; jobs drained from Redis.

Run one per GPU (`stembot worker`); any number on any machines can share one Redis. A worker
killed mid-job (SIGKILL, OOM, machine loss) stops refreshing its claims on its jobs, so another
worker takes each over within a few heartbeats.

A worker runs `jobs_per_worker` jobs at once (arq's max_jobs), each with its own claim heartbeat:
they take turns on the device (the engine's FIFO lock around `separate`), so the GPU separates one
song while the others download, decode, normalize, analyze and encode. Memory is bounded by that
number: each job holds at most its own song (decoded audio, stems) in RAM, and only the job holding
the device uses device memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from arq import Retry as ArqRetry
from arq import func
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix

from storage import Database, FileStore, sweep

from .contract import queue
from .contract.heartbeat import Heartbeat
from .contract.reconciler import reconcile
from .engine import SeparationEngine
from .job_runner import JobRunner, Retry

log = logging.getLogger(__name__)

RECONCILE_EVERY_S = 30.0
SWEEP_EVERY_S = 300.0
RETRY_DELAY_S = 5.0


async def separate_job(ctx: dict[str, Any], job_id: str) -> str:
    runner: JobRunner = ctx["runner"]
    heartbeat = asyncio.create_task(_keep_claim(ctx, job_id))
    try:
        return await runner.run(job_id, attempt=ctx["job_try"])
    except Retry:
        raise ArqRetry(defer=RETRY_DELAY_S) from None
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat


async def _keep_claim(ctx: dict[str, Any], job_id: str) -> None:
    """Shorten arq's claim on the job to 3 heartbeats and keep renewing it while we live."""
    settings = ctx["settings"]
    ttl_ms = int(3 * settings.heartbeat_s * 1000)
    while True:
        await ctx["redis"].pexpire(in_progress_key_prefix + job_id, ttl_ms)
        await asyncio.sleep(settings.heartbeat_s)


async def startup(ctx: dict[str, Any]) -> None:
    settings = ctx["settings"]
    engine: SeparationEngine = ctx.get("engine") or SeparationEngine.from_settings(settings)
    await asyncio.to_thread(engine.load)  # minutes on first use (downloads, compilation): before any job
    db = await Database.for_settings(settings)
    files = FileStore.for_settings(settings)
    await asyncio.to_thread(files.prepare)  # the bucket, on a fresh object store
    ctx.update(engine=engine, db=db, files=files)
    ctx["runner"] = JobRunner(settings, engine, db, files, ctx["redis"])
    ctx["maintenance"] = asyncio.create_task(_maintenance(ctx))
    # Beats only from here on: a worker still loading (or compiling) its models is not yet healthy.
    maintenance = ctx["maintenance"]
    ctx["heartbeat"] = Heartbeat(settings.health_dir, "worker", healthy=lambda: not maintenance.done(),
                                 detail=str(engine.run.device))
    ctx["heartbeat"].start()
    log.info("worker ready on %s (%s)", engine.run.device, engine.run.precision)


async def shutdown(ctx: dict[str, Any]) -> None:
    if ctx.get("heartbeat"):
        await ctx["heartbeat"].stop()
    task = ctx.get("maintenance")
    if task:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if ctx.get("db"):
        await ctx["db"].close()


async def _maintenance(ctx: dict[str, Any]) -> None:
    """Every worker reconciles the queue with the database and sweeps expired files (both idempotent)."""
    settings = ctx["settings"]
    since_sweep = SWEEP_EVERY_S
    while True:
        try:
            await reconcile(ctx["db"], ctx["redis"])
            if since_sweep >= SWEEP_EVERY_S:
                await sweep(ctx["db"], ctx["files"], timedelta(hours=settings.file_ttl_hours))
                since_sweep = 0.0
        except Exception:  # a Redis blip must not end maintenance for good
            log.exception("maintenance pass failed")
        await asyncio.sleep(RECONCILE_EVERY_S)
        since_sweep += RECONCILE_EVERY_S


def worker_settings(settings, engine: SeparationEngine | None = None) -> type:
    """arq WorkerSettings for these settings (the engine may be passed in already loaded)."""
    longest_job = settings.job_timeout_base_s + settings.job_timeout_factor * settings.max_duration_seconds
    # arq's own limit is a backstop; the runner enforces a limit scaled to the song's length, not counting
    # the time queued for the device behind this worker's other jobs (first come first served: at most
    # jobs_per_worker - 1 of them, each within its own limit).
    backstop = longest_job * settings.jobs_per_worker + 600

    class WorkerSettings:
        functions = [
            func(separate_job, name=queue.JOB_FUNCTION, timeout=backstop, max_tries=settings.max_attempts + 1),
        ]
        on_startup = startup
        on_shutdown = shutdown
        redis_settings = RedisSettings.from_dsn(settings.redis_url)
        queue_name = queue.QUEUE_NAME
        max_jobs = settings.jobs_per_worker
        keep_result = 0  # the database holds results
        poll_delay = 0.5
        ctx = {"settings": settings, "engine": engine}

    return WorkerSettings


def __getattr__(name: str) -> type:
    """`separation_worker.worker.WorkerSettings`, built from the environment when first asked for,
    so `arq separation_worker.worker.WorkerSettings` works as well as `stembot worker`."""
    if name == "WorkerSettings":
        from stembot.settings import Settings

        return worker_settings(Settings.from_env())
    raise AttributeError(name)
