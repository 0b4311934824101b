"""Delivery bookkeeping: one claimant at a time under a lease, pieces recorded once, delivered only when complete."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from storage import (
    Database,
    InvalidTransition,
    PieceOutcome,
    claim_delivery,
    complete_delivery,
    create_job,
    finish_job,
    get_job,
    get_or_create_user,
    list_claimable,
    record_piece,
    recorded_pieces,
    release_delivery,
    renew_delivery,
    start_job,
)

LEASE = timedelta(seconds=60)


@pytest.fixture
async def done_job(db):
    user = await get_or_create_user(db, "telegram", "1")
    await create_job(db, "j", user.id, "song.mp3")
    await start_job(db, "j")
    await finish_job(db, "j", {"title": "x"})
    return "j"


async def test_one_claimant_until_the_lease_lapses(db, clock, done_job):
    assert await claim_delivery(db, done_job, "a", LEASE)
    assert not await claim_delivery(db, done_job, "a", LEASE)  # not re-entrant: one task per delivery
    assert not await claim_delivery(db, done_job, "b", LEASE)
    assert await list_claimable(db) == []
    clock.advance(timedelta(seconds=30))
    assert await renew_delivery(db, done_job, "a", LEASE)
    clock.advance(timedelta(seconds=59))
    assert not await claim_delivery(db, done_job, "b", LEASE)  # renewed: still a's
    clock.advance(timedelta(seconds=2))  # a crashed: its lease lapses
    assert [j.id for j in await list_claimable(db)] == [done_job]
    assert await claim_delivery(db, done_job, "b", LEASE)
    assert not await renew_delivery(db, done_job, "a", LEASE)  # a learns it lost the job


async def test_release_lets_the_next_start_resume_at_once(db, done_job):
    assert await claim_delivery(db, done_job, "a", LEASE)
    await record_piece(db, done_job, "stem:vocals", PieceOutcome.SENT)
    await release_delivery(db, done_job, "a")
    assert await claim_delivery(db, done_job, "b", LEASE)
    assert await recorded_pieces(db, done_job) == {"stem:vocals": PieceOutcome.SENT}
    assert (await get_job(db, done_job)).delivered_at is None  # not delivered until every piece went


async def test_complete_marks_delivered_for_good(db, done_job):
    assert await claim_delivery(db, done_job, "a", LEASE)
    await record_piece(db, done_job, "stem:vocals", PieceOutcome.LINKED)
    await record_piece(db, done_job, "stem:vocals", PieceOutcome.SENT)  # the first record stays
    await record_piece(db, done_job, "summary", PieceOutcome.SENT)
    assert await complete_delivery(db, done_job, "a")
    assert (await get_job(db, done_job)).delivered_at is not None
    assert not await claim_delivery(db, done_job, "b", LEASE)
    assert await list_claimable(db) == []
    assert (await recorded_pieces(db, done_job))["stem:vocals"] is PieceOutcome.LINKED


async def test_a_running_job_cannot_be_claimed(db):
    user = await get_or_create_user(db, "telegram", "1")
    await create_job(db, "r", user.id, "song.mp3")
    with pytest.raises(InvalidTransition):
        await claim_delivery(db, "r", "a", LEASE)


async def test_claims_are_exclusive_across_connections(tmp_path, clock):
    path = tmp_path / "db.sqlite3"
    dbs = [await Database.open(path, clock=clock) for _ in range(4)]
    try:
        user = await get_or_create_user(dbs[0], "telegram", "1")
        await create_job(dbs[0], "j", user.id, "song.mp3")
        await start_job(dbs[0], "j")
        await finish_job(dbs[0], "j", {})
        wins = await asyncio.gather(*(claim_delivery(db, "j", f"owner-{i}", LEASE) for i, db in enumerate(dbs)))
        assert sorted(wins) == [False, False, False, True]
    finally:
        for db in dbs:
            await db.close()
