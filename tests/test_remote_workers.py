"""Workers on other machines: each in its own data folder, sharing only Redis, PostgreSQL and the S3 bucket with
the front end (real servers: the machine's PostgreSQL, moto's S3 server over HTTP).

The run's PostgreSQL and bucket when it names them; otherwise the machine's PostgreSQL at 127.0.0.1:5432 (skipped
without one) and an S3 endpoint of the test's own.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.links import sign_link
from bot.requests import JobHandle, UploadSource, UserIdentity
from bot.service import SeparationService
from bot.web import create_app
from stembot.settings import Settings
from storage import (
    UTC,
    Database,
    FakeClock,
    FileStore,
    JobStatus,
    create_job,
    finish_job,
    get_job,
    get_or_create_user,
    start_job,
    sweep,
)
from tests.conftest import music, write_audio
from tests.service_support import flush_test_redis, service_env
from tests.support.backends import DEFAULT_POSTGRES, isolated_backends, suite_backends
from tests.test_worker_faults import kill_mid_job_and_take_over

ALICE = UserIdentity("telegram", "2002", "Alice")


@pytest.fixture
def shared(backends, monkeypatch):
    """PostgreSQL + S3 for this test, whatever the run's defaults."""
    if backends.postgres and backends.s3:
        yield backends
        return
    environ = {
        "STEMBOT_DATABASE_URL": backends.database_url if backends.postgres else DEFAULT_POSTGRES,
        "STEMBOT_STORAGE_URL": backends.storage_url if backends.s3 else "s3://stembot-drill/jobs",
        "STEMBOT_S3_ENDPOINT_URL": backends.s3_endpoint_url if backends.s3 else "",
    }
    with suite_backends(environ) as base:
        try:
            mine = isolated_backends(base)
            remote = mine.__enter__()
        except (OSError, asyncpg.PostgresError) as error:
            pytest.skip(f"no PostgreSQL at {environ['STEMBOT_DATABASE_URL']}: {error}")
        try:
            for name, value in remote.env().items():
                monkeypatch.setenv(name, value)  # boto3 in this process reads the credentials from here
            yield remote
        finally:
            mine.__exit__(None, None, None)


def machine_env(shared, data_dir, model_dir) -> dict[str, str]:
    """One machine's settings: its own data folder; the database, bucket and Redis shared."""
    return service_env(data_dir, model_dir, **shared.env())


def local_job_files(data_dir, job_id) -> list[str]:
    folder = data_dir / "files" / job_id
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


async def test_worker_on_another_machine_killed_mid_job_is_delivered_once(shared, tmp_path, model_dir):
    await flush_test_redis()
    front_dir, first_dir, second_dir = tmp_path / "front", tmp_path / "gpu-1", tmp_path / "gpu-2"
    front = Settings.from_env(machine_env(shared, front_dir, model_dir))
    song = write_audio(tmp_path / "long.mp3", music(12.0, level=0.4)).read_bytes()
    log = tmp_path / "workers.log"
    async with await SeparationService.start(front) as service:
        handle = await service.submit(ALICE, UploadSource("long.mp3", data=song))
        assert isinstance(handle, JobHandle)
        store = service.files
        assert store.remote is not None
        assert [o.key for o in store.remote.list(handle.job_id)] == [f"{handle.job_id}/incoming/long.mp3"]

        # The machine is gone mid-separation; a worker on another takes the job over.
        await kill_mid_job_and_take_over(service, handle.job_id, machine_env(shared, first_dir, model_dir),
                                         machine_env(shared, second_dir, model_dir), log)
        job = await service.job(handle.job_id)
        assert job.attempts == 2

        # The results are in the bucket (the upload gone from it), not on the worker that made them.
        keys = [o.key for o in store.remote.list(handle.job_id)]
        assert f"{handle.job_id}/result.json" in keys
        assert not any("/incoming/" in key for key in keys)
        assert local_job_files(second_dir, handle.job_id) == []

        # The front end delivers from its own copy, fetched from the bucket: once, charged once.
        result = await service.result(handle.job_id)
        assert result is not None and result.stems
        for stem in result.stems:
            assert stem.path.is_file() and stem.path.stat().st_size == stem.size_bytes
        assert await service.claim_delivery(handle.job_id) is True
        assert await service.claim_delivery(handle.job_id) is False
        assert (await service.quota(ALICE)).used == 1
        print(f"did: SIGKILLed the worker in {first_dir.name} mid-separation, started one in {second_dir.name}; "
              f"checked: job {job.id} done on attempt 2, {len(keys)} objects in the bucket, "
              f"{len(result.stems)} stems delivered from the front end's copy, once, charged once")


async def test_web_serves_a_job_from_the_bucket_with_ranges_and_the_janitor_deletes_it(shared, tmp_path):
    # A job whose files only the bucket has (its worker was elsewhere): the web server fetches, serves a Range,
    # and once the job expires the janitor deletes its objects as well as the local copies.
    clock = FakeClock()
    settings = Settings.from_env({
        **shared.env(), "STEMBOT_DATA_DIR": str(tmp_path / "web"), "STEMBOT_SECRET_KEY": "test-secret-key-0123456789",
        "STEMBOT_PUBLIC_URL": "http://files.test",
    })
    worker_side = FileStore.for_settings(settings.replace(data_dir=tmp_path / "gpu"))
    data = os.urandom(300_000)
    worker_side.atomic_write("job1", "vocals.flac", data)
    worker_side.publish_outputs("job1")
    worker_side.drop_local_copy("job1")
    assert local_job_files(tmp_path / "gpu", "job1") == []

    async with await Database.for_settings(settings, clock=clock) as db:
        user = await get_or_create_user(db, "telegram", 7)
        await create_job(db, "job1", user.id, "song.mp3")
        await start_job(db, "job1")
        await finish_job(db, "job1", {"stems": []})

        url = sign_link("", settings.secret_key, "job1", "vocals.flac", clock.now() + timedelta(hours=1))
        client = TestClient(TestServer(create_app(settings, clock=clock.now)))
        await client.start_server()
        try:
            response = await client.get(url, headers={"Range": "bytes=1000-1999"})
            assert response.status == 206
            assert await response.read() == data[1000:2000]
        finally:
            await client.close()
        assert local_job_files(tmp_path / "web", "job1") == ["vocals.flac"]
        web_side = FileStore.for_settings(settings)
        assert web_side.trim_local_copies(datetime.now(UTC) - timedelta(hours=1)) == 0  # fresh: kept
        assert web_side.trim_local_copies(datetime.now(UTC) + timedelta(minutes=1)) == 1  # old: the bucket keeps it
        assert local_job_files(tmp_path / "web", "job1") == []
        assert [o.key for o in web_side.remote.list("job1")] == ["job1/vocals.flac"]

        clock.advance(timedelta(hours=settings.file_ttl_hours + 1))
        report = await sweep(db, web_side, timedelta(hours=settings.file_ttl_hours))
        assert report.expired_jobs == ("job1",) and report.deleted_job_dirs == ("job1",)
        assert (await get_job(db, "job1")).status is JobStatus.EXPIRED
    assert web_side.remote is not None and web_side.remote.list("job1") == []
    assert local_job_files(tmp_path / "web", "job1") == []

