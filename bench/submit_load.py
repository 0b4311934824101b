"""Submission-to-ack latency of the job service: one submission alone vs 100 at once.

Real Redis (REDIS_URL, default db 12 here, flushed), real SQLite in a temp dir, no worker:
it measures what a user waits for between sending a song and "In the queue: #n".

    .venv/bin/python bench/submit_load.py [--concurrency 100] [--kind link|upload]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis.asyncio as aioredis  # noqa: E402

from bot.requests import JobHandle, LinkSource, UploadSource, UserIdentity  # noqa: E402
from bot.service import SeparationService  # noqa: E402
from stembot.settings import Settings  # noqa: E402


def sample_mp3(path: Path) -> bytes:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=440:duration=30", str(path)], check=True)
    return path.read_bytes()


async def run_round(service: SeparationService, n: int, kind: str, data: bytes, offset: int) -> list[float]:
    async def one(i: int) -> float:
        who = UserIdentity("telegram", str(offset + i))
        source = LinkSource(f"https://example.com/song-{i}.mp3") if kind == "link" else UploadSource("song.mp3", data=data)
        started = time.perf_counter()
        outcome = await service.submit(who, source)
        elapsed = time.perf_counter() - started
        assert isinstance(outcome, JobHandle), outcome
        return elapsed

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def describe(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"p50 {statistics.median(ordered) * 1000:7.1f} ms · p95 {p95 * 1000:7.1f} ms · max {ordered[-1] * 1000:7.1f} ms"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--kind", choices=("link", "upload"), default="link")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="stembot-load-"))
    client = aioredis.from_url(args.redis_url)
    await client.flushdb()
    await client.aclose()
    settings = Settings.from_env({
        "REDIS_URL": args.redis_url, "STEMBOT_DATA_DIR": str(tmp / "data"), "STEMBOT_PUBLIC_URL": "http://localhost",
        "STEMBOT_SECRET_KEY": "bench-secret-key-0123456789", "STEMBOT_ALLOW_PRIVATE_URLS": "true",
        "STEMBOT_MAX_QUEUE": str(args.concurrency * 10),
    })
    data = sample_mp3(tmp / "song.mp3") if args.kind == "upload" else b""
    service = await SeparationService.start(settings)
    try:
        alone = [t for i in range(10) for t in await run_round(service, 1, args.kind, data, 10_000 + i)]
        crowd = await run_round(service, args.concurrency, args.kind, data, 0)
    finally:
        await service.close()
    print(f"submission-to-ack latency ({args.kind} submissions, real Redis + SQLite, no worker)")
    print(f"  1 at a time      : {describe(alone)}")
    print(f"  {args.concurrency} at once     : {describe(crowd)}")
    print(f"  median ratio     : {statistics.median(crowd) / statistics.median(alone):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
