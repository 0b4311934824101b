"""How ffprobe and ffmpeg may open media a user sent: that one local file, as one real container.

ffmpeg follows playlists: an "mp3" that is really an HLS playlist (or a concat list, an SDP file,
an image sequence pattern) makes it open other files on the server, or wait forever for a live
playlist's next segment. So every input is opened with
- `file:PATH`, so a name such as `concat:a|b` or `http://…` is a file name, not a protocol;
- a protocol whitelist of `file` alone (nested opens inherit it);
- a whitelist of demuxers for real audio/video containers, enforced by libavformat itself before
  any demuxer reads the file (checking `format_name` afterwards would be too late: probing an
  HLS playlist already opens its segments).
"""

from __future__ import annotations

import re
from pathlib import Path

# Containers and raw audio formats people actually send (uploads, voice notes, videos, what
# yt-dlp downloads). libavformat matches each name against a demuxer's comma-separated names,
# so "mov" admits "mov,mp4,m4a,3gp,3g2,mj2" and "matroska" admits "matroska,webm".
# Deliberately absent: hls, dash, concat, ffconcat, sdp, rtp, rtsp, image2 and the *_pipe image
# readers, lavfi, ffmetadata, subtitles, tty, data, and the device inputs.
ALLOWED_DEMUXERS: tuple[str, ...] = (
    "aac", "ac3", "aiff", "amr", "amrnb", "amrwb", "ape", "asf", "au", "avi", "caf", "dsf", "dts", "dtshd", "dv",
    "eac3", "flac", "flv", "gsm", "iff", "libopenmpt", "loas", "matroska", "mlp", "mov", "mp3", "mpc", "mpc8",
    "mpeg", "mpegts", "ogg", "qcp", "rm", "tak", "truehd", "tta", "voc", "w64", "wav", "wtv", "wv", "xwma",
)

PROTOCOL_WHITELIST = "file"
# When yt-dlp hands a link to ffmpeg: the web through the egress guard, and nothing else (ffmpeg's
# default for http inputs also admits rtp and udp, which an SDP answer would open past the guard).
NETWORK_PROTOCOLS = "http,https,tls,tcp,crypto,httpproxy"
STREAMING_DEMUXERS = ("hls", "dash")


def input_args(path: Path) -> list[str]:
    """ffmpeg/ffprobe arguments that open `path`, and nothing else, as one allowed container."""
    return [
        "-protocol_whitelist", PROTOCOL_WHITELIST,
        "-format_whitelist", ",".join(ALLOWED_DEMUXERS),
        "-i", f"file:{Path(path).absolute()}",
    ]


def network_input_args() -> list[str]:
    """Input options for an ffmpeg that downloads a link (yt-dlp's `ffmpeg_i` arguments)."""
    return [
        "-protocol_whitelist", NETWORK_PROTOCOLS,
        "-format_whitelist", ",".join(ALLOWED_DEMUXERS + STREAMING_DEMUXERS),
    ]


def output_arg(path: Path) -> str:
    """An output path ffmpeg cannot read as a protocol or pattern."""
    return f"file:{Path(path).absolute()}"


def is_allowed_format(format_name: str) -> bool:
    """Whether ffprobe's `format_name` (e.g. "mov,mp4,m4a,3gp,3g2,mj2") is an allowed demuxer."""
    return any(name in ALLOWED_DEMUXERS for name in format_name.split(","))


# Formats that name other inputs: what a refusal of one of these says to the user.
PLAYLIST_DEMUXERS = frozenset(
    {"hls", "dash", "concat", "ffconcat", "sdp", "rtp", "rtsp", "webm_dash_manifest", "imf", "ffmetadata"}
)
IMAGE_DEMUXERS = frozenset({"image2", "image2pipe", "gif", "apng", "webp", "mjpeg", "mjpeg_2000", "ico", "qoi"})

_REFUSED = re.compile(r"\[([\w,]+) @ [^\]]*\] Format not on whitelist")


def refused_format(stderr: str) -> str | None:
    """The demuxer ffmpeg refused to run (not an allowed container), from its error output, or None."""
    match = _REFUSED.search(stderr)
    return match.group(1) if match else None


def is_image(demuxer: str) -> bool:
    return demuxer in IMAGE_DEMUXERS or demuxer.endswith("_pipe")
