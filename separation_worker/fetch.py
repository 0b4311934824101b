"""Fetching a song from a link with yt-dlp: one item only, size- and duration-capped."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from .egress_guard import EgressGuard, Policy, public_only
from .audio_io import too_long_message
from .errors import InputError

SOCKET_TIMEOUT_S = 20
PRIVATE_ADDRESS = "That link points to a private or local address, which I can't fetch."


@dataclass(frozen=True)
class FetchedMedia:
    path: Path
    title: str
    url: str
    from_page: bool  # found by a site's extractor (its title beats the file's tags), not a direct link


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

    Unless `allow_private`, every connection (redirects included) goes through an EgressGuard that
    refuses private destinations when it connects; `egress_policy` replaces its policy (tests).
    """
    parsed = urlparse(url)
    if parsed.scheme.lower() not in {"http", "https"} or not parsed.hostname:
        raise InputError("Only http(s) links are supported.")
    policy = egress_policy or (None if allow_private else public_only)
    if policy is None:
        return _fetch(url, dest_dir, max_bytes, max_duration_seconds, progress, None)
    port = parsed.port or (443 if parsed.scheme.lower() == "https" else 80)
    refuse_private_host(parsed.hostname, policy, port)  # fail fast with a clear message
    with EgressGuard(policy) as guard:
        try:
            return _fetch(url, dest_dir, max_bytes, max_duration_seconds, progress, guard.url)
        except InputError:
            if guard.refused:
                raise InputError(PRIVATE_ADDRESS) from None
            raise


def _fetch(
    url: str,
    dest_dir: Path,
    max_bytes: int,
    max_duration_seconds: float,
    progress: Callable[[float], None] | None,
    proxy: str | None,
) -> FetchedMedia:
    import yt_dlp
    from yt_dlp.utils import DownloadError

    dest_dir.mkdir(parents=True, exist_ok=True)

    def hook(status: dict) -> None:
        downloaded = status.get("downloaded_bytes") or 0
        if downloaded > max_bytes or (status.get("total_bytes") or 0) > max_bytes:
            # max_filesize only works with a Content-Length header; this enforces the cap while streaming.
            raise _TooLarge()
        total = status.get("total_bytes") or status.get("total_bytes_estimate")
        if progress and total:
            progress(min(1.0, downloaded / total))

    options = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        # http(s) formats only: rtmp/rtsp would be fetched by helper programs the egress guard can't see.
        "format": "bestaudio[protocol!*=rtmp][protocol!*=rtsp]/best[protocol!*=rtmp][protocol!*=rtsp]",
        "outtmpl": str(dest_dir / "source.%(ext)s"),
        "socket_timeout": SOCKET_TIMEOUT_S,
        "retries": 2,
        "progress_hooks": [hook],
        "logger": _SilentLogger(),
        "overwrites": True,
        "cachedir": False,
        # Native HLS/DASH downloads: every request then goes through the egress guard (ffmpeg's wouldn't).
        "hls_prefer_native": True,
        "external_downloader": {},
    }
    if proxy:
        options["proxy"] = proxy
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=False, process=False)
            if info is None:
                raise InputError("I couldn't find any media at that link.")
            if info.get("_type") in {"playlist", "multi_video"}:
                raise InputError("That link is a playlist; send a link to a single song.")
            duration = info.get("duration")
            if duration and duration > max_duration_seconds + 1:
                raise InputError(too_long_message(duration, max_duration_seconds))
            processed = ydl.process_ie_result(info, download=True)
    except _TooLarge:
        _remove_partial(dest_dir)
        raise InputError(f"That file is larger than the {max_bytes // (1024 * 1024)} MB limit.") from None
    except DownloadError as exc:
        _remove_partial(dest_dir)
        if isinstance(getattr(exc, "exc_info", (None, None))[1], _TooLarge) or "_TooLarge" in str(exc):
            raise InputError(f"That file is larger than the {max_bytes // (1024 * 1024)} MB limit.") from None
        raise InputError(_friendly_download_error(str(exc))) from None
    files = [p for p in dest_dir.glob("source.*") if not p.name.endswith((".part", ".ytdl"))]
    if not files:
        raise InputError("I couldn't download anything from that link (it may be too large or unavailable).")
    title = (processed or {}).get("title") or info.get("title") or Path(urlparse(url).path).stem or "song"
    extractor = str((processed or {}).get("extractor") or info.get("extractor") or "generic")
    return FetchedMedia(path=files[0], title=str(title), url=url, from_page=extractor.lower() != "generic")


def refuse_private_host(hostname: str, policy: Policy = public_only, port: int = 443) -> None:
    """InputError unless every address `hostname` resolves to passes `policy` (by default: public addresses only)."""
    try:
        infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise InputError("I couldn't find that website; check the link.") from None
    for info in infos:
        if not policy(ipaddress.ip_address(info[4][0].split("%")[0]), port):
            raise InputError(PRIVATE_ADDRESS)


def _remove_partial(dest_dir: Path) -> None:
    for leftover in dest_dir.glob("source.*"):
        leftover.unlink(missing_ok=True)


def _friendly_download_error(message: str) -> str:
    lowered = message.lower()
    if "unsupported url" in lowered:
        return "I can't find a song at that link. Try a YouTube, SoundCloud or TikTok link, or a direct link to an audio file."
    if "404" in lowered or "not found" in lowered:
        return "That link leads nowhere (the page was not found)."
    if "private" in lowered or "sign in" in lowered or "login" in lowered:
        return "That video or track is private or needs a login."
    if "timed out" in lowered or "connection" in lowered or "resolve" in lowered:
        return "I couldn't reach that link; check it and try again."
    return "I couldn't download that link."


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
