"""Model files as an operator meets them: downloaded from a mirror (a real local HTTP server), cut off mid-transfer,
truncated on disk, overwritten with an error page or garbage, a broken YAML, a checkpoint of another model, or
absent with no network. The CLI runs as the real console script; the models are tiny ones written from the
published YAMLs (tests/support/model_factory.py)."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from separation_worker.contract.network_errors import network_cause
from separation_worker.models import download as fetching
from separation_worker.models import inventory
from separation_worker.models.inventory import FileKind, FileStatus, ModelFile
from separation_worker.models.zoo import DEFAULT_ENSEMBLE
from tests.conftest import music, stembot_exe, write_audio
from tests.service_support import free_port

BS, MEL, MDX = DEFAULT_ENSEMBLE.members
BS_CKPT = ModelFile(BS.name, BS.checkpoint, FileKind.CHECKPOINT)
BS_YAML = ModelFile(BS.name, BS.config, FileKind.CONFIG)


def stembot(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([stembot_exe(), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def models(tmp_path, model_dir) -> Path:
    """A private copy of the tiny ensemble, unstamped (as if copied there by hand), free to damage."""
    return Path(shutil.copytree(model_dir, tmp_path / "models", ignore=shutil.ignore_patterns(".*")))


@pytest.fixture
def source(tmp_path, model_dir) -> Path:
    """What the mirror serves: the tiny ensemble's files (a copy, so a test may change them)."""
    return Path(shutil.copytree(model_dir, tmp_path / "mirror", ignore=shutil.ignore_patterns(".*")))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_byte_inside_a_tensor(path: Path) -> None:
    """Same size, the zip directory intact: only the CRCs can tell."""
    data = bytearray(path.read_bytes())
    offset = data.index(b"/data/0") + 200  # into the first tensor's bytes
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


# --- what is on disk --------------------------------------------------------------------------------------------


def test_sound_files_are_present_and_stamped_once(models):
    states = inventory.survey(DEFAULT_ENSEMBLE, models)
    assert [s.status for s in states] == [FileStatus.PRESENT] * 6
    stamp = json.loads((models / ".verified" / f"{BS.checkpoint}.json").read_text())
    assert stamp["size"] == (models / BS.checkpoint).stat().st_size
    assert stamp["sha256"] == inventory.sha256_of(models / BS.checkpoint)
    assert stamp["problem"] is None


def test_a_matching_stamp_is_a_stat_and_any_change_is_checked_again(models):
    path = models / BS.checkpoint
    assert inventory.state_of(BS_CKPT, models).present  # checked in full, stamped
    info = path.stat()
    path.write_bytes(os.urandom(info.st_size))  # same size...
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))  # ...and mtime: the stamp still matches
    assert inventory.state_of(BS_CKPT, models).present  # proof that the stamped check did not read the file
    os.utime(path)  # a new mtime, as any real rewrite gives
    assert inventory.state_of(BS_CKPT, models).reason == "not a checkpoint"


@pytest.mark.parametrize("damage, reason", [
    (truncate, "truncated"),
    (flip_a_byte_inside_a_tensor, "corrupt (CRC mismatch in "),
    (lambda p: p.write_bytes(b"<!DOCTYPE html><title>404 Not Found</title>"), "not a checkpoint (an HTML page)"),
    (lambda p: p.write_bytes(b"Access denied by your network's policy.\n"), "not a checkpoint (text)"),
    (lambda p: p.write_bytes(bytes(range(1, 256)) * 40), "not a checkpoint"),
    (lambda p: p.write_bytes(b""), "empty"),
], ids=["truncated", "crc", "html", "text", "garbage", "empty"])
def test_damaged_checkpoints_are_named(models, damage, reason):
    inventory.survey(DEFAULT_ENSEMBLE, models)  # stamped while sound: the damage must still be seen
    damage(models / BS.checkpoint)
    checkpoint = inventory.files_of(BS, models)[0]
    assert checkpoint.damaged and checkpoint.reason.startswith(reason)
    assert checkpoint.problem_line() == (f"BS-Roformer: {BS.checkpoint} in {models} is damaged ({checkpoint.reason}): "
                                         "run `stembot models download` to fetch it again")


