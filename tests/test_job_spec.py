"""The job specification: what the worker runs travels in its own column, typed, never guessed from a label."""

import asyncio
import json
import sqlite3

import pytest

from bot.requests import JobHandle, LinkSource, UploadSource, UserIdentity
from bot.service import SeparationService
from separation_worker.contract.job_spec import JobSpec, SourceKind
from stembot.settings import Settings
from storage import Database, get_job
from storage.migrations import MIGRATIONS
from tests.conftest import music, write_audio
from tests.service_support import flush_test_redis, service_env, start_worker

ALICE = UserIdentity("telegram", "3003", "Alice")


def test_spec_round_trips_and_refuses_nonsense():
    spec = JobSpec.link("https://example.com/a", max_duration_s=600.0, max_bytes=10, options={"mode": "vocals"})
    assert JobSpec.from_json(spec.to_json()) == spec
    upload = JobSpec.upload("song.mp3")
    assert JobSpec.from_json(upload.to_json()) == upload and upload.formats == ("mp3", "flac")
    with pytest.raises(ValueError):
        JobSpec(SourceKind.LINK)
    with pytest.raises(ValueError):
        JobSpec.from_json(json.dumps({"version": 99, "source": "link", "url": "https://x"}))


async def test_submission_stores_the_spec_and_keeps_delivery_data_opaque(tmp_path, model_dir):
    await flush_test_redis()
    settings = Settings.from_env(service_env(tmp_path / "data", model_dir))
    async with await SeparationService.start(settings) as service:
        link = await service.submit(ALICE, LinkSource("https://example.com/song.mp3"), delivery={"chat": 7})
        assert isinstance(link, JobHandle)
        job = await get_job(service.db, link.job_id)
        assert job.delivery == {"chat": 7}  # nothing of the worker's in the front end's data
        spec = JobSpec.from_json(job.spec_json)
        assert spec.source is SourceKind.LINK and spec.url == "https://example.com/song.mp3"
        assert spec.max_duration_s == settings.max_duration_free_seconds  # the Free tier's limit


async def test_an_upload_named_like_a_link_is_the_upload(tmp_path, model_dir, engine, http_server):
    """The label is for display: an upload called "http://…" is never fetched."""
    root, base = http_server
    write_audio(root / "other.mp3", music(9.0, seed=3))
    await flush_test_redis()
    settings = Settings.from_env(service_env(tmp_path / "data", model_dir))
    song = write_audio(tmp_path / "in.mp3", music(2.0, seed=1, level=0.4)).read_bytes()
    async with await SeparationService.start(settings) as service:
        handle = await service.submit(ALICE, UploadSource(f"{base}/other.mp3", data=song))
        assert isinstance(handle, JobHandle)
        worker = await start_worker(settings, engine)
        try:
            async def finished():
                async for event in service.watch(handle.job_id):
                    if event.terminal:
                        return event

            event = await asyncio.wait_for(finished(), 120)
        finally:
            await worker.stop()
        assert event.state == "done", event.message
        result = await service.result(handle.job_id)
        assert result.duration == pytest.approx(2.0, abs=0.1)  # the uploaded 2 s song, not the served 9 s one


async def test_jobs_waiting_across_the_upgrade_get_a_spec(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        for migration in MIGRATIONS[:2]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        now = "2026-01-01T00:00:00.000000Z"
        conn.execute("INSERT INTO users (id, platform, platform_user_id, created_at, last_seen_at) "
                     "VALUES (1, 'telegram', '1', ?, ?)", (now, now))
        limits = json.dumps({"chat": 1, "stembot_limits": {"max_duration_s": 600}})
        for job_id, source, status in (("a" * 32, "https://example.com/x", "queued"), ("b" * 32, "song.mp3", "running"),
                                       ("c" * 32, "old.mp3", "done")):
            conn.execute("INSERT INTO jobs (id, user_id, source, status, created_at, delivery) VALUES (?, 1, ?, ?, ?, ?)",
                         (job_id, source, status, now, limits))
    async with await Database.open(path) as db:
        link = JobSpec.from_json((await get_job(db, "a" * 32)).spec_json)
        assert (link.source, link.url, link.max_duration_s) == (SourceKind.LINK, "https://example.com/x", 600)
        upload = JobSpec.from_json((await get_job(db, "b" * 32)).spec_json)
        assert upload.source is SourceKind.UPLOAD and upload.upload_name is None
        assert (await get_job(db, "c" * 32)).spec_json is None  # finished: nothing to run
