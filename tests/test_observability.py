"""/metrics (Prometheus) on the web server, and `stembot status`, fed by real jobs."""

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from bot.requests import LinkSource, UploadSource, UserIdentity
from bot.service import SeparationService
from bot.web import create_app, serve
from separation_worker.contract import metrics
from stembot.settings import Settings, SettingsError
from tests.conftest import music, stembot_exe, write_audio
from tests.service_support import RedisDb, flush_test_redis, service_env, start_worker

REDIS_DB = RedisDb.OBSERVABILITY
TOKEN = "metrics-token-7f3a9c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_metrics_count_jobs_stages_and_refusals(tmp_path, model_dir, engine):
    await flush_test_redis(REDIS_DB)
    env = service_env(tmp_path / "data", model_dir, redis_db=REDIS_DB, STEMBOT_METRICS_TOKEN=TOKEN)
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
        response = await client.get("/metrics", headers=AUTH)
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


# --- who may read /metrics ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env(tmp_path: Path, **extra) -> dict[str, str]:
    return service_env(tmp_path / "data", tmp_path / "models", redis_db=REDIS_DB, **extra)


async def _count_a_refusal(settings: Settings) -> None:
    """One real counter in the suite's Redis db, so a 200 shows the snapshot was read from it."""
    await flush_test_redis(REDIS_DB)
    client = aioredis.from_url(settings.redis_url)
    await metrics.count(client, "refusals:quota")
    await client.aclose()


async def _get(http: aiohttp.ClientSession, url: str, token: str | None = None, scheme: str = "Bearer"):
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    async with http.get(url, headers=headers) as response:
        return response.status, response.headers, await response.text()


async def _wait_listening(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(1000):  # a connection refusal is immediate
        try:
            async with http.get(url):
                return
        except aiohttp.ClientConnectorError:
            await asyncio.sleep(0.01)
    pytest.fail(f"nothing ever listened at {url}")


async def test_results_port_serves_metrics_only_with_the_token(tmp_path):
    settings = Settings.from_env(_env(tmp_path, STEMBOT_METRICS_TOKEN=TOKEN), dotenv=False)
    await _count_a_refusal(settings)
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            url = str(server.make_url("/metrics"))
            for token, scheme in ((None, "Bearer"), ("wrong", "Bearer"), (TOKEN + "x", "Bearer"), (TOKEN[:-1], "Bearer"),
                                  ("", "Bearer"), (TOKEN, "Basic"), (TOKEN, "")):
                status, headers, body = await _get(http, url, token, scheme)
                assert status == 401, (token, scheme)
                assert headers["WWW-Authenticate"] == "Bearer"
                assert "stembot_" not in body
            for scheme in ("Bearer", "bearer"):  # the scheme is case-insensitive (RFC 9110 §11.1)
                status, _, body = await _get(http, url, TOKEN, scheme)
                assert status == 200
                assert 'stembot_refusals_total{reason="quota"} 1' in body
            status, _, body = await _get(http, str(server.make_url("/healthz")))
            assert (status, body) == (200, "ok")  # health stays public
    finally:
        await server.close()


async def test_no_token_means_no_metrics_on_the_results_port(tmp_path):
    settings = Settings.from_env(_env(tmp_path), dotenv=False)
    assert not settings.metrics_token
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            for token in (None, "", "anything"):
                status, _, _ = await _get(http, str(server.make_url("/metrics")), token)
                assert status == 404
            status, _, body = await _get(http, str(server.make_url("/healthz")))
            assert (status, body) == (200, "ok")
    finally:
        await server.close()


@pytest.mark.parametrize("token", [TOKEN, ""])
async def test_metrics_port_serves_metrics_without_a_token(tmp_path, token, caplog):
    port, metrics_port = _free_port(), _free_port()
    settings = Settings.from_env(
        _env(tmp_path, STEMBOT_METRICS_TOKEN=token, STEMBOT_METRICS_PORT=metrics_port), dotenv=False
    )
    await _count_a_refusal(settings)
    results, private = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}"
    with caplog.at_level(logging.DEBUG):
        task = asyncio.create_task(serve(settings, "127.0.0.1", port))
        try:
            async with aiohttp.ClientSession() as http:
                await _wait_listening(http, f"{results}/healthz")
                status, _, body = await _get(http, f"{private}/metrics")
                assert status == 200 and 'stembot_refusals_total{reason="quota"} 1' in body
                status, _, body = await _get(http, f"{private}/healthz")
                assert (status, body) == (200, "ok")
                for path in ("/d/job/a.mp3?e=1&s=x", "/r/job?e=1&s=x", "/"):  # only metrics and health there
                    assert (await _get(http, f"{private}{path}"))[0] == 404
                # The results port is unchanged by the metrics port: the token's rule still holds there.
                assert (await _get(http, f"{results}/metrics"))[0] == (401 if token else 404)
                if token:
                    assert (await _get(http, f"{results}/metrics", token))[0] == 200
                assert (await _get(http, f"{results}/healthz"))[:1] == (200,)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"serving metrics on 127.0.0.1:{metrics_port}" in logged
    assert '"GET /metrics" 200' in logged
    if token:
        assert token not in logged  # the secret is sent, never logged


async def test_busy_metrics_port_is_one_line_naming_the_setting(tmp_path):
    port = _free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = Settings.from_env(_env(tmp_path, STEMBOT_METRICS_PORT=taken.getsockname()[1]), dotenv=False)
        with pytest.raises(SettingsError) as caught:
            await asyncio.wait_for(serve(settings, "127.0.0.1", port), 30)
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("STEMBOT_METRICS_PORT: cannot listen on 127.0.0.1:")
    with socket.socket() as probe:  # nothing left listening on the results port
        assert probe.connect_ex(("127.0.0.1", port)) != 0


async def test_blocking_run_listens_on_both_ports_and_stops_on_sigterm(tmp_path):
    # `bot.web.run` (what `stembot web` calls) in its own process: aiohttp's run_app owns the loop and signals.
    port, metrics_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("STEMBOT_")}
    env.update(_env(tmp_path, STEMBOT_METRICS_TOKEN=TOKEN, STEMBOT_METRICS_PORT=metrics_port))
    code = f"from bot.web import run; from stembot.settings import Settings; run(Settings.from_env(), '127.0.0.1', {port})"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        async with aiohttp.ClientSession() as http:
            await _wait_listening(http, f"http://127.0.0.1:{port}/healthz")
            assert (await _get(http, f"http://127.0.0.1:{metrics_port}/metrics"))[0] == 200
            assert (await _get(http, f"http://127.0.0.1:{port}/metrics"))[0] == 401
            assert (await _get(http, f"http://127.0.0.1:{port}/metrics", TOKEN))[0] == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert TOKEN not in out + err
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", metrics_port)) != 0  # the metrics listener closed with it