@pytest.mark.parametrize("text, reason", [
    ("audio:\n  chunk_size: 1\nmodel:\n\tdim: 4\n", "YAML does not parse at line 4"),
    ("- just\n- a list\n", "not a model config (no `model:` section)"),
    ("", "empty"),
])
def test_a_broken_yaml_is_damaged(models, text, reason):
    (models / BS.config).write_text(text)
    assert inventory.files_of(BS, models)[1].reason == reason


def test_missing_files(models):
    (models / MEL.config).unlink()
    state = inventory.files_of(MEL, models)[1]
    assert state.missing
    assert state.problem_line() == f"Mel-Band Roformer: {MEL.config} is missing from {models}: run `stembot models download`"


# --- downloads --------------------------------------------------------------------------------------------------


class Mirror:
    """A real HTTP server over a folder; `faults[name]` makes it misbehave for one file, `hits` counts GETs."""

    def __init__(self, root: Path):
        self.root = root
        self.faults: dict[str, str] = {}
        self.hits: Counter[str] = Counter()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                mirror.hits[name] += 1
                path = mirror.root / name
                if not path.is_file():
                    self.send_error(404, "File not found")
                    return
                data, fault = path.read_bytes(), mirror.faults.get(name, "")
                self.send_response(200)
                if fault == "chunked-cut":
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    half = data[: len(data) // 2]
                    self.wfile.write(b"%x\r\n" % len(half) + half + b"\r\n")
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(data) + (1000 if fault == "short" else 0)))
                self.end_headers()
                if fault == "cut":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    # Reset, not a clean close: what a dropped connection looks like.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                self.wfile.write(data)
                if fault == "short":
                    self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror(source):
    served = Mirror(source)
    yield served
    served.close()


def test_a_download_lands_checked_and_stamped(tmp_path, mirror, source):
    target = tmp_path / "fresh"
    seen = []
    states = fetching.download(BS, target, mirror.url, progress=lambda f, done, total: seen.append((done, total)))
    assert [s.status for s in states] == [FileStatus.PRESENT] * 2
    for name in (BS.checkpoint, BS.config):
        assert (target / name).read_bytes() == (source / name).read_bytes()
    size = (source / BS.checkpoint).stat().st_size
    assert seen[0] == (0, size) and (size, size) in seen
    stamp = json.loads((target / ".verified" / f"{BS.checkpoint}.json").read_text())
    assert stamp["sha256"] == inventory.sha256_of(source / BS.checkpoint)
    assert leftovers(target) == []


def test_a_file_mirror_works_too(tmp_path, source):
    target = tmp_path / "fresh"
    fetching.download(MDX, target, source.as_uri())
    assert inventory.files_of(MDX, target)[0].present


