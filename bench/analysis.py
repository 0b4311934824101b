"""BPM and key accuracy on rendered songs with known answers: ours beside well-kept references.

    .venv/bin/python bench/analysis.py                       # every set, ours + librosa + essentia
    .venv/bin/python bench/analysis.py --sets harmonic,swing --methods ours -v

Sets come from two independent generators:
- `synth-1`, `synth-7`: tests/synth_music.py (the generator the first estimator was built on), seeds 1 and 7;
- `harmonic`, `sparse`, `swing`, `offtonic`, `additive`, `holdout`: tests/song_sets.py, written separately
  (harmonic/melodic minor, sparse arrangements, swing, songs that start off the tonic, a numpy synthesizer).
  `holdout` is held out of every decision about the estimator: it is only ever reported.
Renders are cached (STEMBOT_SYNTH_CACHE, default in the temp dir), so reruns are fast.

Methods: `ours` (separation_worker.analysis.analyze), `librosa` (beat_track + Krumhansl-Schmuckler on mean
chroma_cqt, what a plain script does), `essentia` (KeyExtractor + RhythmExtractor2013 multifeature, when
the essentia package is installed: `pip install essentia`). Scores: tempo within 4 % (`tempo`) and the same
allowing x2/x1/2 (`t x2`), the MIREX weighted key score (1 exact, 0.5 fifth, 0.3 relative, 0.2 parallel)
and the share of exact keys. `--stems` also runs ours on the mix and on the instrumental of the songs that
have a vocal line, and reports how often the two agree.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import librosa  # noqa: E402
import song_sets  # noqa: E402
import synth_music  # noqa: E402

from separation_worker.analysis import analyze, pitch_class  # noqa: E402

SR = 44100
KS_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KS_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
TEMPO_TOLERANCE = 0.04
SYNTH_SEEDS = {"synth-1": 1, "synth-7": 7}
ALL_SETS = (*SYNTH_SEEDS, *song_sets.SET_NAMES)
HELD_OUT = "holdout"


@dataclass(frozen=True)
class Case:
    """One song of a set: its truth and how to render it."""

    name: str
    bpm: float
    key: str  # "A minor"
    description: str
    render: Callable[[str], np.ndarray]  # stem ("mix" | "instrumental") -> float32 (2, n) at SR
    has_vocal: bool = False


@dataclass(frozen=True)
class Estimate:
    bpm: float | None
    key: str | None
    seconds: float


Method = Callable[[np.ndarray], tuple[float | None, str | None]]


def ours(audio: np.ndarray) -> tuple[float | None, str | None]:
    result = analyze(audio, SR)
    return result.bpm, result.key


def plain_librosa(audio: np.ndarray) -> tuple[float | None, str | None]:
    """What a plain librosa script would do."""
    y = librosa.resample(audio.mean(axis=0), orig_sr=SR, target_sr=22050)
    tempo, _ = librosa.beat.beat_track(y=y, sr=22050)
    chroma = librosa.feature.chroma_cqt(y=y, sr=22050).mean(axis=1)
    scores = [
        np.corrcoef(chroma, np.roll(profile, tonic))[0, 1] for profile in (KS_MAJOR, KS_MINOR) for tonic in range(12)
    ]
    best = int(np.argmax(scores))
    return float(np.atleast_1d(tempo)[0]), f"{synth_music.PITCH_NAMES[best % 12]} {'major' if best < 12 else 'minor'}"


def essentia_method() -> Method:
    import essentia

    essentia.log.infoActive = False
    import essentia.standard as es

    key_extractor = es.KeyExtractor(sampleRate=SR)
    rhythm = es.RhythmExtractor2013(method="multifeature")

    def run(audio: np.ndarray) -> tuple[float | None, str | None]:
        mono = np.ascontiguousarray(audio.mean(axis=0), dtype=np.float32)
        key, scale, _strength = key_extractor(mono)
        bpm = float(rhythm(mono)[0])
        tonic = synth_music.PITCH_NAMES[pitch_class(key)]
        return (bpm or None), f"{tonic} {scale}"

    return run


def methods(names: Iterable[str]) -> dict[str, Method]:
    available: dict[str, Callable[[], Method]] = {"ours": lambda: ours, "librosa": lambda: plain_librosa}
    if importlib.util.find_spec("essentia") is not None:
        available["essentia"] = essentia_method
    chosen = {}
    for name in names:
        if name not in available:
            print(f"(method {name} left out: {'pip install essentia' if name == 'essentia' else 'unknown'})")
            continue
        chosen[name] = available[name]()
    return chosen


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


def cases(set_name: str, count: int, synth_count: int) -> list[Case]:
    if set_name in SYNTH_SEEDS:
        specs = synth_music.eval_set(SYNTH_SEEDS[set_name], synth_count)
        return [
            Case(s.name, s.true_bpm, s.key, "", lambda stem, s=s: synth_music.render_song(s)[1]) for s in specs
        ]
    songs = song_sets.song_set(set_name, count)
    return [
        Case(s.name, s.bpm, s.key, s.style, lambda stem, s=s: song_sets.render(s, stem), s.has_vocal) for s in songs
    ]


def timed(method: Method, audio: np.ndarray) -> Estimate:
    start = time.perf_counter()
    bpm, key = method(audio)
    return Estimate(bpm, key, time.perf_counter() - start)


def score_row(label: str, method: str, songs: list[Case], estimates: list[Estimate]) -> str:
    pairs = list(zip(songs, estimates, strict=True))
    tempo = np.mean([tempo_correct(e.bpm, c.bpm, False) for c, e in pairs])
    octave = np.mean([tempo_correct(e.bpm, c.bpm, True) for c, e in pairs])
    keys = [key_score(e.key, c.key) for c, e in pairs]
    seconds = np.mean([e.seconds for _, e in pairs])
    return (
        f"| {label:<10} | {len(songs):>3} | {method:<8} | {tempo:5.3f} | {octave:5.3f} | {np.mean(keys):5.3f} "
        f"| {np.mean([k == 1.0 for k in keys]):5.3f} | {seconds:6.2f} |"
    )


def stems_row(label: str, songs: list[Case]) -> str | None:
    """Ours on the mix vs on the instrumental of the songs with a vocal line: same answers?"""
    vocal = [c for c in songs if c.has_vocal]
    if not vocal:
        return None
    mix = [timed(ours, c.render("mix")) for c in vocal]
    inst = [timed(ours, c.render("instrumental")) for c in vocal]
    same_bpm = np.mean([m.bpm is not None and i.bpm is not None and abs(m.bpm - i.bpm) <= 0.02 * i.bpm
                        for m, i in zip(mix, inst, strict=True)])
    same_key = np.mean([m.key == i.key for m, i in zip(mix, inst, strict=True)])
    mix_key = np.mean([key_score(e.key, c.key) for c, e in zip(vocal, mix, strict=True)])
    inst_key = np.mean([key_score(e.key, c.key) for c, e in zip(vocal, inst, strict=True)])
    mix_tempo = np.mean([tempo_correct(e.bpm, c.bpm, False) for c, e in zip(vocal, mix, strict=True)])
    inst_tempo = np.mean([tempo_correct(e.bpm, c.bpm, False) for c, e in zip(vocal, inst, strict=True)])
    return (
        f"| {label:<10} | {len(vocal):>3} | {mix_tempo:5.3f} / {inst_tempo:5.3f} | {mix_key:5.3f} / {inst_key:5.3f} "
        f"| {same_bpm:5.3f} | {same_key:5.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(ALL_SETS), help=f"comma-separated, of {', '.join(ALL_SETS)}")
    parser.add_argument("--count", type=int, default=48, help="songs per tests/song_sets.py set")
    parser.add_argument("--synth-count", type=int, default=72, help="songs per tests/synth_music.py set")
    parser.add_argument("--methods", default="ours,librosa,essentia")
    parser.add_argument("--stems", action="store_true", help="also ours on mix vs instrumental")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per song")
    args = parser.parse_args()
    if not synth_music.fluidsynth_available():
        sys.exit("fluidsynth and /usr/share/sounds/sf2/FluidR3_GM.sf2 are needed to render the sets")
    chosen = methods(args.methods.split(","))
    set_names = [s for s in args.sets.split(",") if s]
    unknown = set(set_names) - set(ALL_SETS)
    if unknown:
        sys.exit(f"unknown sets: {', '.join(sorted(unknown))}")
    set_names.sort(key=lambda s: s == HELD_OUT)  # the held-out set last

    rows, stem_rows = [], []
    for set_name in set_names:
        songs = cases(set_name, args.count, args.synth_count)
        audio = [c.render("mix") for c in songs]
        label = f"{set_name}*" if set_name == HELD_OUT else set_name
        for name, method in chosen.items():
            timed(method, audio[0])  # warm-up: imports, FFT plans and JIT are not per-song time
            estimates = [timed(method, a) for a in audio]
            rows.append(score_row(label, name, songs, estimates))
            if args.verbose:
                for c, e in zip(songs, estimates, strict=True):
                    flag = "" if tempo_correct(e.bpm, c.bpm, False) else "*"
                    bpm = "None" if e.bpm is None else f"{e.bpm:.1f}"
                    print(f"  {name:<8} {c.name:<14} {c.bpm:6.1f} {c.key:<9} -> {bpm:>6}{flag} {e.key} "
                          f"({key_score(e.key, c.key):.1f}) {c.description}")
            print(rows[-1], flush=True)
        if args.stems:
            row = stems_row(label, songs)
            if row:
                stem_rows.append(row)

    print(f"\ntempo within {TEMPO_TOLERANCE:.0%}; key: MIREX score; "
          f"* = held out of every decision about the estimator")
    print("| set        |   n | method   | tempo | t x2  | key   | exact | s/song |")
    print("|------------|----:|----------|------:|------:|------:|------:|-------:|")
    print("\n".join(rows))
    if stem_rows:
        print("\nOurs on the mix vs the instrumental (songs with a vocal line)")
        print("| set        |   n | tempo mix / inst | key mix / inst  | same BPM | same key |")
        print("|------------|----:|------------------|-----------------|---------:|---------:|")
        print("\n".join(stem_rows))


if __name__ == "__main__":
    main()
