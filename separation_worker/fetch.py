"""Fetching a song from a link with yt-dlp: one item only, size-, duration- and time-capped.

yt-dlp runs in a child process of its own session, watched from here. yt-dlp hands some streams to ffmpeg
(live HLS always; HLS its own downloader can't handle), and an ffmpeg download calls none of yt-dlp's
progress hooks: the hooks can't enforce the byte cap or the job deadline there, and killing yt-dlp alone
would leave ffmpeg recording. So the watchdog here measures the bytes on disk itself, calls `progress`
on a clock (the job runner checks its deadline there), and on any limit kills the download's whole
process group — yt-dlp and every ffmpeg it started.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

from . import media_input
from .contract import messages
from .contract.errors import InputError
from .contract.messages import LIVE, NOT_A_LINK, NOT_HTTP, PRIVATE_ADDRESS, UPCOMING
from .egress_guard import EgressGuard, Policy, public_only

SOCKET_TIMEOUT_S = 20
WATCH_INTERVAL_S = 0.1  # how often the watchdog measures the download
PROGRESS_INTERVAL_S = 1.0  # `progress` is called at least this often while downloading
# http(s) formats only (HLS and DASH included): rtmp/rtsp/mms would be fetched by helper programs the
# egress guard can't see, and data:/ftp: links are not what a song link should be.
FORMAT = "bestaudio[protocol^=http]/bestaudio[protocol^=m3u8]/best[protocol^=http]/best[protocol^=m3u8]"


@dataclass(frozen=True)
class FetchedMedia:
    path: Path
    title: str
    url: str
    from_page: bool  # found by a site's extractor (its title beats the file's tags), not a direct link
    # What the site's metadata names (yt-dlp's `artist`/`artists` and `track`, e.g. YouTube Music), if anything.
    artist: str | None = None
    track: str | None = None


@dataclass(frozen=True)
class _Job:
    """What the download child is asked to do (sent to it as JSON)."""

    url: str
    dest_dir: str
    max_bytes: int
    max_duration_seconds: float
    proxy: str | None


class _TooLarge(Exception):
    pass


def is_url(text: str) -> bool:
    return urlparse(str(text)).scheme.lower() in {"http", "https"}


def fetch(
    url: str,
    dest_dir: Path,
    max_bytes: int,
    max_duration_seconds: float,
    progress: Callable[[float], None] | None = None,
    allow_private: bool = False,
    egress_policy: Policy | None = None,
) -> FetchedMedia:
    """Download the single media item at `url` into `dest_dir`; InputError for anything a user got wrong.

    Live and upcoming streams are refused before anything is downloaded. `progress(fraction)` is called
    at least once a second while downloading; if it raises (a job deadline, a cancellation), the download
    is killed, its files removed, and the exception propagates.
    Unless `allow_private`, every connection (redirects included, ffmpeg's too) goes through an EgressGuard
    that refuses private destinations when it connects; `egress_policy` replaces its policy (tests).
    """
    parsed = urlparse(url)
    if parsed.scheme.lower() not in {"http", "https"} or not parsed.hostname:
        raise InputError(NOT_A_LINK)
    job = _Job(url, str(dest_dir), max_bytes, max_duration_seconds, None)
    policy = egress_policy or (None if allow_private else public_only)
    if policy is None:
        return _watch(job, progress)
    port = parsed.port or (443 if parsed.scheme.lower() == "https" else 80)
    refuse_private_host(parsed.hostname, policy, port)  # fail fast with a clear message
    with EgressGuard(policy) as guard:
        try:
            return _watch(_Job(**{**asdict(job), "proxy": guard.url}), progress)
        except InputError:
            if guard.refused:
                raise InputError(PRIVATE_ADDRESS) from None
            raise


def refuse_private_host(hostname: str, policy: Policy = public_only, port: int = 443) -> None:
    """InputError unless every address `hostname` resolves to passes `policy` (by default: public addresses only)."""
    try:
        infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise InputError(messages.UNKNOWN_HOST) from None
    for info in infos:
        if not policy(ipaddress.ip_address(str(info[4][0]).split("%")[0]), port):
            raise InputError(PRIVATE_ADDRESS)


# --- the watchdog (this process) ---------------------------------------------------------------------------


_CHILD_ENV = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TMPDIR", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "VIRTUAL_ENV"})
_PROJECT_ROOT = str(Path(__file__).resolve().parents[1])


def _watch(job: _Job, progress: Callable[[float], None] | None) -> FetchedMedia:
    """Run the download child and hold it to the byte cap and to `progress` (which may raise)."""
    dest_dir = Path(job.dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    # The child (yt-dlp, ffmpeg, code from a site's extractor) sees none of our secrets: only what it
    # needs to run. With the guard, no proxy settings either: yt-dlp gives ffmpeg the guard as
    # http_proxy, but ffmpeg would still honour no_proxy (and go straight to 127.0.0.1, say).
    env = {k: v for k, v in os.environ.items() if k in _CHILD_ENV or k.startswith("LC_")}
    if not job.proxy:
        env.update({k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PROJECT_ROOT, os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryFile() as log, subprocess.Popen(
        [sys.executable, "-m", __name__],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
        start_new_session=True,  # its own process group: one kill ends it and every ffmpeg it starts
    ) as child:
        try:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(json.dumps(asdict(job)).encode() + b"\n")
            child.stdin.flush()  # and kept open: it is the child's lifeline (see _child_main)
            outcome = _supervise(child.stdout, job.max_bytes, dest_dir, progress)
        except BaseException:
            _kill_group(child)  # first, so that nothing writes after the clean-up
            _remove_partial(dest_dir)
            raise
        finally:
            _kill_group(child)
        if outcome is None:
            _remove_partial(dest_dir)
            log.seek(0)
            tail = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the download process failed (exit {child.returncode}): {tail}")
    if "refused" in outcome:
        _remove_partial(dest_dir)
        raise InputError(outcome["refused"])
    media = FetchedMedia(**{**outcome["done"], "path": Path(outcome["done"]["path"])})
    if media.path.stat().st_size > job.max_bytes:  # finished between two measurements
        _remove_partial(dest_dir)
        raise InputError(_too_large(job.max_bytes))
    return media


def _supervise(
    channel: IO[bytes], max_bytes: int, dest_dir: Path, progress: Callable[[float], None] | None
) -> dict | None:
    """Follow the child's messages until it is done; InputError past the byte cap. The child's outcome, if any."""
    lines: queue.Queue[bytes | None] = queue.Queue()

    def read() -> None:
        with contextlib.suppress(ValueError, OSError):  # closed under us once the child is gone
            for line in channel:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=read, name="fetch-reader", daemon=True).start()
    outcome, fraction, reported, last_report = None, 0.0, -1.0, 0.0
    while True:
        try:
            line = lines.get(timeout=WATCH_INTERVAL_S)
        except queue.Empty:
            line = b""
        if line is None:
            return outcome
        if line.strip():
            message = json.loads(line)
            if "fraction" in message:
                fraction = message["fraction"]
            else:
                outcome = message
        if _bytes_on_disk(dest_dir) > max_bytes:
            raise InputError(_too_large(max_bytes))
        now = time.monotonic()
        if progress and (fraction != reported or now - last_report >= PROGRESS_INTERVAL_S):
            progress(fraction)
            reported, last_report = fraction, now


def _bytes_on_disk(dest_dir: Path) -> int:
    total = 0
    for path in dest_dir.glob("source.*"):  # the output, its .part and HLS/DASH fragments
        try:
            total += path.stat().st_size
        except FileNotFoundError:  # renamed or deleted meanwhile
            pass
    return total


def _kill_group(child: subprocess.Popen) -> None:
    """SIGKILL the child's process group, then reap the child (once; later calls do nothing)."""
    if child.returncode is not None:
        return
    # Until the child is reaped its pid can't be reused, so the group id still names our group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _remove_partial(dest_dir: Path) -> None:
    for leftover in dest_dir.glob("source.*"):
        leftover.unlink(missing_ok=True)


_too_large = messages.too_large


# --- the download child (python -m separation_worker.fetch) ------------------------------------------------


def _child_main() -> None:
    """Read a _Job on stdin; write {"fraction": f} lines, then {"done": media} or {"refused": message}."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)  # not inherited by ffmpeg
    os.dup2(2, 1)  # anything else printed goes to the log, not into the messages

    def send(message: dict) -> None:
        channel.write(json.dumps(message) + "\n")

    def end_with_parent() -> None:
        # stdin reaches end-of-file when the watchdog's process dies (a worker SIGKILLed mid-download):
        # then nobody would stop ffmpeg, so the whole group goes.
        sys.stdin.read()
        os.killpg(0, signal.SIGKILL)

    job = _Job(**json.loads(sys.stdin.readline()))
    threading.Thread(target=end_with_parent, daemon=True).start()
    try:
        media = _download(job, lambda fraction: send({"fraction": fraction}))
        send({"done": {**asdict(media), "path": str(media.path)}})
    except InputError as exc:
        send({"refused": str(exc)})


def _download(job: _Job, on_fraction: Callable[[float], None]) -> FetchedMedia:
    import yt_dlp
    from yt_dlp.utils import DownloadError, YoutubeDLError

    dest_dir = Path(job.dest_dir)
    sent = [0.0]

    def hook(status: dict) -> None:
        downloaded = status.get("downloaded_bytes") or 0
        if downloaded > job.max_bytes or (status.get("total_bytes") or 0) > job.max_bytes:
            # max_filesize only works with a Content-Length header; this enforces the cap while streaming.
            raise _TooLarge()
        total = status.get("total_bytes") or status.get("total_bytes_estimate")
        if total and min(1.0, downloaded / total) - sent[0] >= 0.01:
            sent[0] = min(1.0, downloaded / total)
            on_fraction(sent[0])

    def refuse(info: dict, *, incomplete: bool = False) -> None:
        """yt-dlp's match_filter: called with the complete info just before each download starts."""
        live_status = info.get("live_status")
        if live_status == "is_upcoming":
            raise InputError(UPCOMING)
        if info.get("is_live") or live_status == "is_live":
            raise InputError(LIVE)
        duration = info.get("duration")
        if duration and duration > job.max_duration_seconds + 1:
            raise InputError(messages.too_long(duration, job.max_duration_seconds))

    options = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        "format": FORMAT,
        "outtmpl": str(dest_dir / "source.%(ext)s"),
        "socket_timeout": SOCKET_TIMEOUT_S,
        "retries": 2,
        "progress_hooks": [hook],
        "match_filter": refuse,
        "logger": _SilentLogger(),
        "overwrites": True,
        "cachedir": False,
        # Native HLS/DASH downloads where yt-dlp can (ffmpeg only where it must).
        "hls_prefer_native": True,
        "external_downloader": {},
        # An ffmpeg download opens only the web (through the guard) as a real container or HLS/DASH,
        # and stops just past the duration cap (decoding then refuses it as too long).
        "external_downloader_args": {
            "ffmpeg_i": media_input.network_input_args(),
            "ffmpeg_o": ["-t", str(int(job.max_duration_seconds) + 2)],
        },
        # No fixup pass: it would run ffprobe/ffmpeg unguarded on the download (and double its bytes on
        # disk mid-cap); decoding reads the file as it is, through media_input.
        "fixup": "never",
    }
    if job.proxy:
        options["proxy"] = job.proxy
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(job.url, download=False, process=False)
            if info is None:
                raise InputError(messages.NO_MEDIA)
            if info.get("_type") in {"playlist", "multi_video"}:
                raise InputError(messages.PLAYLIST_LINK)
            refuse(info)
            processed = ydl.process_ie_result(info, download=True)
    except _TooLarge:
        raise InputError(_too_large(job.max_bytes)) from None
    except YoutubeDLError as exc:  # DownloadError, ExtractorError, networking errors: all about the link
        cause = getattr(exc, "exc_info", None) if isinstance(exc, DownloadError) else None
        if cause and isinstance(cause[1], InputError):
            raise cause[1] from None
        if cause and isinstance(cause[1], _TooLarge) or "_TooLarge" in str(exc):
            raise InputError(_too_large(job.max_bytes)) from None
        raise InputError(_friendly_download_error(str(exc))) from None
    files = [p for p in dest_dir.glob("source.*") if not p.name.endswith((".part", ".ytdl"))]
    if not files:
        raise InputError(messages.NOTHING_DOWNLOADED)
    title = (processed or {}).get("title") or info.get("title") or Path(urlparse(job.url).path).stem or "song"
    extractor = str((processed or {}).get("extractor") or info.get("extractor") or "generic")
    artist, track = _song_names({**info, **(processed or {})})
    return FetchedMedia(path=files[0], title=str(title), url=job.url, from_page=extractor.lower() != "generic",
                        artist=artist, track=track)


