"""Peak memory of decoding a long song: StemBot's streaming decode vs reading ffmpeg's whole output.

Each decode runs in a fresh process (its peak RSS is the measure), on the same 20-minute file.
The floor is the decoded audio itself: float32 stereo at 44.1 kHz, 423 MB for 20 minutes.

    .venv/bin/python bench/decode_memory.py [--minutes 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHILD = r"""
import json, resource, subprocess, sys, time
import numpy as np
from separation_worker import audio_io
path, how, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if how == "stembot":
    samples = audio_io.decode(path, limit).samples
else:  # the whole of ffmpeg's output in memory, then an array of it, then de-interleaved
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-ac", "2", "-ar", "44100", "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    samples = np.frombuffer(raw, dtype="<f4").reshape(-1, 2).T.copy()
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mb": (peak - base) / 1024, "audio_mb": samples.nbytes / 2**20, "seconds": seconds}))
"""


def measure(path: Path, how: str, limit_s: float) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), how, str(limit_s)], capture_output=True,
                          text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0)
    args = parser.parse_args()
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        song = Path(tmp) / "long.mp3"
        started = time.perf_counter()
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"sine=440:duration={seconds}", "-f", "lavfi",
                        "-i", f"anoisesrc=d={seconds}:a=0.1", "-filter_complex", "amerge=inputs=2", "-ac", "2",
                        "-b:a", "128k", str(song)], check=True)
        print(f"{args.minutes:.0f}-minute MP3 made in {time.perf_counter() - started:.1f} s")
        rows = {how: measure(song, how, seconds + 60) for how in ("whole-output", "stembot")}
    audio = rows["stembot"]["audio_mb"]
    print(f"decoded audio: {audio:.0f} MB (float32 stereo 44.1 kHz)")
    print(f"{'decode':<14}{'peak RSS MB':>12}{'x audio':>9}{'seconds':>9}")
    for how, row in rows.items():
        print(f"{how:<14}{row['peak_mb']:>12.0f}{row['peak_mb'] / audio:>8.2f}x{row['seconds']:>9.1f}")
    print(f"ratio whole-output / stembot: {rows['whole-output']['peak_mb'] / rows['stembot']['peak_mb']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
