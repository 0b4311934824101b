"""The practice mixer's "download this mix": the query it takes, and the ffmpeg run that renders it.

`GET /r/{job_id}/mix.{mp3|flac|wav}?gain.<stem>=0..2&tempo=0.5..1.5&semitones=-12..12&start=s&end=s` (every
parameter optional; a stem not named plays at 1.0). Only a job's partition stems are mixable (they sum back up to
the song); "mix" stems such as instrumental_backing are sums of them and would count those parts twice.

Each stem file was loudness-normalized on its own, so a stem's `balance` (undoing that gain) comes first: at gain
1.0 everywhere the mix is the song again, and the browser's live mixer applies the same factors.
Key and tempo come from ffmpeg's rubberband filter (pitch kept while the tempo changes, formants shifted with the
key) when this ffmpeg has it, else from asetrate/aresample/atempo. ffmpeg gets an argv list, never a shell line.
"""

from __future__ import annotations

import asyncio
import logging
import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from bot.links import valid_filename
from separation_worker import media_input
from separation_worker.contract.manifest import Manifest, StemEntry
from separation_worker.contract.modes import MIX_STEMS

log = logging.getLogger(__name__)

GAIN_RANGE = (0.0, 2.0)  # linear: silent .. +6 dB
TEMPO_RANGE = (0.5, 1.5)
SEMITONES = 12  # ± this many
RENDER_FORMATS = {  # fmt -> (Content-Type, ffmpeg codec arguments)
    "mp3": ("audio/mpeg", ("-c:a", "libmp3lame", "-b:a", "320k")),
    "flac": ("audio/flac", ("-c:a", "flac")),
    "wav": ("audio/wav", ("-c:a", "pcm_s16le")),
}
RENDER_PREFERENCE = ("flac", "wav", "mp3")  # the stem file a render reads: lossless when there is one
PARALLEL_RENDERS = 2
QUEUED_RENDERS = 6  # beyond these waiting, a render is refused (503) rather than queued without end
RENDER_TIMEOUT_S = 180.0
QUERY_KEYS = ("e", "s", "tempo", "semitones", "start", "end")  # plus gain.<stem>

# What a visitor reads when a mix is refused (the route answers 400 or 503 with it).
TEXT = {
    "format": "Unknown format {fmt!r}: use mp3, flac or wav.",
    "unknown": "Unknown parameter {key!r}.",
    "repeated": "{key!r} is given more than once.",
    "number": "{key} must be a number, not {value!r}.",
    "range": "{key} must be between {low:g} and {high:g}.",
    "whole": "semitones must be a whole number between -{n} and {n}.",
    "stem": "This song has no stem {name!r} to mix (its stems: {names}).",
    "mixed": "{name!r} is a sum of other stems: set their gains instead.",
    "silent": "Every stem is muted: there is nothing to mix.",
    "region": "The region must have start < end, within the song's {duration:.1f} s.",
    "busy": "Too many mixes are being rendered right now; try again in a minute.",
    "failed": "The mix could not be rendered.",
}


class MixError(ValueError):
    """A mix request the server refuses; the message is for the visitor."""


@dataclass(frozen=True)
class MixSource:
    name: str  # the stem, e.g. "drums"
    play_file: str  # what the browser streams (MP3 when there is one)
    render_file: str  # what ffmpeg reads (lossless when there is one)
    balance: float  # linear gain that undoes the stem's own loudness normalization


def mix_sources(manifest: Manifest) -> list[MixSource]:
    """The job's mixable stems, in the manifest's order: the partition stems (their sum is the song)."""
    sources = []
    for stem in manifest.stems:
        if stem.name in MIX_STEMS:
            continue
        files = dict(stem.files)
        play = files.get("mp3") or stem.primary
        render = next((files[f] for f in RENDER_PREFERENCE if f in files), stem.primary)
        if valid_filename(play.file) and valid_filename(render.file):  # only plain single names are ever opened
            sources.append(MixSource(stem.name, play.file, render.file, _balance(manifest, stem)))
    return sources


def _balance(manifest: Manifest, stem: StemEntry) -> float:
    if manifest.raw or stem.loudness is None or stem.loudness.silent:
        return 1.0
    return round(10 ** (-stem.loudness.gain_db / 20), 6)


@dataclass(frozen=True)
class MixRequest:
    fmt: str  # "mp3" | "flac" | "wav"
    gains: Mapping[str, float] = field(default_factory=dict)  # every mixable stem -> linear gain
    tempo: float = 1.0
    semitones: int = 0
    start: float = 0.0  # seconds into the song
    end: float | None = None  # None: to the end

    def __post_init__(self) -> None:
        object.__setattr__(self, "gains", MappingProxyType(dict(self.gains)))

    @classmethod
    def from_query(cls, fmt: str, query: Mapping[str, str], keys: Sequence[str], stems: Sequence[str],
                   mixes: Sequence[str], duration: float) -> MixRequest:
        """Parses and checks every parameter; `keys` lists the query's keys with repeats. Raises MixError."""
        if fmt not in RENDER_FORMATS:
            raise MixError(TEXT["format"].format(fmt=fmt))
        for key in keys:
            if keys.count(key) > 1:
                raise MixError(TEXT["repeated"].format(key=key))
            if key not in QUERY_KEYS and not key.startswith("gain."):
                raise MixError(TEXT["unknown"].format(key=key))
        gains = dict.fromkeys(stems, 1.0)
        for key in keys:
            if not key.startswith("gain."):
                continue
            name = key[len("gain."):]
            if name in mixes:
                raise MixError(TEXT["mixed"].format(name=name))
            if name not in gains:
                raise MixError(TEXT["stem"].format(name=name, names=", ".join(stems)))
            gains[name] = _number(key, query[key], *GAIN_RANGE)
        if not any(gains.values()):
            raise MixError(TEXT["silent"])
        tempo = _number("tempo", query["tempo"], *TEMPO_RANGE) if "tempo" in query else 1.0
        semitones = _semitones(query["semitones"]) if "semitones" in query else 0
        start = _number("start", query["start"], 0.0, duration) if "start" in query else 0.0
        end = _number("end", query["end"], 0.0, duration) if "end" in query else None
        if end is not None and end - start < 0.1:
            raise MixError(TEXT["region"].format(duration=duration))
        return cls(fmt, gains, tempo, semitones, start, end)

    @property
    def content_type(self) -> str:
        return RENDER_FORMATS[self.fmt][0]


