"""`stembot separate INPUT --out DIR`: the main job, locally, no bots or Redis."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from separation_worker.contract.errors import InputError
from separation_worker.contract.messages import format_duration
from storage.files import MANIFEST_FILE, OutputFolder

from ..config_check import require
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
    require(settings.replace(device=args.device) if args.device else settings, "separate")  # ffmpeg, models
    # torch and the models load here, not when `stembot --help` or a bot imports the CLI.
    from separation_worker.engine import SeparationEngine
    from separation_worker.pipeline import separate_song

    engine = SeparationEngine.from_settings(settings, device=args.device)
    progress = TerminalProgress()
    out = OutputFolder(args.out)
    try:
        manifest = separate_song(args.input, out, engine, settings, fmt=args.format, progress=progress)
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
