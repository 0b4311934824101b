"""Fault drills with real processes: a worker SIGKILLed mid-job, Redis restarted empty."""

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from bot.requests import JobHandle, UploadSource, UserIdentity
from bot.service import SeparationService
from stembot.settings import Settings
from tests.conftest import music, stembot_exe, write_audio
from tests.service_support import flush_test_redis, free_port, service_env, start_private_redis

ALICE = UserIdentity("telegram", "1001", "Alice")


def spawn_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [stembot_exe(), "worker"], env={**os.environ, **env}, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def wait_for_state(service, job_id, wanted: set[str], timeout=180):
    async def run():
        async for event in service.watch(job_id):
            if event.state in wanted:
                return event
        return None

    return await asyncio.wait_for(run(), timeout)


async def kill_mid_job_and_take_over(service, job_id, first_env, second_env, log: Path):
    """Start a worker, SIGKILL it once the job is separating, start another; returns (the killed worker's
    process, the job's final event, asserted done)."""
    first = spawn_worker(first_env, log)
    try:
        assert await wait_for_state(service, job_id, {"separating"}) is not None
        os.killpg(first.pid, signal.SIGKILL)  # no cleanup, no goodbye
        first.wait()
        assert (await service.job(job_id)).status.value == "running"
        second = spawn_worker(second_env, log)
        try:
            done = await wait_for_state(service, job_id, {"done", "failed"})
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert done.state == "done", log.read_text()[-3000:]
    return first, done


async def test_worker_killed_mid_job_is_taken_over(tmp_path, model_dir):
    await flush_test_redis()
    env = service_env(tmp_path / "data", model_dir)
    settings = Settings.from_env(env)
    song = write_audio(tmp_path / "long.mp3", music(12.0, level=0.4)).read_bytes()  # separating takes seconds: long enough to kill mid-way
    log = tmp_path / "workers.log"
    async with await SeparationService.start(settings) as service:
        handle = await service.submit(ALICE, UploadSource("long.mp3", data=song))
        assert isinstance(handle, JobHandle)
        first, done = await kill_mid_job_and_take_over(service, handle.job_id, env, env, log)
        job = await service.job(handle.job_id)
        assert job.attempts == 2
        print(f"did: SIGKILLed worker {first.pid} mid-separation, started another; "
              f"checked: job {job.id} done on attempt 2, delivered once, charged once")
        assert await service.claim_delivery(handle.job_id) is True
        assert await service.claim_delivery(handle.job_id) is False  # delivered once
        assert (await service.quota(ALICE)).used == 1  # charged once, not refunded


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_redis_restarted_empty_while_jobs_wait(tmp_path, model_dir, engine):
    """A private Redis is stopped and started again (empty) with jobs queued: none is lost or run twice."""
    from tests.service_support import start_worker

    port = free_port()


    redis_proc = start_private_redis(port)
    env = service_env(tmp_path / "data", model_dir, REDIS_URL=f"redis://127.0.0.1:{port}/0")
    settings = Settings.from_env(env)
    song = write_audio(tmp_path / "s.mp3", music(2.0, level=0.4)).read_bytes()
    users = [UserIdentity("telegram", str(i)) for i in range(3)]
    try:
        service = await SeparationService.start(settings)
        handles = [await service.submit(u, UploadSource("s.mp3", data=song)) for u in users]
        await service.close()
        redis_proc.terminate()
        redis_proc.wait(10)
        redis_proc = start_private_redis(port)  # back, and empty
        service = await SeparationService.start(settings)  # start-up reconciles from SQLite
        worker = await start_worker(settings, engine)
        try:
            for handle in handles:
                event = await wait_for_state(service, handle.job_id, {"done", "failed"})
                assert event.state == "done"
                assert (await service.job(handle.job_id)).attempts == 1  # ran once
            print(f"did: stopped Redis with {len(handles)} jobs queued, started it empty; "
                  "checked: all re-enqueued from SQLite, each done once")
        finally:
            await worker.stop()
            await service.close()
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)


def mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


async def test_disk_full_fails_cleanly(tmp_path, model_dir, engine):
    """The file store fills up mid-job: the job fails with a message, is refunded, and leaves nothing."""
    from bot.requests import Refusal
    from separation_worker.job_runner import OUR_FAULT
    from tests.service_support import start_worker

    files_root = tmp_path / "data" / "files"
    if not mount_tmpfs(files_root, "1200k"):
        pytest.skip("needs root to mount a small tmpfs for the file store")
    try:
        await flush_test_redis()
        settings = Settings.from_env(service_env(tmp_path / "data", model_dir, STEMBOT_MAX_ATTEMPTS=1))
        song = write_audio(tmp_path / "s.mp3", music(12.0, level=0.4)).read_bytes()  # ~0.5 MB in, ~4 MB out
        async with await SeparationService.start(settings) as service:
            handle = await service.submit(ALICE, UploadSource("s.mp3", data=song))
            assert not isinstance(handle, Refusal)
            worker = await start_worker(settings, engine)
            try:
                event = await wait_for_state(service, handle.job_id, {"done", "failed"})
            finally:
                await worker.stop()
            assert event.state == "failed" and event.message == OUR_FAULT
            assert (await service.quota(ALICE)).used == 0
            assert list(files_root.iterdir()) == []  # no partial stems, no upload
            print("did: ran a job on a 1.2 MB file store (ENOSPC while encoding); "
                  "checked: failed with a message, refunded, no files left")
    finally:
        subprocess.run(["umount", str(files_root)], check=False)
