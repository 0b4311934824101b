"""/metrics (Prometheus) on the web server, and `stembot status`, fed by real jobs."""

import subprocess

from aiohttp.test_utils import TestClient, TestServer

from bot.requests import LinkSource, UploadSource, UserIdentity
from bot.service import SeparationService
from bot.web import create_app
from stembot.settings import Settings
from tests.conftest import music, stembot_exe, write_audio
from tests.service_support import RedisDb, flush_test_redis, service_env, start_worker

REDIS_DB = RedisDb.OBSERVABILITY


async def test_metrics_count_jobs_stages_and_refusals(tmp_path, model_dir, engine):
    await flush_test_redis(REDIS_DB)
    env = service_env(tmp_path / "data", model_dir, redis_db=REDIS_DB)
    settings = Settings.from_env(env)
    song = write_audio(tmp_path / "s.mp3", music(2.0, level=0.4)).read_bytes()
    async with await SeparationService.start(settings) as service:
        handle = await service.submit(UserIdentity("telegram", "1"), UploadSource("s.mp3", data=song))
        await service.submit(UserIdentity("telegram", "1"), UploadSource("s.mp3", data=song))  # quota
        await service.submit(UserIdentity("telegram", "2"), LinkSource("ftp://nope"))  # bad link
        worker = await start_worker(settings, engine)
        try:
            async for event in service.watch(handle.job_id):
                if event.terminal:
                    break
        finally:
            await worker.stop()

    async with TestClient(TestServer(create_app(settings))) as client:
        response = await client.get("/metrics")
        assert response.status == 200
        text = await response.text()
    assert 'stembot_jobs_total{outcome="done"} 1' in text
    assert 'stembot_refusals_total{reason="quota"} 1' in text
    assert 'stembot_refusals_total{reason="bad_link"} 1' in text
    assert 'stembot_stage_runs_total{stage="separate"} 1' in text
    assert "stembot_queue_depth 0" in text
    assert "stembot_separation_seconds_per_song" in text

    proc = subprocess.run([stembot_exe(), "status"], env={**env}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Queue: 0 waiting, 0 running" in proc.stdout
    assert "done 1" in proc.stdout


def test_json_log_lines_carry_job_ids():
    import json
    import logging

    from stembot.log_format import JsonFormatter

    record = logging.LogRecord("separation_worker.job_runner", logging.INFO, __file__, 1, "job %s: done", ("abc",), None)
    record.job_id, record.outcome = "abc", "done"
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "job abc: done" and entry["job_id"] == "abc" and entry["outcome"] == "done"
    assert entry["level"] == "info" and entry["ts"].endswith("Z")
