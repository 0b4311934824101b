"""Shared fixtures: tiny random-weight models on disk, generated audio, a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from separation_worker.engine import SeparationEngine
from separation_worker.inference.device import run_config
from separation_worker.models.zoo import DEFAULT_ENSEMBLE, FAST_ENSEMBLE
from stembot.settings import Settings
from storage import Database, FakeClock
from tests.support.backends import DEFAULT_POSTGRES, Backends, isolated_backends, suite_backends
from tests.support.model_factory import write_ensemble, write_mode_models

SR = 44100


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch):
    # Local servers must be reached directly, whatever the machine's proxy settings.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock() -> FakeClock:
    """A settable clock for storage tests: nothing sleeps."""
    return FakeClock()


@pytest.fixture(scope="session")
def _suite_backends():
    with suite_backends() as base:
        yield base


@pytest.fixture(autouse=True)
def backends(_suite_backends, monkeypatch) -> Backends:
    """This test's database and object store (SQLite and local files unless the run names PostgreSQL and S3),
    also in the environment, for the processes a test starts."""
    with isolated_backends(_suite_backends) as mine:
        for name, value in mine.env().items():
            monkeypatch.setenv(name, value)
        yield mine


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_database_url(request, tmp_path, _suite_backends):
    """A fresh database on each server, for the race tests: the SQLite file, and PostgreSQL (the run's, or the
    machine's at 127.0.0.1:5432; skipped where there is none unless the run names one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.sqlite3'}"
        return
    base = _suite_backends.database_url if _suite_backends.postgres else DEFAULT_POSTGRES
    try:
        mine = isolated_backends(Backends(database_url=base))
        url = mine.__enter__().database_url
    except (OSError, asyncpg.PostgresError) as error:
        if _suite_backends.postgres:
            raise
        pytest.skip(f"no PostgreSQL at {base}: {error}")
    try:
        yield url
    finally:
        mine.__exit__(None, None, None)


@pytest.fixture
async def db(tmp_path, clock, backends):
    """A fresh database (a real SQLite file, or this test's PostgreSQL database) on the fake clock."""
    if backends.postgres:
        opened = await Database.connect(backends.database_url, tmp_path, clock=clock)
    else:
        opened = await Database.open(tmp_path / "db.sqlite3", clock=clock)
    async with opened as db:
        yield db


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return write_mode_models(write_ensemble(tmp_path_factory.mktemp("models")))


@pytest.fixture
def settings(model_dir, backends) -> Settings:
    return Settings.from_env({"STEMBOT_MODEL_DIR": str(model_dir), "STEMBOT_DEVICE": "cpu", **backends.env()})


@pytest.fixture(scope="session")
def engine(model_dir) -> SeparationEngine:
    engine = SeparationEngine(DEFAULT_ENSEMBLE, model_dir, run_config("cpu"))
    engine.load(allow_download=False)
    return engine


@pytest.fixture(scope="session")
def quick_engine(model_dir) -> SeparationEngine:
    """One ensemble member (the fast preset's): for tests about what happens around a separation, not inside it."""
    engine = SeparationEngine(FAST_ENSEMBLE, model_dir, run_config("cpu"))
    engine.load(allow_download=False)
    return engine


@pytest.fixture
def cli_env(model_dir, tmp_path, backends) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update({"STEMBOT_MODEL_DIR": str(model_dir), "STEMBOT_DEVICE": "cpu"})
    return env


def music(seconds: float, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """A stereo test signal with tones, a pulse and noise (float32, (2, n))."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    left = np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 331 * t)
    right = np.sin(2 * np.pi * 277 * t) + 0.4 * np.sin(2 * np.pi * 440 * t + 1)
    pulse = (np.sin(2 * np.pi * 2 * t) > 0.95) * rng.standard_normal(t.size)
    x = np.stack([left + pulse, right + pulse]) + 0.05 * rng.standard_normal((2, t.size))
    return (level * x / np.abs(x).max()).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, sample_rate: int = SR, extra_args: tuple[str, ...] = ()) -> Path:
    """Encode (channels, n) float samples to `path` with ffmpeg (format from the suffix)."""
    raw = np.ascontiguousarray(samples.T, dtype="<f4").tobytes()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(sample_rate), "-ac", str(samples.shape[0]),
         "-i", "-", *extra_args, str(path)],
        input=raw, check=True,
    )
    return path


@pytest.fixture
def http_server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1; yields (root dir, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def stembot_exe() -> str:
    exe = shutil.which("stembot", path=str(Path(sys.executable).parent)) or shutil.which("stembot")
    assert exe, "the stembot console script is not installed (pip install -e .)"
    return exe
