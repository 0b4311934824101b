"""The retry policy of deliveries: retry_after honoured, backoff bounded, refusals not retried."""

from __future__ import annotations

import pytest

from bot.delivery.retry import GaveUp, Rejected, RetryPolicy, Transient, retrying


async def test_retrying_honours_retry_after_and_gives_up():
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    tries = iter([Transient("flood", retry_after=2), Transient("502")])

    async def flaky() -> str:
        error = next(tries, None)
        if error:
            raise error
        return "sent"

    policy = RetryPolicy(attempts=5, base_s=1.0, jitter=0.0)
    assert await retrying(flaky, policy, "x", sleep=sleep) == "sent"
    assert waits == [pytest.approx(2.1), 2.0]  # the backoff grows with failures in a row, whatever they were

    async def down() -> None:
        raise Transient("502")

    with pytest.raises(GaveUp):
        await retrying(down, RetryPolicy(attempts=3, base_s=1.0, jitter=0.0), "x", sleep=sleep)
    assert waits[2:] == [1.0, 2.0]

    async def refused() -> None:
        raise Rejected("too large")

    with pytest.raises(Rejected):
        await retrying(refused, policy, "x", sleep=sleep)
    with pytest.raises(GaveUp):  # flood control asking for longer than a delivery waits: resumed later
        await retrying(lambda: _raise(Transient("flood", retry_after=3600)), policy, "x", sleep=sleep)


async def _raise(error: Exception) -> None:
    raise error
