"""Jobs: creation, the status state machine, results, delivery."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from storage import (
    Database,
    DuplicateJob,
    InvalidName,
    InvalidTransition,
    JobStatus,
    NotFound,
    accept_job,
    cancel_job,
    create_job,
    fail_job,
    finish_job,
    get_job,
    get_or_create_user,
    get_queued_job,
    list_jobs,
    list_undelivered,
    list_user_jobs,
    mark_delivered,
    quota_status,
    requeue_job,
    set_delivery,
    start_job,
    store_result,
    transition,
)


@pytest.fixture
async def user(db):
    return await get_or_create_user(db, "telegram", 1, "Ann")


async def test_create_job(db, user, clock):
    job = await create_job(db, "job-1", user.id, "https://example.com/song", delivery={"chat_id": 5, "message_id": 9})
    assert job.status is JobStatus.QUEUED and job.attempts == 0
    assert job.created_at == clock.now() and job.started_at is None and job.finished_at is None
    assert job.delivery == {"chat_id": 5, "message_id": 9}
    assert job.result is None and job.error is None
    assert await get_job(db, "job-1") == job
    assert await get_job(db, "nope") is None


async def test_create_job_refuses_duplicates_bad_ids_and_unknown_users(db, user):
    await create_job(db, "job-1", user.id, "a.mp3")
    with pytest.raises(DuplicateJob):
        await create_job(db, "job-1", user.id, "b.mp3")
    for bad in ("", "../x", "a/b", "a b", "x" * 129):
        with pytest.raises(InvalidName):
            await create_job(db, bad, user.id, "a.mp3")
    with pytest.raises(NotFound):
        await create_job(db, "job-2", 9999, "a.mp3")


async def test_happy_path(db, user, clock):
    await create_job(db, "j", user.id, "song.mp3")
    clock.advance(5)
    running = await start_job(db, "j")
    assert running.status is JobStatus.RUNNING and running.attempts == 1 and running.started_at == clock.now()
    clock.advance(60)
    done = await finish_job(db, "j", {"bpm": 128, "key": "A minor", "files": ["Song (Vocals).mp3"]})
    assert done.status is JobStatus.DONE and done.finished_at == clock.now()
    assert (await get_job(db, "j")) == done
    assert done.result == {"bpm": 128, "key": "A minor", "files": ["Song (Vocals).mp3"]}


async def test_retry_counts_attempts(db, user):
    await create_job(db, "j", user.id, "song.mp3")
    await start_job(db, "j")
    requeued = await requeue_job(db, "j")
    assert requeued.status is JobStatus.QUEUED and requeued.attempts == 1
    assert (await start_job(db, "j")).attempts == 2


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ([], JobStatus.DONE),  # queued → done: must run first
        ([], JobStatus.QUEUED),  # queued → queued
        (["running"], JobStatus.RUNNING),  # a second start while running
        (["running"], JobStatus.CANCELLED),  # running jobs are not cancellable
        (["running", "done"], JobStatus.RUNNING),
        (["running", "done"], JobStatus.FAILED),
        (["running", "done"], JobStatus.QUEUED),
        (["running", "failed"], JobStatus.QUEUED),
        (["cancelled"], JobStatus.RUNNING),
        (["expired"], JobStatus.EXPIRED),
        (["expired"], JobStatus.RUNNING),
    ],
)
async def test_status_guards(db, user, path, wanted):
    await create_job(db, "j", user.id, "song.mp3")
    for step in path:
        await transition(db, "j", step)
    before = await get_job(db, "j")
    with pytest.raises(InvalidTransition) as caught:
        await transition(db, "j", wanted)
    assert caught.value.current == before.status.value and caught.value.wanted == wanted.value
    assert await get_job(db, "j") == before  # unchanged


async def test_transition_of_unknown_job(db):
    with pytest.raises(NotFound):
        await start_job(db, "ghost")


async def test_fail_stores_the_user_facing_error_and_refunds_on_request(db, user):
    for job_id, refund in (("ours", True), ("theirs", False)):
        accepted = await accept_job(db, user.id, job_id, "song.mp3", limit=5)
        assert accepted.accepted
        await start_job(db, job_id)
        failed = await fail_job(db, job_id, "That link is not audio.", refund=refund)
        assert failed.status is JobStatus.FAILED and failed.error == "That link is not audio."
    assert (await quota_status(db, user.id, limit=5)).used == 1  # only "theirs" still counts


async def test_cancel_only_while_queued_and_refunds(db, user):
    await accept_job(db, user.id, "j", "song.mp3", limit=1)
    assert (await quota_status(db, user.id, limit=1)).remaining == 0
    cancelled = await cancel_job(db, "j")
    assert cancelled.status is JobStatus.CANCELLED and cancelled.finished_at is not None
    assert (await quota_status(db, user.id, limit=1)).remaining == 1

    await accept_job(db, user.id, "k", "song.mp3", limit=1)
    await start_job(db, "k")
    with pytest.raises(InvalidTransition):
        await cancel_job(db, "k")


async def test_cancel_and_start_race_has_one_winner(tmp_path, clock):
    path = tmp_path / "db.sqlite3"
    async with await Database.open(path, clock=clock) as a, await Database.open(path, clock=clock) as b:
        user = await get_or_create_user(a, "telegram", 1)
        await create_job(a, "j", user.id, "song.mp3")
        outcomes = await asyncio.gather(start_job(a, "j"), cancel_job(b, "j"), return_exceptions=True)
        assert sum(isinstance(outcome, InvalidTransition) for outcome in outcomes) == 1
        assert (await get_job(a, "j")).status in (JobStatus.RUNNING, JobStatus.CANCELLED)


async def test_mark_delivered_only_once(db, user, clock):
    await create_job(db, "j", user.id, "song.mp3")
    with pytest.raises(InvalidTransition):
        await mark_delivered(db, "j")  # still queued
    await start_job(db, "j")
    await finish_job(db, "j", {"ok": True})
    assert await list_undelivered(db) == [await get_job(db, "j")]
    clock.advance(1)
    assert await mark_delivered(db, "j") is True
    assert await mark_delivered(db, "j") is False
    assert (await get_job(db, "j")).delivered_at == clock.now()
    assert await list_undelivered(db) == []


async def test_mark_delivered_once_across_connections(tmp_path, clock):
    path = tmp_path / "db.sqlite3"
    dbs = [await Database.open(path, clock=clock) for _ in range(5)]
    try:
        user = await get_or_create_user(dbs[0], "telegram", 1)
        await create_job(dbs[0], "j", user.id, "song.mp3")
        await start_job(dbs[0], "j")
        await finish_job(dbs[0], "j", {})
        results = await asyncio.gather(*(mark_delivered(db, "j") for db in dbs))
        assert sorted(results) == [False, False, False, False, True]
    finally:
        for db in dbs:
            await db.close()


async def test_listings(db, user, clock):
    other = await get_or_create_user(db, "discord", 2)
    for job_id in ("a", "b", "c", "d"):
        await create_job(db, job_id, user.id, f"{job_id}.mp3")
        clock.advance(1)
    await create_job(db, "e", other.id, "e.mp3")
    await start_job(db, "a")
    await start_job(db, "b")
    await finish_job(db, "b", {})
    await fail_job(db, "c", "Queue unavailable.", refund=True)

    assert [job.id for job in await list_jobs(db, "queued", JobStatus.RUNNING)] == ["a", "d", "e"]
    assert [job.id for job in await list_jobs(db, "queued", limit=1)] == ["d"]
    assert await list_jobs(db) == []
    assert [job.id for job in await list_undelivered(db)] == ["b", "c"]
    assert (await get_queued_job(db, user.id)).id == "d"
    assert (await get_queued_job(db, other.id)).id == "e"
    await cancel_job(db, "d")
    assert await get_queued_job(db, user.id) is None
    assert [job.id for job in await list_user_jobs(db, user.id)] == ["d", "c", "b", "a"]
    assert [job.id for job in await list_user_jobs(db, user.id, limit=2)] == ["d", "c"]


async def test_store_result_and_set_delivery(db, user):
    await create_job(db, "j", user.id, "song.mp3")
    await store_result(db, "j", {"progress": "separating"})
    await set_delivery(db, "j", {"chat_id": 1, "message_id": 2})
    job = await get_job(db, "j")
    assert job.result == {"progress": "separating"} and job.delivery == {"chat_id": 1, "message_id": 2}
    assert job.status is JobStatus.QUEUED
    with pytest.raises(NotFound):
        await store_result(db, "ghost", {})


async def test_expired_is_reachable_from_every_live_status(db, user, clock):
    for job_id, steps in {"q": [], "r": ["running"], "d": ["running", "done"], "c": ["cancelled"]}.items():
        await create_job(db, job_id, user.id, "x")
        for step in steps:
            await transition(db, job_id, step)
        clock.advance(timedelta(seconds=1))
        expired = await transition(db, job_id, "expired")
        assert expired.status is JobStatus.EXPIRED and expired.expired_at == clock.now()
