"""CPU stages of one song, timed side by side in one run: decode, loudness, analyze, encode.

The loudness stage (both stems normalized and the song's loudness for the silence test, as the pipeline runs it) is
printed as a ratio to one plain pyloudnorm measurement of the mix, timed in the same run.
Two songs: a dynamic one (its vocals need limiting) and a loud master (tanh-saturated).

    .venv/bin/python bench/stages.py                 # a 5-minute song
    .venv/bin/python bench/stages.py --seconds 90
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyloudnorm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from separation_worker import audio_io, loudness  # noqa: E402
from separation_worker.analysis import analyze  # noqa: E402
from tests import synth_music  # noqa: E402
from tests.conftest import music  # noqa: E402

SR = audio_io.SAMPLE_RATE


def best_of(repeats: int, fn) -> tuple[float, object]:
    """Fastest of `repeats` runs (a shared machine's noise only ever adds time)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def tiled(audio: np.ndarray, seconds: float) -> np.ndarray:
    n = int(seconds * SR)
    return np.ascontiguousarray(np.tile(audio, (1, -(-n // audio.shape[1])))[:, :n], dtype=np.float32)


def song_parts(seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(vocals-like, instrumental) parts: two rendered songs (FluidSynth), or numpy music without it."""
    if synth_music.fluidsynth_available():
        specs = synth_music.eval_set(5, 4)
        melody, band = (synth_music.render_song(s)[1] for s in (specs[1], specs[0]))
    else:
        melody, band = music(20.0, seed=1), music(20.0, seed=2)
    return tiled(melody, seconds) * np.float32(0.6), tiled(band, seconds)


def loudness_stage(vocals: np.ndarray, instrumental: np.ndarray) -> list:
    """As the pipeline runs it: both stems, compared with their sum for relative silence."""
    stems = loudness.normalize_stems({"vocals": vocals, "instrumental": instrumental}, SR, ceiling_dbtp=-1.5)
    return list(stems.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0, help="song length (default 300)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    vocals, band = song_parts(args.seconds)
    loud_band = (np.tanh(4 * band / np.abs(band).max()) * 0.95).astype(np.float32)
    rows = {}
    print(f"CPU stages · {args.seconds:.0f} s song · best of {args.repeats}")
    for name, instrumental in (("dynamic", band), ("loud master", loud_band)):
        mix = vocals + instrumental
        reference, _ = best_of(args.repeats, lambda m=mix: pyloudnorm.Meter(SR).integrated_loudness(m.T.astype(np.float64)))
        stage, results = best_of(args.repeats, lambda i=instrumental: loudness_stage(vocals, i))
        limited = [r.limited for _, r in results]  # type: ignore[union-attr,attr-defined]
        rows[name] = {"pyloudnorm_s": reference, "loudness_s": stage, "ratio": stage / reference, "limited": limited}
        print(f"  {name:<12} loudness (both stems)       {stage:6.2f} s · one pyloudnorm measurement of the mix "
              f"{reference:5.2f} s · ratio {stage / reference:4.1f}x (target <= 3x) · limited {limited}")

    mix = vocals + band
    with tempfile.TemporaryDirectory() as tmp:
        source = audio_io.encode(mix, Path(tmp) / "song.flac", "flac")
        decode_s, decoded = best_of(args.repeats, lambda: audio_io.decode(source, args.seconds + 60))
        analyze_s, analysis = best_of(args.repeats, lambda: analyze(band, SR))

        def encode_all() -> None:
            with ThreadPoolExecutor(4) as pool:  # ffmpeg runs in its own processes
                jobs = [pool.submit(audio_io.encode, s, Path(tmp) / f"{i}.{fmt}", fmt)
                        for i, s in enumerate((vocals, band)) for fmt in ("mp3", "flac")]
                for job in jobs:
                    job.result()

        encode_s, _ = best_of(args.repeats, encode_all)
    rows["stages"] = {"decode_s": decode_s, "analyze_s": analyze_s, "encode_mp3_flac_s": encode_s}
    print(f"  decode {decode_s:.2f} s · analyze (BPM/key) {analyze_s:.2f} s ({analysis.summary()}) · "  # type: ignore[attr-defined]
          f"encode both stems to MP3 + FLAC, concurrently {encode_s:.2f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
