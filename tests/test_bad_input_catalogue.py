"""The bad-input catalogue: every hostile or broken input gets its exact friendly message, costs no quota
and leaves no file behind; the odd-but-valid ones are accepted."""

import http.server
import io
import struct
import subprocess
import threading
import zipfile

import numpy as np
import pytest
import soundfile

from bot.requests import JobHandle, LinkSource, Refusal, UploadSource, UserIdentity
from bot.service import SeparationService
from stembot.settings import Settings
from tests.conftest import SR, music, write_audio
from tests.service_support import RedisDb, flush_test_redis, service_env, start_worker

REDIS_DB = RedisDb.CATALOGUE
NOT_READABLE = "That file isn't audio or video I can read."
NO_AUDIO = "That file has no audio track."
PRIVATE = "That link points to a private or local address, which I can't fetch."
PLAYLIST = "That file is a playlist, not a song: send the audio or video file itself."
ACCEPTED = "accepted"


def ffmpeg(tmp, name, *args):
    path = tmp / name
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args, str(path)], check=True)
    return path.read_bytes()


def zip_bytes():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("song.txt", "not a song")
    return buffer.getvalue()


def lying_wav():
    """A WAV whose header claims hours of audio but holds one second."""
    header = b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 2, SR, SR * 4, 4, 16)
    return header + b"data" + struct.pack("<I", 0xFFFFFF00) + bytes(SR * 4)


def hls_playlist(segment, ended=True):
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:10", "#EXTINF:2.0,", segment] + (["#EXT-X-ENDLIST"] if ended else [])
    return ("\n".join(lines) + "\n").encode()


def nan_wav(tmp):
    x = np.sin(np.arange(SR * 2) / 10).astype("<f4")
    x[1000], x[2000] = np.nan, np.inf
    soundfile.write(tmp / "nan.wav", np.stack([x, x], 1), SR, subtype="FLOAT")
    return (tmp / "nan.wav").read_bytes()


