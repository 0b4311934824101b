"""Benchmark BPM and key estimation on synthesized songs with known answers.

    .venv/bin/python bench/analysis.py [--count 72] [--seed 1] [--heldout-seed 7] [-v]

Songs are composed as MIDI (tests/synth_music.py) and rendered with FluidSynth through the GM
soundfont; renders are cached (STEMBOT_SYNTH_CACHE, default in the temp dir), so reruns are fast.
Our `analyze()` is compared with a plain librosa baseline (beat_track tempo + Krumhansl-Schmuckler
on mean chroma_cqt). Scores: tempo within 4 % allowing x2/x1/2 ("tempo acc") and without
("strict"), and the MIREX weighted key score (1 exact, 0.5 fifth, 0.3 relative, 0.2 parallel).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import librosa  # noqa: E402
import synth_music  # noqa: E402

from separation_worker.analysis import analyze, pitch_class  # noqa: E402

KS_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KS_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
TEMPO_TOLERANCE = 0.04


@dataclass(frozen=True)
class Estimate:
    bpm: float | None
    key: str | None  # "A minor"
    seconds: float
    bpm_confidence: float = float("nan")
    key_confidence: float = float("nan")


def ours(audio: np.ndarray, sr: int) -> tuple[float | None, str | None, float, float]:
    result = analyze(audio, sr)
    return result.bpm, result.key, result.bpm_confidence, result.key_confidence


def baseline(audio: np.ndarray, sr: int) -> tuple[float | None, str | None, float, float]:
    """What a plain librosa script would do."""
    y = librosa.resample(audio.mean(axis=0), orig_sr=sr, target_sr=22050)
    tempo, _ = librosa.beat.beat_track(y=y, sr=22050)
    chroma = librosa.feature.chroma_cqt(y=y, sr=22050).mean(axis=1)
    scores = [
        np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]
        for profile in (KS_MAJOR, KS_MINOR)
        for tonic in range(12)
    ]
    best = int(np.argmax(scores))
    mode = "major" if best < 12 else "minor"
    return float(np.atleast_1d(tempo)[0]), f"{synth_music.PITCH_NAMES[best % 12]} {mode}", float("nan"), float("nan")


def tempo_correct(estimate: float | None, truth: float, octave_errors_ok: bool) -> bool:
    if estimate is None:
        return False
    factors = (1.0, 2.0, 0.5) if octave_errors_ok else (1.0,)
    return any(abs(estimate - truth * f) <= TEMPO_TOLERANCE * truth * f for f in factors)


def key_score(estimate: str | None, truth: str) -> float:
    """MIREX weighted key score."""
    if estimate is None:
        return 0.0
    (est_tonic, est_mode), (tonic, mode) = ((pitch_class(k.split()[0]), k.split()[1]) for k in (estimate, truth))
    interval = (est_tonic - tonic) % 12
    if est_mode == mode:
        return {0: 1.0, 5: 0.5, 7: 0.5}.get(interval, 0.0)
    relative = 9 if mode == "major" else 3  # major -> relative minor a sixth up; minor -> major a third up
    if interval == relative:
        return 0.3
    return 0.2 if interval == 0 else 0.0


Method = Callable[[np.ndarray, int], tuple[float | None, str | None, float, float]]


def run(method: Method, audio: np.ndarray) -> Estimate:
    start = time.perf_counter()
    bpm, key, bpm_confidence, key_confidence = method(audio, synth_music.RENDER_SR)
    return Estimate(bpm, key, time.perf_counter() - start, bpm_confidence, key_confidence)


def evaluate(
    label: str, specs: list[synth_music.SongSpec], cache: Path | None, workers: int, verbose: bool
) -> tuple[list[str], str]:
    """Table rows (ours, baseline) and a line on how well our confidences separate right from wrong."""
    rendered = synth_music.render_many(specs, cache, workers)
    methods = {"ours": ours, "baseline": baseline}
    results: dict[str, list[Estimate]] = {name: [] for name in methods}
    run(ours, rendered[0][1])  # warm-up: imports, FFT plans and JIT must not count as per-song time
    run(baseline, rendered[0][1])
    for song, audio in rendered:
        row = [f"  {song.spec.name} {song.spec.true_bpm:6.1f} {song.spec.key:9s}"]
        for name, method in methods.items():
            est = run(method, audio)
            results[name].append(est)
            flag = "" if tempo_correct(est.bpm, song.spec.true_bpm, False) else "*"
            bpm = "None" if est.bpm is None else f"{est.bpm:.1f}"
            row.append(f"{name}={bpm}{flag} {est.key} ({key_score(est.key, song.spec.key):.1f})")
        if verbose:
            print(" | ".join(row), "|", song.description)
    lines = []
    for name, ests in results.items():
        truths = [s.true_bpm for s in specs]
        acc = np.mean([tempo_correct(e.bpm, t, True) for e, t in zip(ests, truths, strict=True)])
        strict = np.mean([tempo_correct(e.bpm, t, False) for e, t in zip(ests, truths, strict=True)])
        # BPM error of the strictly correct ones: how good the decimal is.
        errors = [abs(e.bpm - t) for e, t in zip(ests, truths, strict=True) if tempo_correct(e.bpm, t, False)]
        median_error = np.median(errors) if errors else float("nan")
        keys = [key_score(e.key, s.key) for e, s in zip(ests, specs, strict=True)]
        exact = np.mean([k == 1.0 for k in keys])
        seconds = np.mean([e.seconds for e in ests])
        lines.append(
            f"| {label:<18} | {name:<8} | {acc:9.3f} | {strict:6.3f} | {median_error:9.2f} "
            f"| {np.mean(keys):9.3f} | {exact:9.3f} | {seconds:9.3f} |"
        )
    mine = results["ours"]
    tempo_ok = [tempo_correct(e.bpm, s.true_bpm, True) for e, s in zip(mine, specs, strict=True)]
    key_ok = [key_score(e.key, s.key) == 1.0 for e, s in zip(mine, specs, strict=True)]

    def medians(values: list[float], ok: list[bool]) -> str:
        right = [v for v, k in zip(values, ok, strict=True) if k]
        wrong = [v for v, k in zip(values, ok, strict=True) if not k]
        wrong_median = np.median(wrong) if wrong else float("nan")
        return f"{np.median(right):.2f} right / {wrong_median:.2f} wrong (n={len(wrong)})"

    calibration = (
        f"  {label}, our median confidence: BPM {medians([e.bpm_confidence for e in mine], tempo_ok)}; "
        f"key {medians([e.key_confidence for e in mine], key_ok)}"
    )
    return lines, calibration


def four_minute_timing(specs: list[synth_music.SongSpec], cache: Path | None) -> float:
    """Seconds to analyze 4 minutes of 44.1 kHz stereo (songs back to back)."""
    audio = np.concatenate([synth_music.render_song(s, cache)[1] for s in specs[:12]], axis=1)
    audio = audio[:, : 240 * synth_music.RENDER_SR]
    start = time.perf_counter()
    analyze(audio, synth_music.RENDER_SR)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=72, help="songs per set")
    parser.add_argument("--seed", type=int, default=1, help="seed of the main set")
    parser.add_argument("--heldout-seed", type=int, default=7, help="seed of the held-out set (0: skip)")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=4, help="parallel FluidSynth renders")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per song")
    args = parser.parse_args()
    if not synth_music.fluidsynth_available():
        sys.exit("fluidsynth and /usr/share/sounds/sf2/FluidR3_GM.sf2 are needed to render the set")

    sets = [(f"main (seed {args.seed})", args.seed)]
    if args.heldout_seed:
        sets.append((f"held-out (seed {args.heldout_seed})", args.heldout_seed))
    header = (
        "| set                | method   | tempo acc | strict | med |err| | key score | key exact | s/song    |\n"
        "|--------------------|----------|-----------|--------|-----------|-----------|-----------|-----------|"
    )
    lines, calibrations = [], []
    for label, seed in sets:
        specs = synth_music.eval_set(seed, args.count)
        rows, calibration = evaluate(label, specs, args.cache_dir, args.workers, args.verbose)
        lines += rows
        calibrations.append(calibration)
    print(f"\n{args.count} songs per set, 20-30 s each; tempo tolerance 4 %; "
          "med |err| in BPM over strictly correct songs")
    print(header)
    print("\n".join(lines))
    print("\n".join(["", *calibrations]))
    seconds = four_minute_timing(synth_music.eval_set(args.seed, args.count), args.cache_dir)
    print(f"\n4-minute 44.1 kHz stereo song, ours: {seconds:.2f} s")


if __name__ == "__main__":
    main()