def _song_names(info: dict) -> tuple[str | None, str | None]:
    """(artist, track) where the site names the song itself; a page title alone names neither."""
    artists = info.get("artists")
    if not isinstance(artists, list):
        artists = []
    artist = str(info.get("artist") or ", ".join(str(a) for a in artists if a)).strip()
    track = str(info.get("track") or "").strip()
    return artist or None, track or None


def _friendly_download_error(message: str) -> str:
    lowered = message.lower()
    if "unsupported url scheme" in lowered or "no connection adapters" in lowered or "file:// urls" in lowered:
        return NOT_HTTP  # a redirect or a page pointing at ftp:, file:, gopher: ...
    if "unsupported url" in lowered:
        return messages.UNSUPPORTED_SITE
    if "404" in lowered or "not found" in lowered:
        return messages.NOT_FOUND
    if "will begin in" in lowered or "premieres in" in lowered:
        return UPCOMING
    if "private" in lowered or "sign in" in lowered or "login" in lowered:
        return messages.PRIVATE_MEDIA
    if "timed out" in lowered or "connection" in lowered or "resolve" in lowered:
        return messages.UNREACHABLE
    return messages.DOWNLOAD_FAILED


class _SilentLogger:
    """yt-dlp would otherwise print to stderr; failures surface as exceptions instead."""

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        pass


if __name__ == "__main__":
    _child_main()
