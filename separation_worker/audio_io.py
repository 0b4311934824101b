"""Decoding any media file to float stereo 44.1 kHz, and encoding stems, through ffmpeg."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from . import media_input
from .contract import messages
from .contract.errors import InputError
from .contract.messages import NO_AUDIO, NOT_READABLE, PLAYLIST
from .contract.messages import too_long as too_long_message

SAMPLE_RATE = 44100
CHANNELS = 2

# Wall-clock caps: a crafted file must not hang a worker.
PROBE_TIMEOUT_S = 30
DECODE_TIMEOUT_S = 300
ENCODE_TIMEOUT_S = 300

ARTIST_TAGS = ("artist", "album_artist", "albumartist")  # ffprobe's names, lower-cased (ID3, Vorbis, MP4, RIFF)
MAX_TAG_CHARS = 300  # a crafted file's megabyte "title" must not become an ffmpeg argument too long to pass
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


ENCODER_ARGS: dict[str, list[str]] = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "320k"],
    "flac": ["-c:a", "flac", "-sample_fmt", "s32", "-bits_per_raw_sample", "24"],
    "wav": ["-c:a", "pcm_s24le"],
}


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32, shape (2, n), 44.1 kHz
    title: str  # the display title: "Artist - Track" when the tags name both
    artist: str | None = None  # the song's artist, from its tags (or its page)
    track: str | None = None  # the song's own title, without the artist

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / SAMPLE_RATE

    @property
    def song_title(self) -> str:
        return self.track or self.title


@dataclass(frozen=True)
class Tags:
    """What a written file says about itself: ID3 for MP3, Vorbis comments for FLAC, RIFF INFO for WAV."""

    title: str | None = None
    artist: str | None = None
    album: str | None = None

    def ffmpeg_args(self) -> list[str]:
        # One argv item each (no shell): a tag's text cannot become an option.
        tags = {key: clean_tag(value) for key, value in vars(self).items()}
        return [arg for key, value in tags.items() if value for arg in ("-metadata", f"{key}={value}")]


def require_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise RuntimeError("ffmpeg and ffprobe must be installed and on PATH")


def probe(path: Path) -> dict:
    """ffprobe's view of a file; InputError if it is not media ffmpeg can read.

    The file is opened as one allowed container and nothing else (media_input): a playlist in
    disguise is refused here, before anything reads what it points at.
    """
    try:
        proc = subprocess.run(
            ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
             *media_input.input_args(path)],
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InputError(messages.SLOW_TO_READ) from None
    refused = media_input.refused_format(proc.stderr.decode(errors="replace"))
    if refused in media_input.PLAYLIST_DEMUXERS:
        raise InputError(PLAYLIST)
    if refused is not None and media_input.is_image(refused):
        raise InputError(NO_AUDIO)
    if proc.returncode != 0:
        raise InputError(NOT_READABLE)
    info = json.loads(proc.stdout or b"{}")
    if not media_input.is_allowed_format(str(info.get("format", {}).get("format_name", ""))):
        raise InputError(NOT_READABLE)
    if not any(s.get("codec_type") == "audio" for s in info.get("streams", [])):
        raise InputError(NO_AUDIO)
    return info


def clean_tag(text: object) -> str | None:
    """A tag's text as we keep and write it: one line, no control characters (NUL can't be an argument), bounded."""
    cleaned = " ".join(_CONTROL.sub(" ", str(text or "")).split())[:MAX_TAG_CHARS].strip()
    return cleaned or None


def song_tags(info: dict) -> tuple[str | None, str | None]:
    """(artist, track title) from ffprobe's view of a file: the container's tags, else the first audio
    stream's (Ogg keeps its Vorbis comments there). None for what no tag names."""
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"][:1]
    artist = track = None
    for tags in [info.get("format", {}).get("tags"), *(s.get("tags") for s in streams)]:
        lowered = {str(k).lower(): clean_tag(v) for k, v in (tags or {}).items()}
        artist = artist or next((lowered[k] for k in ARTIST_TAGS if lowered.get(k)), None)
        track = track or lowered.get("title")
    return artist, track


def display_title(artist: str | None, track: str | None, fallback: str) -> str:
    if artist and track:
        return f"{artist} - {track}"
    return track or fallback


