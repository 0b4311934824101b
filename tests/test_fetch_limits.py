"""Links that never end: live streams are refused, and the byte cap, the duration cap and the job deadline hold
whatever downloader yt-dlp picks (its own, or ffmpeg) — real yt-dlp and ffmpeg against local servers."""

from __future__ import annotations

import http.server
import ipaddress
import subprocess
import threading
import time
from pathlib import Path

import pytest

from bot.requests import LinkSource, UserIdentity
from bot.service import SeparationService
from separation_worker.contract.errors import InputError
from separation_worker.fetch import LIVE, fetch
from separation_worker.job_runner import TIMED_OUT
from stembot.settings import Settings
from tests.service_support import RedisDb, flush_test_redis, service_env, start_worker

SEGMENTS = 30  # one-second HLS segments of ~270 kB (video at a constant 2 Mbit/s, plus AAC audio)
MB = 1024 * 1024
REDIS_DB = RedisDb.FETCH_LIMITS


@pytest.fixture(scope="module")
def segments(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hls")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi",
         "-i", "sine=f=440:r=44100", "-t", str(SEGMENTS), "-c:v", "mpeg2video", "-b:v", "2M", "-minrate", "2M",
         "-maxrate", "2M", "-bufsize", "500k", "-g", "25", "-c:a", "aac", "-b:a", "128k", "-f", "hls",
         "-hls_time", "1", "-hls_list_size", "0", "-hls_segment_filename", str(root / "seg%d.ts"),
         str(root / "vod.m3u8")],
        check=True,
    )
    return root


def playlist(first: int, last: int, ended: bool, base: str = "", extra: str = "") -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", f"#EXT-X-MEDIA-SEQUENCE:{first}", extra]
    for n in range(first, last + 1):
        lines += ["#EXTINF:1.000000,", f"{base}seg{n % SEGMENTS}.ts"]
    return ("\n".join(line for line in lines if line) + ("\n#EXT-X-ENDLIST\n" if ended else "\n")).encode()


