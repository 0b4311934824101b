"""Fault drill: a burst of 200 submissions from 50 users, drained by two workers.

Checks that every accepted job completes exactly once, per-user quotas are exact (Free 1,
Pro capped by songs in flight), and nothing is duplicated or lost. Uses a real Redis
(db 10, flushed), real SQLite and tiny random-weight models on the CPU.

    .venv/bin/python bench/burst_drill.py [--users 50] [--per-user 4]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis.asyncio as aioredis  # noqa: E402

from bot.requests import JobHandle, Refusal, UploadSource, UserIdentity  # noqa: E402
from bot.service import SeparationService  # noqa: E402
from separation_worker.engine import SeparationEngine  # noqa: E402
from separation_worker.inference.device import run_config  # noqa: E402
from separation_worker.models.zoo import DEFAULT_ENSEMBLE  # noqa: E402
from stembot.settings import Settings  # noqa: E402
from storage import JobStatus, list_jobs  # noqa: E402
from tests.conftest import music, write_audio  # noqa: E402
from tests.service_support import start_worker  # noqa: E402
from tests.support.model_factory import write_ensemble  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/10"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--per-user", type=int, default=4)
    parser.add_argument("--pro-every", type=int, default=5, help="every Nth user holds the Pro role")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="stembot-burst-"))
    client = aioredis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()
    models = write_ensemble(tmp / "models")
    settings = Settings.from_env({
        "REDIS_URL": REDIS_URL, "STEMBOT_DATA_DIR": str(tmp / "data"), "STEMBOT_MODEL_DIR": str(models),
        "STEMBOT_PUBLIC_URL": "http://localhost", "STEMBOT_SECRET_KEY": "drill-secret-key-0123456789",
        "STEMBOT_DEVICE": "cpu", "STEMBOT_MAX_QUEUE": "1000", "STEMBOT_HEARTBEAT_S": "1",
    })
    song = write_audio(tmp / "song.mp3", music(1.0, level=0.4)).read_bytes()
    users = [UserIdentity("telegram" if i % 2 else "discord", str(i), holds_pro_role=(i % args.pro_every == 0) or None)
             for i in range(args.users)]

    service = await SeparationService.start(settings)
    started = time.perf_counter()
    submissions = [(u, service.submit(u, UploadSource("song.mp3", data=song))) for u in users for _ in range(args.per_user)]
    outcomes = await asyncio.gather(*(s for _, s in submissions))
    print(f"did: {len(outcomes)} submissions from {len(users)} users at once "
          f"({time.perf_counter() - started:.1f} s to answer them all)")
    accepted: dict[str, list[str]] = collections.defaultdict(list)
    refusals = collections.Counter()
    for (user, _), outcome in zip(submissions, outcomes):
        if isinstance(outcome, JobHandle):
            accepted[user.user_id].append(outcome.job_id)
        else:
            assert isinstance(outcome, Refusal)
            refusals[outcome.code] += 1
    jobs = [j for ids in accepted.values() for j in ids]
    print(f"did: accepted {len(jobs)}, refused {dict(refusals)}")

    engines = [SeparationEngine(DEFAULT_ENSEMBLE, models, run_config("cpu")) for _ in range(2)]
    for engine in engines:
        engine.load(allow_download=False)
    workers = [await start_worker(settings, engine) for engine in engines]
    try:
        while await list_jobs(service.db, JobStatus.QUEUED, JobStatus.RUNNING):
            await asyncio.sleep(0.5)
    finally:
        for worker in workers:
            await worker.stop()
    print(f"did: drained the queue with 2 workers in {time.perf_counter() - started:.0f} s")

    problems = []
    for user in users:
        ids = accepted[user.user_id]
        expected = min(args.per_user, settings.max_waiting_pro) if user.holds_pro_role else 1
        if len(ids) != expected:
            problems.append(f"user {user.user_id}: {len(ids)} accepted, expected {expected}")
        quota = await service.quota(user)
        if quota.used != len(ids):
            problems.append(f"user {user.user_id}: quota used {quota.used} for {len(ids)} jobs")
    statuses = collections.Counter()
    for job_id in jobs:
        job = await service.job(job_id)
        statuses[job.status.value] += 1
        if job.attempts != 1:
            problems.append(f"job {job_id}: {job.attempts} attempts")
    if len(set(jobs)) != len(jobs):
        problems.append("duplicate job ids")
    await service.close()
    print(f"checked: job outcomes {dict(statuses)}; one attempt each; per-user acceptances and quota charges exact; "
          f"no duplicate ids")
    if problems or statuses.get("done", 0) != len(jobs):
        print("PROBLEMS:\n  " + "\n  ".join(problems or ["not every accepted job is done"]))
        return 1
    print("nothing lost, nothing run twice")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
