"""`stembot separate INPUT --out DIR`: the main job, locally, no bots or Redis."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from separation_worker.contract.errors import InputError
from separation_worker.contract.messages import format_duration
from separation_worker.models.modes import DEFAULT_MODE, MODES
from separation_worker.models.zoo import DEFAULT_PRESET, PRESETS
from storage.files import MANIFEST_FILE, OutputFolder

from ..config_check import require
from ..terminal_progress import TerminalProgress

FAST_PRESET = "fast"
# A separation estimated to take longer than this gets one line saying how long, and what the fast preset takes.
HINT_AFTER_S = 180.0
DEVICE_LABELS = {"cpu": "CPU", "cuda": "GPU", "mps": "Apple GPU (MPS)"}
RAW_FORMATS = ("flac", "wav")  # raw stems must null against the input: lossless, 24-bit


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("separate", help="separate a song (file or link) into stems: vocals and instrumental, "
                            "or another --mode")
    parser.add_argument("input", metavar="INPUT", help="an audio/video file, or a link (YouTube, SoundCloud, direct URL, ...)")
    parser.add_argument("--out", "-o", type=Path, default=Path("stems"), help="output folder (default: ./stems)")
    parser.add_argument("--format", "-f", choices=("mp3", "flac", "wav"), default=None,
                        help="stem file format (default: mp3 at 320 kbps, or STEMBOT_OUTPUT_FORMAT)")
    parser.add_argument("--device", choices=("cpu", "cuda", "mps"), default=None,
                        help="run the models on this device (default: STEMBOT_DEVICE, auto)")
    parser.add_argument("--preset", choices=tuple(PRESETS), default=DEFAULT_PRESET,
                        help="default: the three-model ensemble (or STEMBOT_ENSEMBLE); "
                             "fast: Kim's Mel-Band Roformer alone, about 5%% of the ensemble's work (for CPUs)")
    parser.add_argument("--mode", choices=tuple(MODES), default=DEFAULT_MODE,
                        help="which stems: " + "; ".join(f"{m.name}: {m.summary}" for m in MODES.values()))
    parser.add_argument("--raw", action="store_true",
                        help="stems as separated, without loudness normalization: they add up to the input "
                             "(24-bit FLAC, or --format wav)")
    parser.set_defaults(handler=run)


def about(seconds: float) -> str:
    """A rough length of time: "under a minute", "7 min", "2 h 10 min"."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def slow_separation_hint(
    device: str, total_s: float, duration_s: float, suggest_fast: bool = True, fast_s: float | None = None
) -> str:
    """The one line a long separation gets, e.g. on a laptop's CPU; `fast_s`: what the fast preset would take."""
    line = f"Separating on {DEVICE_LABELS.get(device, device)}: about {about(total_s)} for this " \
           f"{format_duration(duration_s)} song"
    if suggest_fast and fast_s is not None:
        line += f"; `--preset {FAST_PRESET}` takes about {about(fast_s)}"
    elif suggest_fast:
        line += f"; `--preset {FAST_PRESET}` (one model) takes a fraction of that"
    return line + "."


def run(args: argparse.Namespace, settings) -> int:
    fmt = args.format
    if args.raw:
        if fmt not in (None, *RAW_FORMATS):
            print(f"stembot: --raw stems are lossless: use --format {' or '.join(RAW_FORMATS)}", file=sys.stderr)
            return 2
        fmt = fmt or RAW_FORMATS[0]
    if args.preset != DEFAULT_PRESET:  # the preset is the ensemble for everything below (checks, manifest)
        settings = settings.replace(ensemble=PRESETS[args.preset].to_setting())
    require(settings.replace(device=args.device) if args.device else settings, "separate")  # ffmpeg, models
    # torch and the models load here, not when `stembot --help` or a bot imports the CLI.
    from separation_worker.engine import SeparationEngine
    from separation_worker.pipeline import separate_song

    engine = SeparationEngine.from_settings(settings, device=args.device)
    progress = TerminalProgress()
    report = SeparationEta(engine, progress, suggest_fast=args.preset != FAST_PRESET, mode=MODES[args.mode])
    out = OutputFolder(args.out)
    try:
        manifest = separate_song(args.input, out, engine, settings, fmt=fmt, progress=report, mode=args.mode,
                                 raw=args.raw)
    except InputError as exc:
        progress.close()
        print(f"stembot: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    print(f"{manifest.title} · {format_duration(manifest.duration)} · {manifest.analysis.summary()}")
    for stem in manifest.stems:
        note = " (silent)" if stem.silent else ""
        print(f"  {out.file(stem.primary.file)}  {stem.primary.size_bytes / 1e6:.1f} MB{note}")
    print(f"  {out.file(MANIFEST_FILE)}")
    print(f"Done in {manifest.timings.total or 0.0:.1f} s on {manifest.device} ({manifest.precision}).")
    return 0


class SeparationEta:
    """The progress sink of `stembot separate`: draws the bars, with the separation's ETA once measured, and
    prints one line when the separation will be long (naming the fast preset, with what it would take)."""

    def __init__(self, engine, progress: TerminalProgress, suggest_fast: bool = True,
                 hint_after_s: float = HINT_AFTER_S, mode=MODES[DEFAULT_MODE]):
        from separation_worker.audio_io import SAMPLE_RATE
        from separation_worker.inference.estimate import ProgressEta

        self._engine = engine
        self._progress = progress
        self._suggest_fast = suggest_fast
        self._hint_after_s = hint_after_s
        self._steps = engine.steps(mode)  # each split runs on a stem as long as the song
        self._eta = ProgressEta(self._costs_for, SAMPLE_RATE)
        self._fast_costs: list = []
        self._duration = 0.0
        self.hint: str | None = None  # the line printed, if one was

    def _costs_for(self, length: int) -> list:
        if self._engine.run.device.type == "cuda":
            return []  # seconds on a GPU: not worth the second or two counting FLOPs takes
        if self._suggest_fast:  # the fast preset's models are the ensemble's (as loaded), or none
            self._fast_costs = self._engine.costs(length, PRESETS[FAST_PRESET].members)
        return self._engine.costs(length, self._steps)

    def __call__(self, event) -> None:
        if event.duration:
            self._duration = event.duration
        estimate = self._eta.observe(event)
        self._progress(event)
        if estimate is None:
            return
        self._progress.show_eta(estimate.remaining_s)
        if self.hint is None and estimate.total_s > self._hint_after_s:
            estimator = self._eta.estimator
            assert estimator is not None
            fast_s = estimator.seconds_for(self._fast_costs, estimate) if self._fast_costs else None
            self.hint = slow_separation_hint(self._engine.run.device.type, estimate.total_s, self._duration,
                                             self._suggest_fast, fast_s)
            self._progress.note(self.hint)