class StreamServer:
    """Local streams that never end.

    /live.m3u8    a live HLS playlist (no #EXT-X-ENDLIST): a window of segments that gains one a second.
    /lying.m3u8   a finished 2-second playlist to yt-dlp (with a key method its native HLS downloader leaves to
                  ffmpeg), but the live playlist to ffmpeg (told apart by the Icy-MetaData header ffmpeg sends):
                  an ffmpeg download that live detection can't see coming.
    /elsewhere.m3u8  like /lying.m3u8 to yt-dlp; to ffmpeg, a finished playlist of segments at `segment_base`.
    /endless.mp3  a response with no length that never ends (trickled, `rate` bytes a second).
    """

    def __init__(self, root: Path, host: str = "127.0.0.1", rate: int = 64 * 1024, segment_base: str = ""):
        self.root, self.rate, self.segment_base = root, rate, segment_base
        self.started = time.monotonic()
        self.requests: list[tuple[str, bool]] = []  # (path, from ffmpeg)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                by_ffmpeg = "icy-metadata" in {k.lower() for k in self.headers}
                outer.requests.append((self.path, by_ffmpeg))
                path = self.path.split("?")[0]
                if path == "/endless.mp3":
                    return outer.endless(self)
                if path.startswith("/seg"):
                    file = outer.root / path.lstrip("/")
                    return outer.send(self, file.read_bytes() if file.is_file() else None, "video/mp2t")
                body = outer.playlist(path, by_ffmpeg)
                outer.send(self, body, "application/vnd.apple.mpegurl")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def live_window(self) -> tuple[int, int]:
        newest = 3 + int(time.monotonic() - self.started)
        return max(0, newest - 4), newest

    def playlist(self, path: str, by_ffmpeg: bool) -> bytes | None:
        if path == "/live.m3u8" or (path == "/lying.m3u8" and by_ffmpeg):
            return playlist(*self.live_window(), ended=False)
        if path == "/elsewhere.m3u8" and by_ffmpeg:
            return playlist(0, 3, ended=True, base=self.segment_base)
        if path in {"/lying.m3u8", "/elsewhere.m3u8"}:
            return playlist(0, 1, ended=True, extra='#EXT-X-KEY:METHOD=SAMPLE-AES,URI="key.bin",IV=0x0')
        return None

    @staticmethod
    def send(handler: http.server.BaseHTTPRequestHandler, body: bytes | None, content_type: str) -> None:
        handler.send_response(200 if body is not None else 404)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body or b"")))
        handler.end_headers()
        handler.wfile.write(body or b"")

    def endless(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "audio/mpeg")
        handler.send_header("Connection", "close")  # no length: the body ends when the connection does (never)
        handler.end_headers()
        frame = b"\xff\xfb\x90\x64" + bytes(413)  # an MPEG-1 Layer III frame header, then silence
        chunk = frame * max(1, self.rate // 10 // len(frame))
        try:
            while True:
                handler.wfile.write(chunk)
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def streams(segments):
    server = StreamServer(segments)
    yield server
    server.close()


def only(server: StreamServer):
    """A test policy: the stream server stands in for 'the internet'; every other address is 'private'."""
    port = int(server.base.rsplit(":", 1)[1])
    return lambda address, p: address == ipaddress.ip_address("127.0.0.1") and p == port


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (an ffmpeg writing into a download folder)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


def deadline_after(seconds: float):
    """A progress callback like the job runner's: it raises once the job's time is up."""
    end = time.monotonic() + seconds

    def progress(fraction: float) -> None:
        if time.monotonic() > end:
            raise TimeoutError("job deadline")

    return progress


def assert_nothing_left(dest: Path) -> None:
    assert not any(dest.glob("source.*")), list(dest.iterdir())
    assert not processes_mentioning(str(dest)), "a download process outlived fetch()"


def test_live_stream_is_refused_before_download(tmp_path, streams):
    started = time.monotonic()
    with pytest.raises(InputError, match="live stream"):
        fetch(f"{streams.base}/live.m3u8", tmp_path / "dl", 300 * 1024, 600, egress_policy=only(streams))
    assert time.monotonic() - started < 10
    assert not [path for path, _ in streams.requests if path.startswith("/seg")], "a segment was downloaded"
    assert_nothing_left(tmp_path / "dl")


def test_ffmpeg_download_is_held_to_the_byte_cap(tmp_path, streams):
    started = time.monotonic()
    with pytest.raises(InputError, match="larger than the 300 kB limit"):
        fetch(f"{streams.base}/lying.m3u8", tmp_path / "dl", 300 * 1024, 600, egress_policy=only(streams))
    elapsed = time.monotonic() - started
    assert any(by_ffmpeg for _, by_ffmpeg in streams.requests), "yt-dlp didn't hand this one to ffmpeg"
    assert elapsed < 10, elapsed
    assert_nothing_left(tmp_path / "dl")
    print(f"\nffmpeg download past a 300 kB cap ended in {elapsed:.1f} s")


def test_ffmpeg_download_is_held_to_the_job_deadline(tmp_path, streams):
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        fetch(f"{streams.base}/lying.m3u8", tmp_path / "dl", 100 * MB, 600, progress=deadline_after(4),
              egress_policy=only(streams))
    elapsed = time.monotonic() - started
    assert any(by_ffmpeg for _, by_ffmpeg in streams.requests), "yt-dlp didn't hand this one to ffmpeg"
    assert elapsed < 7, elapsed
    assert_nothing_left(tmp_path / "dl")
    print(f"\nffmpeg download with a 4 s deadline ended in {elapsed:.1f} s")


def test_ffmpeg_download_stops_past_the_duration_cap(tmp_path, streams):
    from separation_worker.audio_io import decode, probe

    media = fetch(f"{streams.base}/lying.m3u8", tmp_path / "dl", 100 * MB, 2, egress_policy=only(streams))
    duration = float(probe(media.path)["format"]["duration"])
    assert 3 < duration < 5, duration  # stopped just past the cap, so that decoding refuses it
    with pytest.raises(InputError, match="the limit is 0:02"):
        decode(media.path, 2)


def test_endless_response_is_held_to_the_byte_cap(tmp_path, streams):
    streams.rate = 2 * MB
    with pytest.raises(InputError, match="larger than the 300 kB limit"):
        fetch(f"{streams.base}/endless.mp3", tmp_path / "dl", 300 * 1024, 600, egress_policy=only(streams))
    assert_nothing_left(tmp_path / "dl")


def test_endless_trickle_is_held_to_the_job_deadline(tmp_path, streams):
    streams.rate = 16 * 1024  # never reaches the cap, never ends, never says how long it is
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        fetch(f"{streams.base}/endless.mp3", tmp_path / "dl", 100 * MB, 600, progress=deadline_after(2),
              egress_policy=only(streams))
    assert time.monotonic() - started < 6
    assert_nothing_left(tmp_path / "dl")


def test_no_proxy_does_not_let_ffmpeg_past_the_guard(tmp_path, segments, monkeypatch):
    """With NO_PROXY naming the segments' address, ffmpeg used to fetch them directly, past the guard."""
    elsewhere = StreamServer(segments, host="127.0.0.2")  # 'private': the test policy allows only 127.0.0.1
    server = StreamServer(segments, segment_base=f"{elsewhere.base}/")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,127.0.0.2,localhost")
    try:
        with pytest.raises(InputError, match="private or local"):
            fetch(f"{server.base}/elsewhere.m3u8", tmp_path / "dl", 100 * MB, 600, progress=deadline_after(20),
                  egress_policy=only(server))
        assert any(by_ffmpeg for _, by_ffmpeg in server.requests)
        assert elsewhere.requests == []
    finally:
        server.close()
        elsewhere.close()
    assert_nothing_left(tmp_path / "dl")


def test_download_dies_with_the_process_that_watches_it(tmp_path, streams):
    """A worker SIGKILLed mid-download takes its download's ffmpeg with it (nobody else would stop it)."""
    import signal
    import sys

    # Without the egress guard: with it, ffmpeg would also stop when the guard's thread died with the process.
    script = (f"from separation_worker.fetch import fetch; fetch({streams.base + '/lying.m3u8'!r}, "
              f"__import__('pathlib').Path({str(tmp_path)!r}), 10**9, 600, allow_private=True)")
    watcher = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(100):
            if any(by_ffmpeg for _, by_ffmpeg in streams.requests):
                break
            time.sleep(0.1)
        assert processes_mentioning(streams.base + "/lying.m3u8"), "ffmpeg never started"
    finally:
        watcher.send_signal(signal.SIGKILL)
        watcher.wait()
    for _ in range(50):
        if not processes_mentioning(streams.base):
            break
        time.sleep(0.1)
    assert not processes_mentioning(streams.base), "the download outlived the process watching it"


async def test_jobs_with_endless_links_end_on_time_and_cost_nothing(tmp_path, model_dir, engine, streams):
    """The issue's measurement, end to end: a job limit and a 300 kB cap, through the queue and a worker."""
    await flush_test_redis(REDIS_DB)
    env = service_env(tmp_path / "data", model_dir, redis_db=REDIS_DB, STEMBOT_JOB_TIMEOUT_BASE_S=4,
                      STEMBOT_JOB_TIMEOUT_FACTOR=0, STEMBOT_MAX_ATTEMPTS=1)
    small_cap = Settings.from_env({**env, "STEMBOT_MAX_INPUT_BYTES": str(300 * 1024)})
    cases = [  # (settings, link, final message)
        (small_cap, "live.m3u8", LIVE),
        (small_cap, "lying.m3u8", "That file is larger than the 300 kB limit."),
        (Settings.from_env(env), "lying.m3u8", TIMED_OUT),
        (Settings.from_env(env), "endless.mp3", TIMED_OUT),
    ]
    for index, (settings, link, expected) in enumerate(cases):
        who = UserIdentity("telegram", str(9100 + index))
        async with await SeparationService.start(settings) as service:
            worker = await start_worker(settings, engine)
            started = time.monotonic()
            try:
                handle = await service.submit(who, LinkSource(f"{streams.base}/{link}"))
                async for event in service.watch(handle.job_id):
                    if event.terminal:
                        break
            finally:
                await worker.stop()
            elapsed = time.monotonic() - started
            assert (event.state, event.message) == ("failed", expected), link
            assert elapsed < 12, (link, elapsed)
            assert (await service.quota(who)).used == 0
            assert not service.files.job_dir(handle.job_id).exists()
            print(f"\n{link} with a 4 s job limit: {expected!r} after {elapsed:.1f} s")
    assert not processes_mentioning(streams.base), "a download process outlived its job"