def _number(key: str, text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MixError(TEXT["number"].format(key=key, value=text[:20])) from None
    if not low <= value <= high:  # also refuses nan
        raise MixError(TEXT["range"].format(key=key, low=low, high=high))
    return value


def _semitones(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise MixError(TEXT["whole"].format(n=SEMITONES)) from None
    if abs(value) > SEMITONES:
        raise MixError(TEXT["whole"].format(n=SEMITONES))
    return value


# --- the ffmpeg command --------------------------------------------------------------------------------------------


def mix_command(request: MixRequest, inputs: Sequence[tuple[Path, float]], output: Path, sample_rate: int,
                duration: float, rubberband: bool) -> list[str]:
    """ffmpeg's argv: each (path, linear gain) input, summed, then tempo and key, then the encoder."""
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    for path, _ in inputs:
        if request.start > 0:
            argv += ["-ss", f"{request.start:.3f}"]
        if request.end is not None:
            argv += ["-to", f"{request.end:.3f}"]
        argv += media_input.input_args(path)
    chains = [f"[{i}:a]aresample={sample_rate},volume={gain:.6f}[s{i}]" for i, (_, gain) in enumerate(inputs)]
    labels = "".join(f"[s{i}]" for i in range(len(inputs)))
    # normalize=0: a plain sum, so unity gains give the song back (amix would otherwise divide by the inputs).
    graph = f"{labels}amix=inputs={len(inputs)}:duration=longest:normalize=0"
    effects = _tempo_and_key(request.tempo, request.semitones, sample_rate, rubberband)
    length = ((request.end if request.end is not None else duration) - request.start) / request.tempo
    if rubberband and effects:
        # rubberband keeps its last ~0.1 s when the input ends: feed it silence, then cut at the stretched length.
        effects.insert(0, "apad=pad_dur=0.5")
    # A boost (gains above 1) may push the sum past full scale: a limiter, delay-compensated, catches the peaks.
    graph += "".join(f",{e}" for e in effects) + ",alimiter=limit=0.98:level=0:latency=1[out]"
    return [*argv, "-filter_complex", ";".join([*chains, graph]), "-map", "[out]", "-t", f"{length:.3f}",
            *RENDER_FORMATS[request.fmt][1], media_input.output_arg(output)]


def _tempo_and_key(tempo: float, semitones: int, sample_rate: int, rubberband: bool) -> list[str]:
    if tempo == 1.0 and semitones == 0:
        return []
    pitch = 2 ** (semitones / 12)
    if rubberband:
        return [f"rubberband=tempo={tempo:.6f}:pitch={pitch:.6f}"]
    # asetrate plays faster and higher by `pitch`; resample back, then atempo puts the speed where it belongs.
    effects = [f"asetrate={sample_rate * pitch:.3f}", f"aresample={sample_rate}"] if semitones else []
    return effects + _atempo_chain(tempo / pitch)


def _atempo_chain(factor: float) -> list[str]:
    """atempo takes 0.5..100 per instance; smaller factors are a product of halvings."""
    chain = []
    while factor < 0.5:
        chain.append("atempo=0.5")
        factor /= 0.5
    if not math.isclose(factor, 1.0):
        chain.append(f"atempo={factor:.6f}")
    return chain


_RUBBERBAND: bool | None = None


def has_rubberband() -> bool:
    """Whether this machine's ffmpeg has the rubberband filter (asked once)."""
    global _RUBBERBAND
    if _RUBBERBAND is None:
        try:
            listed = subprocess.run(["ffmpeg", "-hide_banner", "-filters"], capture_output=True, text=True,
                                    timeout=10, check=False).stdout
        except (OSError, subprocess.TimeoutExpired):
            listed = ""
        _RUBBERBAND = any(line.split()[1:2] == ["rubberband"] for line in listed.splitlines())
    return _RUBBERBAND


# --- rendering -------------------------------------------------------------------------------------------------------


class MixBusy(Exception):
    """Every render slot is taken and the queue is full."""


class Renderer:
    """Runs mix renders, `parallel` at a time with at most `queued` waiting; ffmpeg is a subprocess, so the event
    loop never waits on it, and a render whose visitor left (the handler is cancelled) is killed."""

    def __init__(self, parallel: int = PARALLEL_RENDERS, queued: int = QUEUED_RENDERS) -> None:
        self._slots = asyncio.Semaphore(parallel)
        self._waiting = 0
        self._queued = queued

    async def render(self, argv: list[str], timeout_s: float = RENDER_TIMEOUT_S) -> bool:
        if self._slots.locked() and self._waiting >= self._queued:
            raise MixBusy()
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await _run(argv, timeout_s)
        finally:
            self._slots.release()


async def _run(argv: list[str], timeout_s: float) -> bool:
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        log.warning("mix render timed out after %.0f s", timeout_s)
        return False
    except BaseException:  # the request was cancelled (the visitor left): don't leave ffmpeg running
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        log.warning("mix render failed: %s", stderr.decode(errors="replace").strip()[:300])
        return False
    return True
