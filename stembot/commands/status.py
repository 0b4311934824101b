"""`stembot status`: the queue, the workers and recent failures, at a glance."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import timedelta


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("status", help="show the queue, workers and recent failures")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    print(asyncio.run(_report(settings)))
    return 0


async def _report(settings) -> str:
    from separation_worker.contract import metrics, queue
    from storage import Database, JobStatus, list_jobs

    redis = await queue.connect(settings.redis_url)
    db = await Database.for_settings(settings)
    try:
        waiting = len(await queue.waiting_ids(redis))
        running = await list_jobs(db, JobStatus.RUNNING)
        health = await redis.get(f"{queue.QUEUE_NAME}:health-check")
        values = await metrics.snapshot(redis)
        since = db.clock.now() - timedelta(hours=24)
        finished = [j for j in await list_jobs(db, JobStatus.DONE, JobStatus.FAILED) if j.finished_at and j.finished_at > since]
    finally:
        await redis.aclose()
        await db.close()
    done = sum(1 for j in finished if j.status is JobStatus.DONE)
    failures = [j for j in finished if j.status is JobStatus.FAILED][-5:]
    lines = [
        f"Queue: {waiting} waiting, {len(running)} running",
        f"Workers: {health.decode() if health else 'no recent heartbeat'}",
        f"Last 24 h: done {done}, failed {len(finished) - done}",
        f"Since start of metrics: {json.dumps({k: round(v, 2) for k, v in sorted(values.items()) if k.startswith(('jobs:', 'refusals:'))})}",
    ]
    if failures:
        lines.append("Recent failures:")
        lines += [f"  {j.id} {j.finished_at:%Y-%m-%d %H:%M} {j.error}" for j in failures]
    return "\n".join(lines)
