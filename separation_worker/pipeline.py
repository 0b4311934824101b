"""One call from an input (a path, a URL, or decoded audio) to stems on disk and their manifest.

fetch -> decode -> separate (ensemble, then the mode's splits) -> loudness -> analyze -> encode -> result.json
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from storage.files import MANIFEST_FILE, OutputFolder

from . import audio_io, loudness
from .analysis import analyze
from .contract import messages
from .contract.analysis import MusicalAnalysis
from .contract.errors import InputError
from .contract.manifest import STEM_LABELS, FileEntry, Manifest, ModelInfo, StemEntry, Timings, stem_title
from .engine import SeparationEngine
from .fetch import fetch, is_url
from .models.modes import DEFAULT_MODE, Mode, mode_named
from .progress import ProgressCallback, ProgressEvent, ignore

MAX_TITLE_CHARS = 120
RAW_FORMAT = "flac"  # raw copies: lossless, 24-bit


def separate_song(
    source: str | Path | audio_io.DecodedAudio,
    out_dir: Path | OutputFolder,
    engine: SeparationEngine,
    settings,
    fmt: str | Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
    allow_private_urls: bool = True,
    keep_original: bool = False,
    mode: Mode | str = DEFAULT_MODE,
    raw: bool = False,
    raw_copies: bool = False,
) -> Manifest:
    """Separate one song into loudness-normalized stems in `out_dir`, in one format or several; returns the manifest.

    Every file, `result.json` last, appears in `out_dir` only once complete (temp name, then rename).
    Raises InputError (with a user-facing message) for bad input; then nothing is left in `out_dir`.
    `progress` may raise to abort the job (a timeout, a cancellation): the exception propagates.
    `allow_private_urls` is for a local user's own links; a public service passes its setting.
    `keep_original` also writes the input as `<title> (Original).<first format>` (to compare against).
    `mode`: which stems (models/modes.py). `raw`: stems as separated, not loudness-normalized, so that they sum
    back to the input (in FLAC or WAV, 24-bit, they null against it). `raw_copies` also writes each stem unnormalized
    as `<title> (<Stem>) (Raw).flac` beside the normalized files (the results page offers them).
    """
    mode = mode_named(mode) if isinstance(mode, str) else mode
    formats = [f.lower() for f in ([fmt] if isinstance(fmt, str) else fmt or [settings.output_format])]
    unknown = [f for f in formats if f not in audio_io.ENCODER_ARGS]
    if unknown or not formats:
        raise ValueError(f"unknown output format(s) {unknown!r}")
    emit = progress or ignore
    timings: dict[str, float] = {}
    started = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="stembot-") as work:  # a fetched file lives only this long
        audio, source_label = _load_input(source, Path(work), settings, emit, timings, allow_private_urls)

    with _stage(timings, "separate"):
        emit(ProgressEvent("separate", 0.0))
        n_models = len(engine.steps(mode))

        def on_model(index: int, name: str, fraction: float) -> None:
            emit(ProgressEvent("separate", (index + fraction) / n_models, name, fraction))

        waited = 0.0

        def on_wait(seconds: float) -> None:  # queued behind another job's separation (a worker runs several)
            nonlocal waited
            waited = seconds
            emit(ProgressEvent("separate", 0.0, device_wait=seconds))

        separated = engine.separate(audio.samples, on_model, waiting=on_wait, mode=mode)
    timings["separate"] -= waited  # the device's time for this song; `total` keeps the wait
    for name, seconds in separated.seconds_per_model.items():
        timings[f"separate.{name}"] = seconds

    with _stage(timings, "loudness"):
        emit(ProgressEvent("loudness", 0.0))
        raw_stems = separated.stems
        done: list[str] = []

        def on_stem(name: str) -> None:
            done.append(name)
            emit(ProgressEvent("loudness", len(done) / len(raw_stems), name))

        if raw:
            normalized = loudness.measure_stems(raw_stems, audio_io.SAMPLE_RATE, silence_lufs=settings.silence_lufs)
        else:
            normalized = loudness.normalize_stems(
                raw_stems,
                audio_io.SAMPLE_RATE,
                target_lufs=settings.loudness_target_lufs,
                ceiling_dbtp=settings.true_peak_ceiling_dbtp - max(_codec_headroom(f) for f in formats),
                max_gain_db=settings.max_gain_db,
                silence_lufs=settings.silence_lufs,
                on_stem=on_stem,
            )

    with _stage(timings, "analyze"):
        emit(ProgressEvent("analyze", 0.0))
        analysis = _analyze(audio.samples)
        emit(ProgressEvent("analyze", 1.0))

    folder = out_dir if isinstance(out_dir, OutputFolder) else OutputFolder(Path(out_dir))
    with folder.all_or_nothing():  # bad input or a failure leaves nothing behind
        with _stage(timings, "encode"):
            emit(ProgressEvent("encode", 0.0))
            title = safe_title(audio.title)
            names = {(name, f): f"{title} ({STEM_LABELS[name]}).{f}" for name in normalized for f in formats}
            raw_names = {name: f"{title} ({STEM_LABELS[name]}) (Raw).{RAW_FORMAT}" for name in raw_stems} \
                if raw_copies and not raw else {}
            original = f"{title} (Original).{formats[0]}" if keep_original else None
            _encode_all(folder, audio, normalized, names, original, formats[0], raw_stems, raw_names)
            emit(ProgressEvent("encode", 1.0))
        timings["total"] = time.perf_counter() - started
        manifest = Manifest(
            title=audio.title,
            source=source_label,
            duration=audio.duration,
            sample_rate=audio_io.SAMPLE_RATE,
            format=formats[0],
            stems=tuple(
                StemEntry(
                    name,
                    {f: _entry(folder, names[name, f]) for f in formats},
                    silent=report.silent,
                    loudness=report,
                    raw=_entry(folder, raw_names[name]) if name in raw_names else None,
                )
                for name, (_, report) in normalized.items()
            ),
            models=tuple(ModelInfo.from_dict(m) for m in engine.describe(mode)),
            device=str(engine.run.device),
            precision=engine.run.precision,
            timings=Timings.from_stages(timings),
            **analysis.to_dict(),
            original=_entry(folder, original) if original else None,
            artist=audio.artist,
            track=audio.track,
            mode=mode.name,
            raw=raw,
        )
        folder.write_text(MANIFEST_FILE, manifest.to_json())  # last: once it exists, every file it names does
    return manifest


def _encode_all(
    folder: OutputFolder,
    audio,
    normalized: dict,
    names: dict,
    original: str | None,
    fmt: str,
    raw_stems: dict | None = None,
    raw_names: dict | None = None,
) -> None:
    """Encode every stem (and the original, and raw copies) in parallel; each file appears under its name only once
    complete.

    Each file is tagged as players list it: artist = the song's, title = "Night Drive (Vocals)", album = the song's
    title (so a library groups a song's stems together).
    """
    song = audio.song_title
    with ExitStack() as files:
        temps = {key: files.enter_context(folder.writing(name)) for key, name in names.items()}
        raw_temps = {key: files.enter_context(folder.writing(name)) for key, name in (raw_names or {}).items()}
        original_temp = files.enter_context(folder.writing(original)) if original else None
        # Inside the stack: on a failure the pool waits for the other encoders before their temp files go.
        with ThreadPoolExecutor(max_workers=len(names) + len(raw_temps) + 1) as pool:  # ffmpeg: its own processes
            jobs = [
                pool.submit(audio_io.encode, normalized[name][0], temp, f,
                            audio_io.Tags(title=stem_title(song, name), artist=audio.artist, album=song))
                for (name, f), temp in temps.items()
            ]
            jobs += [
                pool.submit(audio_io.encode, (raw_stems or {})[name], temp, RAW_FORMAT,
                            audio_io.Tags(title=f"{stem_title(song, name)} (Raw)", artist=audio.artist, album=song))
                for name, temp in raw_temps.items()
            ]
            if original_temp is not None:
                tags = audio_io.Tags(title=song, artist=audio.artist, album=song)
                jobs.append(pool.submit(audio_io.encode, audio.samples, original_temp, fmt, tags))
            for job in jobs:
                job.result()


def _entry(folder: OutputFolder, name: str) -> FileEntry:
    return FileEntry(name, folder.file(name).stat().st_size)


def _load_input(source, work: Path, settings, emit: ProgressCallback, timings: dict[str, float], allow_private: bool):
    if isinstance(source, audio_io.DecodedAudio):
        return source, source.title
    title = default_title = artist = track = None
    label = str(source)
    path = Path(source)
    if isinstance(source, str) and is_url(source):
        with _stage(timings, "fetch"):
            emit(ProgressEvent("fetch", 0.0))
            fetched = fetch(
                source,
                work,
                settings.max_input_bytes,
                settings.max_duration_seconds,
                progress=lambda f: emit(ProgressEvent("fetch", f)),
                allow_private=allow_private,
            )
            emit(ProgressEvent("fetch", 1.0))
        path = fetched.path
        title, default_title = (fetched.title, None) if fetched.from_page else (None, fetched.title)
        # A page names the song by its metadata, when the site has any (else by its title alone); a direct
        # link's file by its tags.
        artist, track = (fetched.artist, fetched.track) if fetched.from_page and fetched.track else (None, None)
    elif isinstance(source, str) and "://" in source and not path.exists():
        raise InputError(messages.ONLY_HTTP)  # ftp://, file://, …: a link, but not one we fetch
    elif path.is_file() and path.stat().st_size > settings.max_input_bytes:
        raise InputError(messages.too_large(settings.max_input_bytes))
    with _stage(timings, "decode"):
        emit(ProgressEvent("decode", 0.0))
        audio = audio_io.decode(path, settings.max_duration_seconds, title=title, default_title=default_title,
                                artist=artist, track=track)
        emit(ProgressEvent("decode", 1.0, duration=audio.duration))
    return audio, label


def _analyze(song: np.ndarray) -> MusicalAnalysis:
    """BPM and key, from the song as it came in: the same answer `stembot analyze` gives for the file, and
    on bench/analysis.py --stems the mix scores better than the instrumental (a sung melody carries the
    key, and its onsets the pulse)."""
    return analyze(song, audio_io.SAMPLE_RATE)


def _codec_headroom(fmt: str) -> float:
    # MP3 decoding can overshoot the encoded peaks by a few tenths of a dB.
    return 0.5 if fmt == "mp3" else 0.0


def safe_title(title: str) -> str:
    """A filename-safe version of the song title."""
    cleaned = re.sub(r'[\x00-\x1f<>:"/\\|?*]+', " ", title)
    cleaned = re.sub(r"\s+", " ", cleaned).strip(" .")
    return cleaned[:MAX_TITLE_CHARS].rstrip(" .") or "song"


@contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
