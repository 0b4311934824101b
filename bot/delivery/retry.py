"""How a piece of a delivery is retried: the platform's errors, made neutral, and a bounded backoff.

Channels turn their library's exceptions into `Transient` (flood control with its `retry_after`, 5xx, timeouts,
a dropped connection: worth another try) or `Rejected` (the platform refused this piece for good: too large,
forbidden). `retrying` honours `retry_after`, backs off exponentially otherwise, and after `attempts` tries
raises `GaveUp`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Transient(Exception):
    """A failure that may pass: try again after `retry_after` seconds (the platform's word) or a backoff."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Rejected(Exception):
    """The platform refused this piece and would refuse it again."""


class GaveUp(Exception):
    """Transient failures did not pass within the policy's attempts."""

    def __init__(self, what: str, last: Transient):
        super().__init__(f"{what}: gave up after repeated failures ({last.reason})")
        self.last = last


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # tries in all, the first included
    base_s: float = 1.0  # first backoff; doubles each time
    max_s: float = 30.0  # longest backoff
    max_retry_after_s: float = 120.0  # flood control asking for longer: give up now, the delivery resumes later
    jitter: float = 0.1  # up to 10 % more, so that many deliveries don't retry in step

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1-based)."""
        if retry_after is not None:
            return retry_after + 0.1  # Telegram counts whole seconds: never come back a moment early
        backoff = min(self.max_s, self.base_s * 2 ** (failures - 1))
        return backoff * (1 + random.uniform(0, self.jitter))


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    what: str,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """`call()` until it succeeds; Transient failures retried per `policy`; Rejected passes through."""
    failures = 0
    while True:
        try:
            return await call()
        except Transient as exc:
            failures += 1
            too_long = exc.retry_after is not None and exc.retry_after > policy.max_retry_after_s
            if failures >= policy.attempts or too_long:
                raise GaveUp(what, exc) from exc
            delay = policy.delay(failures, exc.retry_after)
            log.warning("%s failed (%s); retry %d/%d in %.1f s", what, exc.reason, failures, policy.attempts - 1, delay)
            await sleep(delay)
