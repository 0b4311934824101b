"""An operator's checks: `stembot check` names every problem at once, the bots refuse a localhost public URL,
`stembot health` reads real heartbeats, and STEMBOT_GPUS runs one worker process per GPU."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from separation_worker.contract.heartbeat import Beat, Heartbeat, read_health
from stembot.config_check import parse_roles
from stembot.settings import Settings, SettingsError, is_loopback_url
from tests.conftest import stembot_exe
from tests.service_support import RedisDb, free_port, service_env

ROOT = Path(__file__).resolve().parents[1]


def stembot(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STEMBOT_", "TELEGRAM_", "DISCORD_", "REDIS_"))}
    return subprocess.run([stembot_exe(), *args], env={**clean, **env}, capture_output=True, text=True,
                          timeout=timeout, cwd="/")


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def env(tmp_path, model_dir) -> dict[str, str]:
    return service_env(tmp_path / "data", model_dir, RedisDb.OPERATIONS, STEMBOT_HEALTH_DIR=tmp_path / "health")


def test_check_names_every_problem_in_a_line_each(env):
    bad = {**env, "STEMBOT_DEVICE": "gpu", "STEMBOT_MAX_QUEUE": "lots", "STEMBOT_SECRET_KEY": "short",
           "STEMBOT_PUBLIC_URL": "http://localhost:8080", "TELEGRAM_BOT_TOKEN": "no-colon",
           "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = stembot("check", "--for", "web,telegram,", env=bad)
    assert done.returncode == 1, done
    problems = lines(done.stderr)
    assert all(line.startswith("stembot: ") for line in problems)
    for name in ("STEMBOT_DEVICE", "STEMBOT_MAX_QUEUE", "STEMBOT_SECRET_KEY", "STEMBOT_PUBLIC_URL",
                 "TELEGRAM_BOT_TOKEN", "REDIS_URL"):
        assert sum(name in line for line in problems) == 1, (name, problems)
    assert len(problems) == 6, problems
    assert "short" not in done.stderr  # the secret's value is never printed


def test_check_passes_a_good_configuration(env):
    done = stembot("check", "--for", "worker,web", env=env)
    assert done.returncode == 0, done.stderr
    assert lines(done.stdout)[-1] == "Configuration OK for worker, web."


def test_check_defaults_to_the_service_and_the_bots_with_tokens(env):
    done = stembot("check", env={**env, "DISCORD_BOT_TOKEN": "a-token"})
    assert done.returncode == 0, done.stderr
    assert lines(done.stdout)[-1] == "Configuration OK for worker, web, discord."
    assert stembot("check", "--for", "gpu", env=env).returncode == 1


def test_missing_models_are_a_note_not_a_failure(env, tmp_path):
    done = stembot("check", "--for", "separate", env={**env, "STEMBOT_MODEL_DIR": str(tmp_path / "empty")})
    assert done.returncode == 0, done.stderr
    assert "stembot models download" in done.stdout


@pytest.mark.parametrize("bot", ["telegram", "discord"])
def test_bots_refuse_a_localhost_public_url(env, bot):
    token = {"TELEGRAM_BOT_TOKEN": "700:token"} if bot == "telegram" else {"DISCORD_BOT_TOKEN": "token"}
    done = stembot(bot, env={**env, **token, "STEMBOT_PUBLIC_URL": "http://127.0.0.1:8080"}, timeout=30)
    assert done.returncode == 1
    assert lines(done.stderr) == [
        "stembot: STEMBOT_PUBLIC_URL is http://127.0.0.1:8080, which users cannot reach: set it to the address of "
        "`stembot web` users reach (e.g. https://stems.example.com), or STEMBOT_LOCAL_TEST=true for a test on this "
        "machine"]
    # told it is a local test, the check lets it through
    allowed = stembot("check", "--for", bot, env={**env, **token, "STEMBOT_PUBLIC_URL": "http://localhost:8080",
                                                  "STEMBOT_LOCAL_TEST": "true"})
    assert allowed.returncode == 0, allowed.stderr


def test_loopback_urls():
    for url in ("http://localhost:8080", "http://LOCALHOST", "http://a.localhost/", "http://127.0.0.2", "http://[::1]:80",
                "http://0.0.0.0:8080"):
        assert is_loopback_url(url), url
    for url in ("https://stems.example.com", "http://192.168.1.10:8080", "http://files.test"):
        assert not is_loopback_url(url), url


def test_settings_errors_are_all_collected():
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"STEMBOT_OUTPUT_FORMAT": "ogg", "STEMBOT_LOG_FORMAT": "xml", "STEMBOT_TRUE_PEAK_DBTP": "3"})
    assert [p.split()[0] for p in caught.value.problems] == [
        "STEMBOT_OUTPUT_FORMAT", "STEMBOT_LOG_FORMAT", "STEMBOT_TRUE_PEAK_DBTP"]
    assert caught.value.partial is not None and caught.value.partial.output_format == "mp3"
    assert parse_roles(" worker, ,web,") == ("worker", "web")


async def test_heartbeat_files(tmp_path):
    beat = Heartbeat(tmp_path, "telegram", detail="@stembot")
    assert not read_health(tmp_path, "telegram").healthy
    beat.start()
    await asyncio.sleep(0.05)
    health = read_health(tmp_path, "telegram")
    assert health.healthy and "@stembot" in health.summary
    assert not read_health(tmp_path, "telegram", now=time.time() + 120).healthy  # three missed beats
    await beat.stop()
    assert not read_health(tmp_path, "telegram").healthy
    # a beat left by a process that died is ignored (and removed)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"telegram-{dead.stdout.strip()}.json"
    stale.write_text(Beat("telegram", int(dead.stdout), time.time()).to_json())
    assert not read_health(tmp_path, "telegram").healthy and not stale.exists()


def wait_for(predicate, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what}: the process exited with {process.returncode}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def beats(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in folder.glob("worker-*.json")]


def test_worker_health_follows_the_real_worker(env, tmp_path):
    health_dir = Path(env["STEMBOT_HEALTH_DIR"])
    assert stembot("health", "worker", env=env).returncode == 1
    worker = subprocess.Popen([stembot_exe(), "worker"], env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: beats(health_dir), 90, "the worker's first heartbeat", worker)
        done = stembot("health", "worker", env=env)
        assert done.returncode == 0 and done.stdout.startswith("worker: 1 healthy (cpu)"), done
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    assert stembot("health", "worker", env=env).returncode == 1  # a stopped worker removed its beat


def test_one_worker_process_per_gpu(env, tmp_path):
    """STEMBOT_GPUS with two ids, run on the CPU: two real workers, each told its own CUDA device."""
    health_dir = Path(env["STEMBOT_HEALTH_DIR"])
    script = "import sys; from stembot.gpu_workers import run_per_gpu; sys.exit(run_per_gpu(('0', '1')))"
    parent = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(beats(health_dir)) == 2, 120, "two workers' heartbeats", parent)
        pids = {beat["pid"] for beat in beats(health_dir)}
        assert {_cuda_visible(pid) for pid in pids} == {"0", "1"}
        os.kill(next(iter(pids)), signal.SIGKILL)  # one GPU's worker dies: the others stop, the failure shows
        assert parent.wait(60) == 128 + signal.SIGKILL
        assert "stopping the others" in parent.stderr.read()
        assert not any(_alive(pid) for pid in pids)
    finally:
        if parent.poll() is None:
            parent.send_signal(signal.SIGTERM)
            parent.wait(60)


def _cuda_visible(pid: int) -> str:
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if item.startswith(b"CUDA_VISIBLE_DEVICES="):
            return item.split(b"=", 1)[1].decode()
    return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
