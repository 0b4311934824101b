"""`stembot separate INPUT --out DIR`: the main job, locally, no bots or Redis."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from separation_worker.contract.analysis import MusicalAnalysis
from separation_worker.audio_io import format_duration
from separation_worker.engine import SeparationEngine
from separation_worker.contract.errors import InputError
from separation_worker.pipeline import separate_song
from separation_worker.result import RESULT_FILE

from ..terminal_progress import TerminalProgress


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("separate", help="separate a song (file or link) into vocals and instrumental")
    parser.add_argument("input", metavar="INPUT", help="an audio/video file, or a link (YouTube, SoundCloud, direct URL, ...)")
    parser.add_argument("--out", "-o", type=Path, default=Path("stems"), help="output folder (default: ./stems)")
    parser.add_argument("--format", "-f", choices=("mp3", "flac", "wav"), default=None,
                        help="stem file format (default: mp3 at 320 kbps, or STEMBOT_OUTPUT_FORMAT)")
    parser.add_argument("--device", choices=("cpu", "cuda", "mps"), default=None,
                        help="run the models on this device (default: STEMBOT_DEVICE, auto)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    engine = SeparationEngine.from_settings(settings, device=args.device)
    progress = TerminalProgress()
    try:
        result = separate_song(args.input, args.out, engine, settings, fmt=args.format, progress=progress)
    except InputError as exc:
        progress.close()
        print(f"stembot: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    print(f"{result.title} · {format_duration(result.duration)} · {_summary(result.analysis)}")
    for stem in result.stems:
        note = " (silent)" if stem.loudness.silent else ""
        print(f"  {stem.path}  {stem.size_bytes / 1e6:.1f} MB{note}")
    print(f"  {result.out_dir / RESULT_FILE}")
    total = result.timings.get("total", 0.0)
    print(f"Done in {total:.1f} s on {result.device} ({result.precision}).")
    return 0


def _summary(analysis: dict) -> str:
    return MusicalAnalysis(**analysis).summary()
