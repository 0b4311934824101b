"""Model files as an operator meets them: downloaded from a mirror (a real local HTTP server), cut off mid-transfer,
truncated on disk, overwritten with an error page, or absent with no network. The CLI runs as the real console
script; the models are tiny ones written from the published YAMLs."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from separation_worker.contract.errors import ModelError
from separation_worker.models import inventory
from separation_worker.models.download import download
from separation_worker.models.zoo import DEFAULT_ENSEMBLE
from tests.conftest import music, stembot_exe, write_audio
from tests.service_support import free_port

BS = DEFAULT_ENSEMBLE.members[0]


def stembot(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([stembot_exe(), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def models(tmp_path, model_dir) -> Path:
    """A private copy of the tiny ensemble, free to damage."""
    return Path(shutil.copytree(model_dir, tmp_path / "models", ignore=shutil.ignore_patterns(".verified")))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_sound_files_are_present_and_stamped(models):
    states = inventory.survey(DEFAULT_ENSEMBLE, models)
    assert [s.status for s in states] == [inventory.FileStatus.PRESENT] * 6
    assert (models / ".verified" / f"{BS.checkpoint}.json").is_file()


@pytest.mark.parametrize("damage, reason", [
    (truncate, "truncated"),
    (lambda p: p.write_bytes(b"<!DOCTYPE html><title>404</title>"), "not a checkpoint (an error page or text)"),
    (lambda p: p.write_bytes(b""), "empty"),
])
def test_damaged_checkpoints_are_named(models, damage, reason):
    inventory.survey(DEFAULT_ENSEMBLE, models)  # stamped while sound: a later change must still be seen
    damage(models / BS.checkpoint)
    checkpoint = inventory.files_of(BS, models)[0]
    assert checkpoint.damaged and checkpoint.reason == reason
    assert checkpoint.problem_line() == (f"BS-Roformer: {BS.checkpoint} in {models} is damaged ({reason}): "
                                         "run `stembot models download` to fetch it again")


def test_a_broken_yaml_is_damaged(models):
    (models / BS.config).write_text("model: [unclosed\n")
    assert inventory.files_of(BS, models)[1].reason == "the YAML does not parse"


class CutOff(http.server.SimpleHTTPRequestHandler):
    """Announces the whole file, sends half, hangs up: a transfer cut mid-body."""

    def do_GET(self) -> None:
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])

    def log_message(self, *args) -> None:
        pass


def serve(directory: Path, handler=http.server.SimpleHTTPRequestHandler):
    class Quiet(handler):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_a_cut_transfer_leaves_nothing_under_the_models_name(tmp_path, model_dir):
    server, url = serve(model_dir, CutOff)
    target = tmp_path / "empty"
    try:
        with pytest.raises(ModelError) as caught:
            download(BS, target, url)
    finally:
        server.shutdown()
    assert "stopped after" in str(caught.value) and "\n" not in str(caught.value)
    assert [p.name for p in target.iterdir()] == []  # no partial file, no staging folder


def cli_env(cli_env: dict[str, str], models: Path, **extra: str) -> dict[str, str]:
    return {**cli_env, "STEMBOT_MODEL_DIR": str(models), **extra}


def test_list_and_download_repair_damaged_and_missing_models(cli_env, models, model_dir):
    truncate(models / BS.checkpoint)
    (models / DEFAULT_ENSEMBLE.members[1].checkpoint).unlink()
    env = {**cli_env, "STEMBOT_MODEL_DIR": str(models)}
    listed = stembot("models", "list", env=env)
    assert listed.returncode == 1
    assert f"{BS.checkpoint}  [damaged: truncated]" in listed.stdout
    assert f"{DEFAULT_ENSEMBLE.members[1].checkpoint}  [missing]" in listed.stdout
    assert listed.stdout.splitlines()[-1] == "2 of 3 models are missing or damaged: run `stembot models download`"

    server, url = serve(model_dir)
    try:
        fetched = stembot("models", "download", env={**env, "STEMBOT_MODEL_MIRROR": url})
    finally:
        server.shutdown()
    assert fetched.returncode == 0, fetched.stderr
    assert (models / BS.checkpoint).read_bytes() == (model_dir / BS.checkpoint).read_bytes()
    relisted = stembot("models", "list", env=env)
    assert relisted.returncode == 0 and relisted.stdout.count("[present]") == 3


@pytest.fixture
def song(tmp_path) -> Path:
    return write_audio(tmp_path / "song.wav", music(3.0))


def test_separate_offline_with_a_missing_model_says_one_line(cli_env, models, song, tmp_path):
    (models / BS.checkpoint).unlink()
    env = {**cli_env, "STEMBOT_MODEL_DIR": str(models), "STEMBOT_MODEL_MIRROR": f"http://127.0.0.1:{free_port()}"}
    done = stembot("separate", str(song), "--out", str(tmp_path / "out"), env=env)
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        f"stembot: BS-Roformer: {BS.checkpoint} could not be downloaded into {models} (Connection refused): "
        "run `stembot models download` where the model host is reachable, or copy the file there"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert sorted(p.name for p in models.iterdir() if p.name.startswith(".download")) == []


def test_separate_with_a_damaged_model_says_one_line(cli_env, models, song, tmp_path):
    truncate(models / BS.checkpoint)
    env = {**cli_env, "STEMBOT_MODEL_DIR": str(models)}
    done = stembot("separate", str(song), "--out", str(tmp_path / "out"), env=env)
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        f"stembot: BS-Roformer: {BS.checkpoint} in {models} is damaged (truncated): "
        "run `stembot models download` to fetch it again"]
