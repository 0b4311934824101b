"""The janitor: files live `ttl` after the job finished (or was created), never longer."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import pytest

from storage import (
    FileStore,
    JobStatus,
    accept_job,
    cancel_job,
    create_job,
    create_link_code,
    fail_job,
    finish_job,
    get_job,
    get_or_create_user,
    quota_status,
    start_job,
    sweep,
)

TTL = timedelta(hours=24)


@pytest.fixture
def store(tmp_path) -> FileStore:
    return FileStore(tmp_path / "files")


@pytest.fixture
async def user(db):
    return await get_or_create_user(db, "telegram", 1)


def _set_mtime(folder, when: datetime) -> None:
    stamp = when.timestamp()
    for current, dirs, files in os.walk(folder):
        for name in dirs + files:
            os.utime(os.path.join(current, name), (stamp, stamp))
    os.utime(folder, (stamp, stamp))


async def test_finished_job_files_live_exactly_ttl(db, store, user, clock):
    await create_job(db, "done", user.id, "song.mp3")
    await start_job(db, "done")
    store.atomic_write("done", "incoming/song.mp3", b"in")
    clock.advance(timedelta(minutes=10))
    finished_at = clock.now()
    await finish_job(db, "done", {})
    store.atomic_write("done", "Song (Vocals).mp3", b"out")

    clock.set(finished_at + TTL - timedelta(seconds=1))
    report = await sweep(db, store, TTL, clock)
    assert report.expired_jobs == () and report.deleted_job_dirs == ()
    assert store.list_files("done") == ["Song (Vocals).mp3", "incoming/song.mp3"]
    assert (await get_job(db, "done")).status is JobStatus.DONE

    clock.set(finished_at + TTL)
    report = await sweep(db, store, TTL, clock)
    assert report.expired_jobs == ("done",) and report.deleted_job_dirs == ("done",)
    assert not store.job_dir("done").exists()
    job = await get_job(db, "done")
    assert job.status is JobStatus.EXPIRED and job.expired_at == clock.now() and job.finished_at == finished_at


async def test_every_kind_of_job_is_cleaned_and_sweeping_again_is_a_no_op(db, store, user, clock):
    start = clock.now()
    # failed, with an upload and a partial download left behind
    await create_job(db, "failed", user.id, "https://example.com/x")
    await start_job(db, "failed")
    store.atomic_write("failed", "incoming/upload.m4a", b"up")
    with store.writing("failed", "incoming/partial.wav") as temp:
        temp.write_bytes(b"half")
        os.link(temp, temp.with_name(".tmp-crashed.wav"))  # a crash left a temp file behind
    await fail_job(db, "failed", "Could not decode.", refund=False)
    # cancelled while queued, with its upload
    await create_job(db, "cancelled", user.id, "a.mp3")
    store.atomic_write("cancelled", "incoming/a.mp3", b"a")
    await cancel_job(db, "cancelled")
    # never finished: stuck queued and stuck running (charged: the charge is refunded when it expires)
    await accept_job(db, user.id, "stuck-queued", "b.mp3", limit=5)
    await accept_job(db, user.id, "stuck-running", "c.mp3", limit=5)
    await start_job(db, "stuck-running")
    store.atomic_write("stuck-running", "incoming/c.mp3", b"c")
    # an orphan folder (no job row), untouched since the start
    store.atomic_write("orphan", "incoming/x.mp3", b"x")
    _set_mtime(store.job_dir("orphan"), start)
    # a link code: kept `ttl` after it expired (so a late attempt still hears "expired"), then purged
    await create_link_code(db, user.id)

    clock.advance(timedelta(hours=12))
    await create_job(db, "fresh", user.id, "d.mp3")  # created later: must survive
    store.atomic_write("fresh", "incoming/d.mp3", b"d")
    store.atomic_write("fresh-orphan", "incoming/e.mp3", b"e")  # e.g. an upload staged before its job row
    _set_mtime(store.job_dir("fresh-orphan"), clock.now())

    assert (await sweep(db, store, TTL)).expired_jobs == ()  # 12 h: nothing yet (database's clock by default)

    clock.set(start + TTL)
    report = await sweep(db, store, TTL)
    assert report.expired_jobs == ("cancelled", "failed", "stuck-queued", "stuck-running")
    assert report.deleted_job_dirs == ("cancelled", "failed", "stuck-running")
    assert report.deleted_orphans == ("orphan",)
    assert report.failed_deletions == ()
    assert report.purged_link_codes == 0
    assert [d.job_id for d in store.list_job_dirs()] == ["fresh", "fresh-orphan"]
    assert (await quota_status(db, user.id, limit=5, window=TTL * 2)).used == 0  # stuck jobs were refunded

    again = await sweep(db, store, TTL)
    assert again.expired_jobs == again.deleted_job_dirs == again.deleted_orphans == ()

    clock.advance(TTL)
    _set_mtime(store.job_dir("fresh-orphan"), start + TTL / 2)
    report = await sweep(db, store, TTL)
    assert report.expired_jobs == ("fresh",)
    assert report.deleted_orphans == ("fresh-orphan",)
    assert report.purged_link_codes == 1
    assert store.list_job_dirs() == []


async def test_files_of_an_already_expired_job_are_deleted_later(db, store, user, clock):
    # e.g. a deletion failed, or a late writer recreated the folder: the next sweep removes it
    await create_job(db, "j", user.id, "a.mp3")
    clock.advance(TTL)
    assert (await sweep(db, store, TTL)).expired_jobs == ("j",)
    store.atomic_write("j", "late.bin", b"late")
    report = await sweep(db, store, TTL)
    assert report.expired_jobs == () and report.deleted_job_dirs == ("j",)
    assert not store.job_dir("j").exists()
