"""Job progress over Redis: the worker publishes, any number of watchers (bots) follow.

Each event is published on a per-job channel and also kept as the job's last state, so a
watcher that subscribes late (or after a restart) starts from where the job is now.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from enum import Enum

from redis.asyncio import Redis


class JobState(str, Enum):
    """Where a job is, as watchers are told (a str: it travels as its value in JSON)."""

    QUEUED = "queued"
    DOWNLOADING = "downloading"
    SEPARATING = "separating"
    ANALYZING = "analyzing"
    ENCODING = "encoding"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    UPLOADING = "uploading"  # never published by a worker: front ends show it while they send the stems


TERMINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED})
STATES = tuple(state for state in JobState if state is not JobState.UPLOADING)
LAST_STATE_TTL_S = 3 * 24 * 3600

# Pipeline stage -> what the user is told.
STAGE_TO_STATE = {
    "fetch": JobState.DOWNLOADING,
    "decode": JobState.DOWNLOADING,
    "separate": JobState.SEPARATING,
    "loudness": JobState.ANALYZING,
    "analyze": JobState.ANALYZING,
    "encode": JobState.ENCODING,
}


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    state: str  # a JobState value
    fraction: float = 0.0  # within the state, 0..1 (e.g. separating 45 %)
    position: int | None = None  # place in the queue, 1 = next (state "queued")
    message: str = ""  # user-facing reason when failed
    seq: int = 0  # increases with every event of a job
    at: float = 0.0  # unix time

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> JobEvent:
        return cls(**json.loads(raw))


def channel(job_id: str) -> str:
    return f"stembot:job:{job_id}:events"


def last_key(job_id: str) -> str:
    return f"stembot:job:{job_id}:last"


class ProgressPublisher:
    """Publishes one job's events, dropping those that would only repeat the last one (< 1 %)."""

    def __init__(self, redis: Redis, job_id: str):
        self.redis = redis
        self.job_id = job_id
        self._last: JobEvent | None = None
        self._lock = asyncio.Lock()  # events from the pipeline's thread arrive as separate tasks: keep their order

    async def publish(self, state: str, fraction: float = 0.0, position: int | None = None, message: str = "") -> None:
        async with self._lock:
            await self._publish(state, fraction, position, message)

    async def _publish(self, state: str, fraction: float, position: int | None, message: str) -> None:
        last = self._last
        if (
            last is not None
            and last.state == state
            and last.position == position
            and abs(last.fraction - fraction) < 0.01
            and state not in TERMINAL_STATES
        ):
            return
        seq = await self.redis.incr(f"stembot:job:{self.job_id}:seq")
        await self.redis.expire(f"stembot:job:{self.job_id}:seq", LAST_STATE_TTL_S)
        event = JobEvent(self.job_id, state, round(fraction, 3), position, message, int(seq), time.time())
        self._last = event
        await publish_event(self.redis, event)


async def publish_event(redis: Redis, event: JobEvent) -> None:
    payload = event.to_json()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(last_key(event.job_id), payload, ex=LAST_STATE_TTL_S)
        pipe.publish(channel(event.job_id), payload)
        await pipe.execute()


async def last_event(redis: Redis, job_id: str) -> JobEvent | None:
    raw = await redis.get(last_key(job_id))
    return JobEvent.from_json(raw) if raw else None


async def follow(
    redis: Redis, job_id: str, poll_s: float = 1.0, idle_ticks: bool = False
) -> AsyncIterator[JobEvent | None]:
    """Yield the job's events in order from its current state until a terminal one.

    With `idle_ticks`, also yield None every `poll_s` without news (for callers with their own polling).
    """
    pubsub = redis.pubsub()
    await pubsub.subscribe(channel(job_id))
    try:
        seen = 0
        current = await last_event(redis, job_id)  # after subscribing: nothing falls in between
        if current is not None:
            seen = current.seq
            yield current
            if current.terminal:
                return
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=poll_s)
            if message is None:
                # Missed messages (e.g. a reconnect) are recovered from the last state.
                current = await last_event(redis, job_id)
                if current is None or current.seq <= seen:
                    if idle_ticks:
                        yield None
                    continue
                event = current
            else:
                event = JobEvent.from_json(message["data"])
                if event.seq <= seen:
                    continue
            seen = event.seq
            yield event
            if event.terminal:
                return
    finally:
        await pubsub.unsubscribe(channel(job_id))
        await pubsub.aclose()