def uploads(tmp):
    song = write_audio(tmp / "song.mp3", music(2.0, level=0.4)).read_bytes()
    return [
        ("empty file", "empty.mp3", b"", "That file is empty."),
        ("text named .mp3", "notes.mp3", b"this is not audio\n" * 200, NOT_READABLE),
        ("truncated mp3", "cut.mp3", song[:400], NOT_READABLE),
        ("wav header claiming hours", "liar.wav", lying_wav(), ACCEPTED),
        ("3-hour silent file", "silence.flac", ffmpeg(tmp, "silence.flac", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "10800"),
         "That song is 3:00:00 long; the limit is 10:00 (longer for Pro: /pro)."),
        ("6-channel audio", "six.wav", ffmpeg(tmp, "six.wav", "-f", "lavfi", "-i", "sine=440:duration=2", "-ac", "6"), ACCEPTED),
        ("8 kHz mono", "mono8k.wav", ffmpeg(tmp, "mono8k.wav", "-f", "lavfi", "-i", "sine=440:duration=2:sample_rate=8000"), ACCEPTED),
        ("192 kHz", "hi.wav", ffmpeg(tmp, "hi.wav", "-f", "lavfi", "-i", "sine=440:duration=2:sample_rate=192000"), ACCEPTED),
        ("float wav with NaN/Inf", "nan.wav", nan_wav(tmp), "That file's audio is damaged (it decodes to invalid samples)."),
        ("video without audio", "silent.mp4", ffmpeg(tmp, "silent.mp4", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=1", "-c:v", "mpeg4"), NO_AUDIO),
        ("video with audio", "clip.mp4", ffmpeg(tmp, "clip.mp4", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=2", "-f", "lavfi", "-i", "sine=330:duration=2",
                                                "-shortest", "-c:v", "mpeg4", "-c:a", "aac"), ACCEPTED),
        ("image", "cover.png", ffmpeg(tmp, "cover.png", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=1:duration=1", "-frames:v", "1"), NO_AUDIO),
        ("zip", "album.zip", zip_bytes(), NOT_READABLE),
        ("HLS playlist naming a server file", "song.mp3", hls_playlist(f"file://{tmp / 'song.mp3'}"), PLAYLIST),
        ("live HLS playlist", "live.mp3", hls_playlist("../song.mp3", ended=False), PLAYLIST),
        ("ffconcat list", "list.mp3", f"ffconcat version 1.0\nfile '{tmp / 'song.mp3'}'\n".encode(), PLAYLIST),
        ("long name with separators and unicode", "../../etc/" + "ßöñg🎵" * 60 + "\\x/y.mp3", song, ACCEPTED),
    ]


class HostileHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files, a playlist page, a 2 GB download, and redirects."""

    def do_GET(self):
        if self.path == "/huge.mp3":
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.send_header("Content-Length", str(2 * 1024**3))
            self.end_headers()
            self.wfile.write(b"\xff\xfb" * 4096)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    for name in ("a.mp3", "b.mp3"):
        write_audio(root / name, music(1.0))
    (root / "album.html").write_text('<html><audio src="a.mp3"></audio><audio src="b.mp3"></audio></html>')
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: HostileHandler(*a, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def links(base):
    return [
        ("playlist link", f"{base}/album.html", "That link is a playlist; send a link to a single song.", True),
        ("404 link", f"{base}/missing.mp3", "That link leads nowhere (the page was not found).", True),
        ("2 GB download", f"{base}/huge.mp3", "That file is larger than the 500 MB limit.", True),
        ("not http", "ftp://example.com/song.mp3",
         "That doesn't look like a link I can open. Send an http(s) link or an audio file.", True),
        ("private-IP link", "http://10.0.0.7/song.mp3", PRIVATE, False),
        ("redirect to cloud metadata", f"{base}/to?u=http://169.254.169.254/latest/", PRIVATE, False),
        ("loopback Redis port", "http://127.0.0.1:6379/", PRIVATE, False),
        ("unresolvable host", "http://no-such-host.invalid/song.mp3", "I couldn't find that website; check the link.", False),
    ]


async def outcome_of(service, who, source):
    """The message the user ends up with: a refusal now, or the job's final state."""
    result = await service.submit(who, source)
    if isinstance(result, Refusal):
        return result.message, None
    assert isinstance(result, JobHandle)
    async for event in service.watch(result.job_id):
        if event.terminal:
            return (ACCEPTED if event.state == "done" else event.message), result.job_id
    raise AssertionError("watch ended early")


async def test_catalogue(tmp_path, model_dir, quick_engine, hostile_server):
    await flush_test_redis(REDIS_DB)
    test_settings = Settings.from_env(service_env(tmp_path / "data", model_dir, redis_db=REDIS_DB))
    production = test_settings.replace(allow_private_urls=False)
    rows = [(name, UploadSource(filename, data=data), expected, True) for name, filename, data, expected in uploads(tmp_path)]
    rows += [(name, LinkSource(url), expected, local) for name, url, expected, local in links(hostile_server)]
    assert len(rows) >= 20

    service = await SeparationService.start(test_settings)
    strict = await SeparationService.start(production)
    worker = await start_worker(test_settings, quick_engine)
    failures = []
    try:
        for index, (name, source, expected, local) in enumerate(rows):
            who = UserIdentity("telegram", str(5000 + index))
            message, job_id = await outcome_of(service if local else strict, who, source)
            quota = await service.quota(who)
            if message != expected:
                failures.append(f"{name}: got {message!r}, expected {expected!r}")
            if expected == ACCEPTED:
                assert quota.used == 1, name
                stored = service.files.list_files(job_id)
                assert not any(n.startswith("incoming/") for n in stored) and "result.json" in stored, name
            else:
                assert quota.used == 0, f"{name}: charged"
                if job_id is not None:
                    assert not service.files.job_dir(job_id).exists(), f"{name}: files left behind"
    finally:
        await worker.stop()
        await service.close()
        await strict.close()
    # Nothing anywhere in the store but the accepted jobs' folders.
    assert not failures, "\n".join(failures)