@pytest.mark.parametrize("fault, reason", [
    ("cut", None),  # reset mid-body: "Connection reset by peer" or the byte count, whichever the client sees first
    ("short", "the transfer stopped after {n} of {announced} bytes"),
    ("chunked-cut", "the transfer stopped after {half} bytes"),
])
def test_a_cut_transfer_leaves_nothing_under_the_models_name(tmp_path, mirror, source, fault, reason):
    mirror.faults[BS.checkpoint] = fault
    target = tmp_path / "fresh"
    with pytest.raises(fetching.DownloadFailed) as caught:
        fetching.download(BS, target, mirror.url)
    line = str(caught.value)
    assert "\n" not in line
    n = (source / BS.checkpoint).stat().st_size
    if reason:
        assert caught.value.reason == reason.format(n=n, announced=n + 1000, half=n // 2)
    else:
        assert caught.value.reason in ("Connection reset by peer", f"the transfer stopped after {n // 2} of {n} bytes")
    assert line == (f"BS-Roformer: {BS.checkpoint} is missing from {target} and could not be downloaded from "
                    f"{mirror.url.removeprefix('http://')} ({caught.value.reason}): run `stembot models download` "
                    "where the model host is reachable, or copy the file there")
    assert not (target / BS.checkpoint).exists()
    assert leftovers(target) == []


def test_a_damaged_download_does_not_replace_anything(tmp_path, mirror, source, models):
    truncate(models / BS.checkpoint)
    broken = (models / BS.checkpoint).read_bytes()
    (source / BS.checkpoint).write_bytes(b"<html><body>Sign in to the hotel Wi-Fi</body></html>")
    with pytest.raises(fetching.DownloadFailed) as caught:
        fetching.fetch_file(BS_CKPT, models, mirror.url)
    assert caught.value.reason == "the downloaded file is damaged: not a checkpoint (an HTML page)"
    assert (models / BS.checkpoint).read_bytes() == broken  # still the operator's, still reported damaged
    assert leftovers(models) == []


def test_a_published_hash_is_checked(tmp_path, mirror, source):
    # UVR's identifier: the md5 of the last 10,000 KiB (here: of the whole tiny file).
    import hashlib

    right = hashlib.md5((source / BS.checkpoint).read_bytes()).hexdigest()
    with pytest.raises(fetching.DownloadFailed) as caught:
        fetching.fetch_file(BS_CKPT, tmp_path / "a", mirror.url, expected_md5="0" * 32)
    assert caught.value.reason == "the downloaded file is damaged: its checksum does not match the published one"
    assert fetching.fetch_file(BS_CKPT, tmp_path / "b", mirror.url, expected_md5=right).present


def test_not_on_the_mirror_is_a_404_line(tmp_path, mirror):
    (mirror.root / BS.config).unlink()
    with pytest.raises(fetching.DownloadFailed) as caught:
        fetching.fetch_file(BS_YAML, tmp_path, mirror.url)
    assert caught.value.reason == "HTTP 404 File not found"


def test_two_processes_sharing_a_folder_fetch_each_file_once(tmp_path, mirror):
    target = tmp_path / "shared"
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(fetching.fetch_file(BS_CKPT, target, mirror.url)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and all(r.present for r in results)  # type: ignore[attr-defined]
    assert mirror.hits[BS.checkpoint] == 1


def test_nothing_listening_is_connection_refused(tmp_path):
    with pytest.raises(fetching.DownloadFailed) as caught:
        fetching.fetch_file(BS_CKPT, tmp_path, f"http://127.0.0.1:{free_port()}")
    assert caught.value.reason == "Connection refused"


def test_the_zoo_sources_are_audio_separators():
    assert fetching.sources(BS_CKPT) == [
        "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models/"
        "model_bs_roformer_ep_317_sdr_12.9755.ckpt",
        "https://github.com/nomadkaraoke/python-audio-separator/releases/download/model-configs/"
        "model_bs_roformer_ep_317_sdr_12.9755.ckpt",
    ]
    assert fetching.sources(ModelFile(MDX.name, MDX.config, FileKind.CONFIG))[0] == (
        "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models/mdx_model_data/mdx_c_configs/"
        "model_2_stem_full_band_8k.yaml")
    assert fetching.sources(BS_CKPT, "http://mirror.lan/models/") == [f"http://mirror.lan/models/{BS.checkpoint}"]


def test_network_cause_walks_urllibs_chain():
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{free_port()}/x", timeout=5)
    except urllib.error.URLError as exc:
        assert network_cause(exc) == "Connection refused"
    assert network_cause(ValueError("not a network error")) is None


# --- the command line -------------------------------------------------------------------------------------------


@pytest.fixture
def env(cli_env, models) -> dict[str, str]:
    return {**cli_env, "STEMBOT_MODEL_DIR": str(models)}


def test_models_list_marks_each_model_and_fails_unless_all_present(env, models):
    truncate(models / BS.checkpoint)
    (models / MEL.checkpoint).unlink()
    (models / MDX.config).write_text("model: [unclosed\n")
    listed = stembot("models", "list", env=env)
    assert listed.returncode == 1
    lines = listed.stdout.splitlines()
    assert f"{BS.checkpoint}  [damaged: truncated]" in lines[1]
    assert lines[2].endswith(f"{MEL.checkpoint}  [missing]")
    assert lines[3].endswith(f"{MDX.checkpoint}  [damaged: YAML does not parse at line 2]  ({MDX.config})")
    assert lines[-1] == "3 of 3 models are missing or damaged: run `stembot models download`"


def test_models_download_repairs_damaged_and_missing_files(env, models, mirror, source):
    truncate(models / BS.checkpoint)
    (models / MEL.checkpoint).unlink()
    (models / MDX.config).write_text("model: [unclosed\n")
    before = (models / MEL.config).stat().st_mtime_ns
    fetched = stembot("models", "download", env={**env, "STEMBOT_MODEL_MIRROR": mirror.url})
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stderr == ""
    assert f"BS-Roformer: downloading {BS.checkpoint} (damaged: truncated) from 127.0.0.1:" in fetched.stdout
    assert f"Mel-Band Roformer: downloading {MEL.checkpoint} (missing)" in fetched.stdout
    assert fetched.stdout.splitlines()[-1] == f"All 3 models are in {models}"
    for name in (BS.checkpoint, MEL.checkpoint, MDX.config):
        assert (models / name).read_bytes() == (source / name).read_bytes()
    assert (models / MEL.config).stat().st_mtime_ns == before  # a sound file is left alone
    assert mirror.hits[MEL.config] == 0
    relisted = stembot("models", "list", env=env)
    assert relisted.returncode == 0 and relisted.stdout.count("[present]") == 3
    assert leftovers(models) == []


def test_models_download_offline_is_one_line_per_failure(env, models):
    (models / BS.checkpoint).unlink()
    (models / MDX.checkpoint).unlink()
    port = free_port()
    fetched = stembot("models", "download", env={**env, "STEMBOT_MODEL_MIRROR": f"http://127.0.0.1:{port}"})
    assert fetched.returncode == 1
    assert fetched.stderr.splitlines() == [
        f"stembot: {spec.name}: {spec.checkpoint} could not be downloaded from 127.0.0.1:{port} into {models} "
        f"(Connection refused): check that 127.0.0.1:{port} is reachable, or copy the file there"
        for spec in (BS, MDX)]


@pytest.fixture
def song(tmp_path) -> Path:
    return write_audio(tmp_path / "song.wav", music(3.0))


def test_separate_offline_with_a_missing_model_is_one_line(env, models, song, tmp_path):
    (models / BS.checkpoint).unlink()
    port = free_port()
    done = stembot("separate", str(song), "--out", str(tmp_path / "out"),
                   env={**env, "STEMBOT_MODEL_MIRROR": f"http://127.0.0.1:{port}"})
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        f"stembot: BS-Roformer: {BS.checkpoint} is missing from {models} and could not be downloaded from "
        f"127.0.0.1:{port} (Connection refused): run `stembot models download` where the model host is reachable, "
        "or copy the file there"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert leftovers(models) == []


@pytest.mark.parametrize("damage, reason", [
    (truncate, "truncated"),
    (lambda p: p.write_bytes(os.urandom(5000)), "not a checkpoint"),
], ids=["truncated", "garbage"])
def test_separate_with_a_damaged_model_is_one_line(env, models, song, tmp_path, damage, reason):
    damage(models / BS.checkpoint)
    done = stembot("separate", str(song), "--out", str(tmp_path / "out"), env=env)
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        f"stembot: BS-Roformer: {BS.checkpoint} in {models} is damaged ({reason}): "
        "run `stembot models download` to fetch it again"]


def test_a_checkpoint_of_another_model_is_damaged_and_replaced(env, models, song, tmp_path, mirror):
    shutil.copy(models / MEL.checkpoint, models / BS.checkpoint)  # a whole zip, the wrong weights
    done = stembot("separate", str(song), "--out", str(tmp_path / "out"), env=env)
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        f"stembot: BS-Roformer: {BS.checkpoint} in {models} is damaged (its weights do not fit {BS.config}): "
        "run `stembot models download` to fetch it again"]
    listed = stembot("models", "list", env=env)
    assert listed.returncode == 1 and f"[damaged: its weights do not fit {BS.config}]" in listed.stdout
    assert stembot("models", "download", env={**env, "STEMBOT_MODEL_MIRROR": mirror.url}).returncode == 0
    assert stembot("separate", str(song), "--out", str(tmp_path / "out"), env=env).returncode == 0


def test_a_model_dir_that_cannot_be_written_says_so(tmp_path, mirror):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(fetching.DownloadFailed) as caught:
        fetching.fetch_file(BS_CKPT, blocked, mirror.url)
    assert str(caught.value) == (
        f"BS-Roformer: {BS.checkpoint} is missing from {blocked} and could not be saved there (not a folder): "
        f"make {blocked} writable with free space, or set STEMBOT_MODEL_DIR to a folder that is, or copy the file there")
