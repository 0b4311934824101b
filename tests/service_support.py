"""Helpers for the job-service tests: an isolated Redis database, settings, in-process workers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass
from enum import IntEnum

import redis.asyncio as aioredis
from arq.worker import Worker

from separation_worker.worker import worker_settings
from tests.support.backends import backend_env

REDIS_BASE = "redis://127.0.0.1:6379"


class RedisDb(IntEnum):
    """The Redis database of each suite: the one place they are handed out, so that no two suites (which may run
    at the same time, e.g. several sessions on one machine) flush each other's data. Db 0 stays for real use."""

    SERVICE = 11  # test_service, test_worker_faults and anything using the default
    OBSERVABILITY = 12
    DISCORD = 13
    TELEGRAM = 14
    CATALOGUE = 15
    FETCH_LIMITS = 10
    STARTUP = 9
    DELIVERY_TELEGRAM = 8
    DELIVERY_DISCORD = 7
    OPERATIONS = 6  # test_operations: stembot check, health, per-GPU workers


TEST_REDIS_DB = RedisDb.SERVICE


def service_env(data_dir, model_dir, redis_db: int = TEST_REDIS_DB, **extra) -> dict[str, str]:
    env = {
        "REDIS_URL": f"{REDIS_BASE}/{int(redis_db)}",
        "STEMBOT_DATA_DIR": str(data_dir),
        "STEMBOT_MODEL_DIR": str(model_dir),
        "STEMBOT_DEVICE": "cpu",
        "STEMBOT_PUBLIC_URL": "http://files.test",
        "STEMBOT_SECRET_KEY": "test-secret-key-0123456789",
        "STEMBOT_ALLOW_PRIVATE_URLS": "true",
        "STEMBOT_HEARTBEAT_S": "0.5",
        **backend_env(),  # the run's PostgreSQL database and bucket, when it names them
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


async def flush_test_redis(redis_db: int = TEST_REDIS_DB) -> None:
    client = aioredis.from_url(f"{REDIS_BASE}/{int(redis_db)}")
    await client.flushdb()
    await client.aclose()


@dataclass
class RunningWorker:
    worker: Worker
    task: asyncio.Task

    async def stop(self) -> None:
        for _ in range(100):  # let a job that just reported "done" return first
            if not any(not t.done() for t in self.worker.tasks.values()):
                break
            await asyncio.sleep(0.05)
        with contextlib.suppress(asyncio.CancelledError):
            await self.worker.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


async def start_worker(settings, engine) -> RunningWorker:
    """An arq worker in this event loop, with the already-loaded tiny engine."""
    spec = worker_settings(settings, engine)
    options = {k: v for k, v in vars(spec).items() if not k.startswith("_")}
    options.update(handle_signals=False, poll_delay=0.1)
    worker = Worker(**options)
    return RunningWorker(worker, asyncio.create_task(worker.main()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_private_redis(port: int) -> subprocess.Popen:
    """A redis-server of the test's own (to stop and start empty), listening on 127.0.0.1:port."""
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")
