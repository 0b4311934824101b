"""`stembot analyze FILE [--json]`: BPM and key alone, without separation (fast, on the CPU)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from separation_worker import audio_io
from separation_worker.contract.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("analyze", help="detect BPM and key of an audio file (no separation)")
    parser.add_argument("file", metavar="FILE", type=Path, help="an audio or video file")
    parser.add_argument("--json", action="store_true", help="print the fields as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    from separation_worker.analysis import analyze

    try:
        audio = audio_io.decode(args.file, settings.max_duration_seconds)
    except InputError as exc:
        print(f"stembot: {exc}", file=sys.stderr)
        return 2
    result = analyze(audio.samples, audio_io.SAMPLE_RATE)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"{audio.title}: {result.summary()}")
        print(f"  tempo confidence {result.bpm_confidence:.2f} · key confidence {result.key_confidence:.2f}")
    return 0