def decode(
    path: Path,
    max_duration_seconds: float,
    title: str | None = None,
    default_title: str | None = None,
    artist: str | None = None,
    track: str | None = None,
) -> DecodedAudio:
    """Decode the first audio stream to float32 stereo 44.1 kHz (mono duplicated, others resampled).

    The title is `title` if given, else the file's tags, else `default_title`, else the file name. A given
    `title` comes with its own `artist` and `track` (a page's, say), and the file's tags are not read for them.
    Samples stream from ffmpeg straight into one buffer (about 1x the audio in memory), and a file
    that runs past the cap is refused as soon as it does, whatever its container claimed.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(messages.missing_file(path.name))
    if path.stat().st_size == 0:
        raise InputError(messages.EMPTY_FILE)
    info = probe(path)
    declared = declared_duration(info)
    if declared is not None and declared > max_duration_seconds + 1:
        raise InputError(too_long_message(declared, max_duration_seconds))
    cmd = [
        "ffmpeg", "-nostdin", "-v", "error", *media_input.input_args(path),
        "-map", "0:a:0", "-vn", "-sn", "-dn",
        # Decode at most a little past the cap, whatever the container claims.
        "-t", f"{max_duration_seconds + 1:.3f}",
        "-ac", str(CHANNELS), "-ar", str(SAMPLE_RATE), "-f", "f32le", "pipe:1",
    ]
    frames, ended = _read_frames(cmd, int((max_duration_seconds + 1) * SAMPLE_RATE) + SAMPLE_RATE)
    # ffmpeg may exit non-zero after decoding what it could of a damaged file: that audio counts. Killed by
    # a signal we did not send (the OOM killer, say), it may have stopped anywhere: that does not.
    if ended == "killed" or (ended == "failed" and frames.shape[0] == 0):
        raise InputError(messages.UNDECODABLE)
    samples = frames.T  # (2, n) view of the interleaved buffer: no copy
    if samples.shape[1] < SAMPLE_RATE // 10:
        raise InputError(messages.TOO_SHORT)
    if not _all_finite(frames):
        raise InputError(messages.INVALID_SAMPLES)
    duration = samples.shape[1] / SAMPLE_RATE
    if duration > max_duration_seconds:
        raise InputError(too_long_message(duration, max_duration_seconds))
    if title:
        return DecodedAudio(samples=samples, title=title, artist=clean_tag(artist), track=clean_tag(track))
    artist, track = song_tags(info)
    return DecodedAudio(samples, display_title(artist, track, default_title or path.stem), artist, track)


def _all_finite(frames: np.ndarray, block: int = 10 * SAMPLE_RATE) -> bool:
    # In blocks: a whole-song boolean mask would cost another quarter of the audio's memory.
    return all(np.isfinite(frames[i : i + block]).all() for i in range(0, frames.shape[0], block))


def _read_frames(cmd: list[str], max_frames: int) -> tuple[np.ndarray, str]:
    """Run an ffmpeg decode to f32le on stdout: (interleaved (n, 2) frames, how it ended), where how is
    "full" (the buffer filled; we stopped it), "ok", "failed" (a non-zero exit) or "killed" (by a signal).

    Reads straight into a buffer of `max_frames` (pages are only touched as they fill), killed at
    DECODE_TIMEOUT_S: a crafted file can neither hold a worker nor make it buffer twice.
    """
    buffer = np.empty((max_frames, CHANNELS), dtype="<f4")
    view = buffer.data.cast("B")
    filled = 0
    expired = threading.Event()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(DECODE_TIMEOUT_S, expire)
    try:
        timer.start()
        stdout = cast(io.BufferedReader, proc.stdout)
        while filled < len(view):
            got = stdout.readinto(view[filled:])
            if not got:
                break
            filled += got
        full = filled == len(view)
        if not full:
            proc.wait(timeout=10)  # it has closed its output: let it exit and report how
    except subprocess.TimeoutExpired:
        full = False
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()  # the buffer filled first (the song is too long), or it hangs after closing its output
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
    if expired.is_set():
        raise InputError(messages.SLOW_TO_DECODE)
    code = proc.returncode
    ended = "full" if full else "ok" if code == 0 else "killed" if code < 0 else "failed"
    return buffer[: filled // (4 * CHANNELS)], ended


def declared_duration(info: dict) -> float | None:
    try:
        return float(info.get("format", {}).get("duration"))
    except (TypeError, ValueError):
        return None


def encode(samples: np.ndarray, path: Path, fmt: str, tags: Tags | None = None) -> Path:
    """Write float stereo 44.1 kHz samples to `path` as mp3 (320 kbps), flac or wav (24-bit), tagged with `tags`."""
    if fmt not in ENCODER_ARGS:
        raise ValueError(f"unknown output format {fmt!r}")
    interleaved = np.ascontiguousarray(samples.T, dtype="<f4")
    cmd = [
        "ffmpeg", "-nostdin", "-v", "error", "-y",
        "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", str(samples.shape[0]), "-i", "pipe:0",
        *ENCODER_ARGS[fmt], *(tags or Tags()).ffmpeg_args(), media_input.output_arg(path),
    ]
    proc = subprocess.run(cmd, input=interleaved.tobytes(), capture_output=True, timeout=ENCODE_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg could not encode {path.name}: {proc.stderr.decode(errors='replace').strip()}")
    return path
