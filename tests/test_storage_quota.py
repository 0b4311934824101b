"""Quota: rolling window, next_free_at, refunds, and race safety across connections."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from storage import (
    Database,
    DuplicateJob,
    accept_job,
    get_job,
    get_or_create_user,
    list_jobs,
    quota_status,
    refund,
    try_charge,
)

DAY = timedelta(hours=24)
FREE, PRO = 1, 20


@pytest.fixture
async def user(db):
    return await get_or_create_user(db, "telegram", 1, "Ann")


async def test_free_user_gets_one_song_per_rolling_day(db, user, clock):
    status = await quota_status(db, user.id, FREE)
    assert (status.accepted, status.used, status.limit, status.remaining, status.next_free_at) == (True, 0, 1, 1, None)

    first_at = clock.now()
    first = await accept_job(db, user.id, "j1", "song.mp3", FREE)
    assert first.accepted and first.job is not None and first.job.id == "j1"
    assert (first.decision.used, first.decision.remaining) == (1, 0)
    assert first.decision.next_free_at == first_at + DAY

    clock.advance(timedelta(hours=23, minutes=59))
    refused = await accept_job(db, user.id, "j2", "song.mp3", FREE)
    assert not refused.accepted and refused.job is None
    assert (refused.decision.used, refused.decision.remaining) == (1, 0)
    assert refused.decision.next_free_at == first_at + DAY
    assert await get_job(db, "j2") is None  # a refusal creates no job

    status = await quota_status(db, user.id, FREE)
    assert not status.accepted and status.next_free_at == first_at + DAY

    clock.set(first_at + DAY)  # the first charge leaves the window exactly at next_free_at
    assert (await quota_status(db, user.id, FREE)).accepted
    again = await accept_job(db, user.id, "j2", "song.mp3", FREE)
    assert again.accepted and again.decision.next_free_at == clock.now() + DAY


async def test_next_free_at_is_the_oldest_charge_in_the_window(db, user, clock):
    start = clock.now()
    for i in range(3):
        assert (await try_charge(db, user.id, f"j{i}", 3)).accepted
        clock.advance(timedelta(hours=1))
    refused = await try_charge(db, user.id, "j3", 3)
    assert not refused.accepted and refused.next_free_at == start + DAY
    clock.set(start + DAY)
    decision = await try_charge(db, user.id, "j3", 3)
    assert decision.accepted and decision.used == 3
    assert decision.next_free_at == start + timedelta(hours=1) + DAY  # now j1 is the oldest


async def test_next_free_at_when_the_limit_was_lowered(db, user, clock):
    start = clock.now()
    for i in range(5):  # five songs as Pro, one hour apart
        await try_charge(db, user.id, f"j{i}", PRO)
        clock.advance(timedelta(hours=1))
    status = await quota_status(db, user.id, 2)  # Pro ended: two charges must leave before a third is possible
    assert (status.used, status.remaining) == (5, 0)
    assert status.next_free_at == start + timedelta(hours=3) + DAY


async def test_limit_zero(db, user):
    decision = await try_charge(db, user.id, "j", 0)
    assert (decision.accepted, decision.remaining, decision.next_free_at) == (False, 0, None)
    with pytest.raises(ValueError):
        await quota_status(db, user.id, -1)


async def test_window_is_configurable(db, user, clock):
    assert (await try_charge(db, user.id, "j1", 1, window=timedelta(hours=1))).accepted
    clock.advance(timedelta(hours=1))
    assert (await try_charge(db, user.id, "j2", 1, window=timedelta(hours=1))).accepted


async def test_refund_restores_a_slot_once(db, user):
    await accept_job(db, user.id, "j1", "song.mp3", FREE)
    assert not (await quota_status(db, user.id, FREE)).accepted
    assert await refund(db, "j1", "worker crashed") is True
    assert await refund(db, "j1", "again") is False  # idempotent
    assert await refund(db, "never-charged") is False
    status = await quota_status(db, user.id, FREE)
    assert (status.accepted, status.used, status.remaining) == (True, 0, 1)
    assert (await accept_job(db, user.id, "j2", "song.mp3", FREE)).accepted
    assert not (await accept_job(db, user.id, "j3", "song.mp3", FREE)).accepted  # the refund restored one slot


async def test_pro_limit_is_twenty(db, user, clock):
    for i in range(PRO):
        decision = await try_charge(db, user.id, f"j{i}", PRO)
        assert decision.accepted and decision.remaining == PRO - 1 - i
        clock.advance(timedelta(minutes=1))
    refused = await try_charge(db, user.id, "j20", PRO)
    assert not refused.accepted and refused.used == PRO
    # the same user, now free: still over the free limit
    assert not (await quota_status(db, user.id, FREE)).accepted


async def test_charges_are_per_user(db, user):
    bob = await get_or_create_user(db, "discord", 2, "Bob")
    assert (await try_charge(db, user.id, "a", FREE)).accepted
    assert (await try_charge(db, bob.id, "b", FREE)).accepted


async def test_charging_a_job_twice_is_an_error(db, user):
    await try_charge(db, user.id, "j", 5)
    with pytest.raises(DuplicateJob):
        await try_charge(db, user.id, "j", 5)
    with pytest.raises(DuplicateJob):
        await accept_job(db, user.id, "j", "song.mp3", 5)
    assert (await quota_status(db, user.id, 5)).used == 1


async def _race(
    url, tmp_path, clock, submissions: int, limit: int, max_in_flight: int | None = None
) -> tuple[int, Database]:
    """`submissions` simultaneous accept_job calls by one user, each on its own connection to the same database."""
    setup = await Database.connect(url, tmp_path, clock=clock)
    user = await get_or_create_user(setup, "telegram", 1)
    connections = await asyncio.gather(*(Database.connect(url, tmp_path, clock=clock) for _ in range(submissions)))
    try:
        results = await asyncio.gather(
            *(
                accept_job(db, user.id, f"job-{i}", "song.mp3", limit, max_in_flight=max_in_flight)
                for i, db in enumerate(connections)
            )
        )
    finally:
        for db in connections:
            await db.close()
    accepted = [result for result in results if result.accepted]
    assert all(result.job is not None for result in accepted)
    assert all(result.job is None for result in results if not result.accepted)
    assert len(await list_jobs(setup, "queued")) == len(accepted)  # every acceptance has its job, nothing more
    assert (await quota_status(setup, user.id, limit)).used == len(accepted)
    return len(accepted), setup


async def test_songs_in_flight_cap_holds_under_concurrency(shared_database_url, tmp_path, clock):
    accepted, db = await _race(shared_database_url, tmp_path, clock, submissions=12, limit=PRO, max_in_flight=3)
    await db.close()
    assert accepted == 3


async def test_concurrent_submissions_by_a_free_user_accept_exactly_one(shared_database_url, tmp_path, clock):
    accepted, db = await _race(shared_database_url, tmp_path, clock, submissions=20, limit=FREE)
    await db.close()
    assert accepted == 1


async def test_concurrent_submissions_by_a_pro_user_accept_exactly_twenty(shared_database_url, tmp_path, clock):
    accepted, db = await _race(shared_database_url, tmp_path, clock, submissions=25, limit=PRO)
    await db.close()
    assert accepted == 20


async def test_concurrent_submissions_sharing_one_connection(db, user):
    # One Database shared by the tasks of a process (a bot): its lock keeps their transactions apart.
    results = await asyncio.gather(*(accept_job(db, user.id, f"job-{i}", "song.mp3", FREE) for i in range(20)))
    assert sum(result.accepted for result in results) == 1
    assert (await quota_status(db, user.id, FREE)).used == 1


_SUBMIT_FROM_A_PROCESS = """
import asyncio, sys
from storage import Database, accept_job

async def main(url, user_id, first, count, limit):
    async with await Database.connect(url, ".") as db:
        results = await asyncio.gather(
            *(accept_job(db, user_id, f"p{first + i}", "song.mp3", limit) for i in range(count))
        )
    print(sum(result.accepted for result in results))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
"""


async def test_concurrent_submissions_from_separate_processes(shared_database_url, tmp_path):
    # The bots, the web server and the workers are separate processes: SQLite's file locks, or PostgreSQL's
    # write lock, must hold the line.
    path = shared_database_url
    async with await Database.connect(path, tmp_path) as db:
        user = await get_or_create_user(db, "telegram", 1)
    root = Path(__file__).resolve().parents[1]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _SUBMIT_FROM_A_PROCESS, str(path), str(user.id), str(i * 10), "5", "3",
            cwd=root, stdout=asyncio.subprocess.PIPE,
        )
        for i in range(4)
    ]
    outputs = [await process.communicate() for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0]
    assert sum(int(stdout) for stdout, _ in outputs) == 3
    async with await Database.connect(path, tmp_path) as db:
        assert (await quota_status(db, user.id, 3)).used == 3
        assert len(await list_jobs(db, "queued")) == 3
