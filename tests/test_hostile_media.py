"""Media an attacker would craft: files that make ffmpeg open other files, or wait forever.

Each is refused by `stembot separate` within seconds with one line, leaving nothing behind;
the same checks guard uploads (tests/test_bad_input_catalogue.py) and downloaded files.
"""

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from separation_worker import audio_io, media_input
from separation_worker.contract.errors import InputError
from tests.conftest import music, stembot_exe, write_audio


def hls(*segments: str, ended: bool = True) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:10", "#EXT-X-MEDIA-SEQUENCE:0"]
    for segment in segments:
        lines += ["#EXTINF:3.0,", segment]
    return "\n".join(lines + (["#EXT-X-ENDLIST"] if ended else [])) + "\n"


@pytest.fixture
def secret(tmp_path) -> Path:
    """A file elsewhere on the server that no upload may reach."""
    (tmp_path / "server").mkdir()
    return write_audio(tmp_path / "server" / "secret.mp3", music(3.0, seed=9))


def hostile_files(tmp_path: Path, secret: Path) -> dict[str, Path]:
    uploads = tmp_path / "uploads"
    uploads.mkdir(exist_ok=True)
    contents = {
        "hls-file-url": ("song.mp3", hls(f"file://{secret}")),
        "hls-relative": ("relative.mp3", hls("../server/secret.mp3")),
        "hls-live": ("live.mp3", hls("../server/secret.mp3", ended=False)),
        "hls-absolute-path": ("abs.m4a", hls(str(secret))),
        "ffconcat": ("list.mp3", f"ffconcat version 1.0\nfile '{secret}'\n"),
        "sdp": ("stream.wav", "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n"),
        "dash": ("clip.mp4", '<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static">'
                             f'<Period><AdaptationSet><Representation id="1"><BaseURL>file://{secret}</BaseURL>'
                             '</Representation></AdaptationSet></Period></MPD>'),
    }
    files = {}
    for name, (filename, text) in contents.items():
        files[name] = uploads / filename
        files[name].write_text(text)
    return files


KINDS = ["hls-file-url", "hls-relative", "hls-live", "hls-absolute-path", "ffconcat", "sdp", "dash"]


@pytest.mark.parametrize("kind", KINDS)
def test_probe_refuses_what_names_other_files(tmp_path, secret, kind):
    path = hostile_files(tmp_path, secret)[kind]
    started = time.monotonic()
    with pytest.raises(InputError) as refused:
        audio_io.probe(path)
    assert time.monotonic() - started < 5
    assert "\n" not in str(refused.value)
    if kind.startswith("hls"):
        assert str(refused.value) == audio_io.PLAYLIST


@pytest.mark.parametrize("kind", KINDS)
def test_cli_refuses_hostile_files_fast_with_one_line(tmp_path, secret, cli_env, kind):
    path = hostile_files(tmp_path, secret)[kind]
    out = tmp_path / "out"
    started = time.monotonic()
    proc = subprocess.run([stembot_exe(), "separate", str(path), "--out", str(out)], env=cli_env,
                          capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert elapsed < 10, f"{kind}: answered after {elapsed:.1f} s"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_file_named_like_a_protocol_is_just_that_file(tmp_path, secret):
    """`concat:a|b` or `subfile,,start,…:` in a name must not be read as ffmpeg's protocols."""
    own = music(2.0, seed=4, level=0.5)
    for name in ("concat:secret.mp3|secret.mp3", "subfile,,start,0,end,0,,:x.wav"):
        # Written under a plain name: ffmpeg's own CLI would misread this one too.
        path = write_audio(tmp_path / "plain.wav", own).rename(tmp_path / name)
        decoded = audio_io.decode(path, 60).samples
        assert decoded.shape == own.shape
        np.testing.assert_allclose(decoded, own, atol=1e-4)


def test_real_containers_are_all_allowed(tmp_path):
    for suffix, args in {
        "mp3": (), "m4a": ("-c:a", "aac"), "ogg": ("-c:a", "libopus"), "webm": ("-c:a", "libopus"),
        "flac": (), "wav": (), "mka": (), "aiff": (), "wma": ("-c:a", "wmav2"), "mkv": ("-c:a", "aac"),
        "ts": ("-c:a", "aac"),
    }.items():
        path = write_audio(tmp_path / f"song.{suffix}", music(1.0), extra_args=args)
        info = audio_io.probe(path)
        assert media_input.is_allowed_format(info["format"]["format_name"]), suffix


@pytest.mark.parametrize("link", ["ftp://example.com/song.mp3", "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO"])
def test_cli_refuses_links_that_are_not_http(tmp_path, cli_env, link):
    proc = subprocess.run([stembot_exe(), "separate", link, "--out", str(tmp_path / "out")], env=cli_env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip() == "stembot: Only http(s) links are supported."


def test_ffmpeg_downloads_open_only_web_media(tmp_path, http_server):
    """The options yt-dlp gives an ffmpeg download: an SDP answer (RTP/UDP past the guard) is refused."""
    root, base = http_server
    (root / "stream.mp3").write_text("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n")
    write_audio(root / "song.mp3", music(1.0))

    def download(name: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ffmpeg", "-v", "error", "-y", *media_input.network_input_args(), "-i", f"{base}/{name}",
                               "-c", "copy", str(tmp_path / f"got-{name}")], capture_output=True, text=True, timeout=30)

    refused = download("stream.mp3")
    assert refused.returncode != 0 and "not on whitelist" in refused.stderr
    assert download("song.mp3").returncode == 0
