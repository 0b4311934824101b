"""Decoding any media file to float stereo 44.1 kHz, and encoding stems, through ffmpeg."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

SAMPLE_RATE = 44100
CHANNELS = 2

# Wall-clock caps: a crafted file must not hang a worker.
PROBE_TIMEOUT_S = 30
DECODE_TIMEOUT_S = 300
ENCODE_TIMEOUT_S = 300

ENCODER_ARGS: dict[str, list[str]] = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "320k"],
    "flac": ["-c:a", "flac", "-sample_fmt", "s32", "-bits_per_raw_sample", "24"],
    "wav": ["-c:a", "pcm_s24le"],
}


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32, shape (2, n), 44.1 kHz
    title: str

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / SAMPLE_RATE


def require_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise RuntimeError("ffmpeg and ffprobe must be installed and on PATH")


def probe(path: Path) -> dict:
    """ffprobe's view of a file; InputError if it is not media ffmpeg can read."""
    try:
        proc = subprocess.run(
            ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InputError("That file took too long to read; it may be damaged.") from None
    if proc.returncode != 0:
        raise InputError("That file isn't audio or video I can read.")
    info = json.loads(proc.stdout or b"{}")
    if not any(s.get("codec_type") == "audio" for s in info.get("streams", [])):
        raise InputError("That file has no audio track.")
    return info


def _title_from(info: dict, fallback: str) -> str:
    tags = {k.lower(): v for k, v in (info.get("format", {}).get("tags") or {}).items()}
    title = str(tags.get("title") or "").strip()
    artist = str(tags.get("artist") or "").strip()
    if title and artist:
        return f"{artist} - {title}"
    return title or fallback


def decode(
    path: Path, max_duration_seconds: float, title: str | None = None, default_title: str | None = None
) -> DecodedAudio:
    """Decode the first audio stream to float32 stereo 44.1 kHz (mono duplicated, others resampled).

    The title is `title` if given, else the file's tags, else `default_title`, else the file name.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"I can't find the file {path.name!r}.")
    if path.stat().st_size == 0:
        raise InputError("That file is empty.")
    info = probe(path)
    declared = declared_duration(info)
    if declared is not None and declared > max_duration_seconds + 1:
        raise InputError(too_long_message(declared, max_duration_seconds))
    cmd = [
        "ffmpeg", "-nostdin", "-v", "error", "-i", str(path),
        "-map", "0:a:0", "-vn", "-sn", "-dn",
        # Decode at most a little past the cap, whatever the container claims.
        "-t", f"{max_duration_seconds + 1:.3f}",
        "-ac", str(CHANNELS), "-ar", str(SAMPLE_RATE), "-f", "f32le", "-",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=DECODE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise InputError("That file took too long to decode; it may be damaged.") from None
    raw = proc.stdout
    if proc.returncode != 0 and not raw:
        raise InputError("That file is damaged or isn't audio I can decode.")
    usable = len(raw) - len(raw) % (4 * CHANNELS)
    samples = np.frombuffer(raw[:usable], dtype="<f4").reshape(-1, CHANNELS).T.copy()
    if samples.shape[1] < SAMPLE_RATE // 10:
        raise InputError("That file has no audio in it (or less than a tenth of a second).")
    if not np.isfinite(samples).all():
        raise InputError("That file's audio is damaged (it decodes to invalid samples).")
    duration = samples.shape[1] / SAMPLE_RATE
    if duration > max_duration_seconds:
        raise InputError(too_long_message(duration, max_duration_seconds))
    return DecodedAudio(samples=samples, title=title or _title_from(info, default_title or path.stem))


def declared_duration(info: dict) -> float | None:
    try:
        return float(info.get("format", {}).get("duration"))
    except (TypeError, ValueError):
        return None


def too_long_message(duration: float, limit: float, note: str = "") -> str:
    """The one wording of "too long", wherever the length is found out (upload, link, decode)."""
    return f"That song is {format_duration(duration)} long; the limit is {format_duration(limit)}{note}."


def format_duration(seconds: float) -> str:
    """3:25, or 1:02:03 past an hour."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def encode(samples: np.ndarray, path: Path, fmt: str, title: str | None = None) -> Path:
    """Write float stereo 44.1 kHz samples to `path` as mp3 (320 kbps), flac or wav (24-bit)."""
    if fmt not in ENCODER_ARGS:
        raise ValueError(f"unknown output format {fmt!r}")
    interleaved = np.ascontiguousarray(samples.T, dtype="<f4")
    meta = ["-metadata", f"title={title}"] if title else []
    cmd = [
        "ffmpeg", "-nostdin", "-v", "error", "-y",
        "-f", "f32le", "-ar", str(SAMPLE_RATE), "-ac", str(samples.shape[0]), "-i", "-",
        *ENCODER_ARGS[fmt], *meta, str(path),
    ]
    proc = subprocess.run(cmd, input=interleaved.tobytes(), capture_output=True, timeout=ENCODE_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg could not encode {path.name}: {proc.stderr.decode(errors='replace').strip()}")
    return path
