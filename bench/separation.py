"""Separation speed: StemBot's engine vs audio-separator's own Separator, side by side in one run.

For each model of the ensemble: seconds of compute per minute of audio (our engine on the whole test
signal; audio-separator, same checkpoint, device and chunking, on its first --compare-seconds), their
ratio, the SNR between the two outputs, and, where we run fp16 or compiled (CUDA), the SNR of our output
against our own fp32 eager output (target >= 40 dB per model), compile seconds and peak GPU memory. Then
the presets (`stembot separate --preset`): s per audio-minute of each, from the rows of its models.

    .venv/bin/python bench/separation.py                       # tiny random-weight models, CPU, ~1 min
    .venv/bin/python bench/separation.py --real-size --device cuda --seconds 300 --json gpu.json
    .venv/bin/python bench/separation.py --model-dir ~/.cache/stembot/models   # real checkpoints

Needs no network and no ffmpeg (the test signal is made in numpy). Our numbers come first and are written
to --json after every step; audio-separator's side (one chunk at a time, fp32: about 10x our GPU time) runs
last, on the shorter excerpt, and is left out if the run is past --deadline seconds by then.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from separation_worker.engine import SeparationEngine  # noqa: E402
from separation_worker.inference.device import run_config  # noqa: E402
from separation_worker.models.zoo import DEFAULT_ENSEMBLE, PRESETS, Ensemble  # noqa: E402
from tests.support.model_factory import DOWNLOAD_CHECKS, write_ensemble  # noqa: E402

SR = 44100


def test_signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Tones, a pulse and noise: enough structure that every band carries signal."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / (i + 1) for i, f in enumerate((110, 220, 330, 523, 880)))
    pulse = (np.sin(2 * np.pi * 2 * t) > 0.9) * rng.standard_normal(t.size)
    x = np.stack([tones + pulse, np.roll(tones, 300) + pulse]) + 0.05 * rng.standard_normal((2, t.size))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    noise = np.sum((estimate.astype(np.float64) - reference) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / noise))


def vocals_of(demixed) -> np.ndarray:
    """audio-separator's vocals, whatever case the model's YAML spells them in."""
    if not isinstance(demixed, dict):
        return np.asarray(demixed)
    return np.asarray(next(stem for name, stem in demixed.items() if name.casefold() == "vocals"))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def compiled_graphs() -> int:
    """Graphs torch.compile has made in this process (to show that no song recompiles)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return 0
    return int(counters["stats"]["unique_graphs"])


@contextlib.contextmanager
def without_ffmpeg_check() -> Iterator[None]:
    """audio-separator's Separator() refuses to start without ffmpeg, which it needs only to write files: the
    bench never has it write one, and a GPU machine may have no ffmpeg. Its check lets tests through."""
    if shutil.which("ffmpeg") or "PYTEST_CURRENT_TEST" in os.environ:
        yield
        return
    os.environ["PYTEST_CURRENT_TEST"] = "bench/separation.py"
    try:
        yield
    finally:
        del os.environ["PYTEST_CURRENT_TEST"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-size", action="store_true", help="random weights of the published configurations")
    parser.add_argument("--model-dir", type=Path, help="use the checkpoints already in this folder (e.g. real ones)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the test audio")
    parser.add_argument("--compare-seconds", type=float, default=60.0,
                        help="audio-separator and our fp32 reference run on this much of it (at most --seconds)")
    parser.add_argument("--batch-size", type=int, default=0, help="chunks per forward pass (0: by device)")
    parser.add_argument("--compile", default="auto", choices=("auto", "true", "false"))
    parser.add_argument("--presets", default=",".join(PRESETS), help=f"presets to report ({', '.join(PRESETS)})")
    parser.add_argument("--skip-audio-separator", action="store_true", help="our side only")
    parser.add_argument("--deadline", type=float, default=420.0,
                        help="seconds into the run after which audio-separator's side is left out")
    parser.add_argument("--json", type=Path, help="also write the numbers here (after every step)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("audio_separator", "torch", "root"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    began = time.perf_counter()

    def say(line: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f} s] {line}", flush=True)

    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {unknown}: one of {', '.join(PRESETS)}")
    # Every model of the presets asked for, once each, in the ensemble's order.
    wanted = {(m.checkpoint, m.config) for p in presets for m in PRESETS[p].members}
    members = tuple(m for m in DEFAULT_ENSEMBLE.members if (m.checkpoint, m.config) in wanted)

    model_dir = args.model_dir or Path(tempfile.mkdtemp(prefix="stembot-bench-"))
    if not args.model_dir:
        write_ensemble(model_dir, size="real" if args.real_size else "tiny", ensemble=Ensemble(members))
        say(f"wrote {'real-size' if args.real_size else 'tiny'} random-weight models to {model_dir}")
    checks = model_dir / "download_checks.json"
    if not checks.exists():  # a real model dir keeps the list audio-separator downloaded
        checks.write_text(json.dumps(DOWNLOAD_CHECKS))

    run = run_config(args.device, args.batch_size, args.compile)
    cuda = run.device.type == "cuda"
    engine = SeparationEngine(Ensemble(members), model_dir, run)
    engine.load(allow_download=False, warm_up=False)
    say(f"loaded {len(members)} models on {run.device} ({run.precision}, batch {run.batch_size}, compile {run.compile})")
    # On a GPU every path gets one untimed run first (cuDNN's autotuning, the allocator); on a CPU only the tiny
    # models do (a real-size chunk costs minutes there and warms nothing).
    warm = run.device.type != "cpu" or not (args.real_size or args.model_dir)
    reference = None  # our own fp32 eager engine, where ours runs otherwise
    if run.fp16 or run.compile:
        reference = SeparationEngine(Ensemble(members), model_dir, replace(run, fp16=False, compile=False))
        reference.load(allow_download=False)

    mix = test_signal(args.seconds)
    compare_seconds = min(args.compare_seconds, args.seconds)
    excerpt = np.ascontiguousarray(mix[:, : int(compare_seconds * SR)])
    warmup = test_signal(min(args.seconds, 12.0), seed=1)
    x, x_excerpt, x_warm = (torch.from_numpy(a).to(run.device) for a in (mix, excerpt, warmup))
    minutes, compare_minutes = args.seconds / 60, compare_seconds / 60

    kind = "real checkpoints" if args.model_dir else ("real-size random" if args.real_size else "tiny random")
    gpu = torch.cuda.get_device_name() if cuda else ""
    report: dict = {"device": str(run.device), "gpu": gpu, "precision": run.precision, "batch_size": run.batch_size,
                    "compile": run.compile, "kind": kind, "seconds": args.seconds, "compare_seconds": compare_seconds,
                    "rows": [], "presets": {}}

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))

    ours_excerpt: dict[str, np.ndarray] = {}
    for model in engine._models:
        name = model.spec.name
        row: dict = {"model": name}
        if run.compile:
            started = time.perf_counter()
            engine.warm_up(model)
            row["compile_s"] = time.perf_counter() - started
        compiled = engine._compiled.get(id(model))
        row["compiled"] = compiled.label if compiled is not None else "eager"
        if warm:
            engine.separate_model(model, x_warm)
        synchronize(run.device)
        graphs = compiled_graphs()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        ours, _ = engine.split_of(model, engine.separate_model(model, x), x)
        synchronize(run.device)
        row["ours_s_per_min"] = (time.perf_counter() - started) / minutes
        if cuda:
            row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        row["graphs_compiled_during_song"] = compiled_graphs() - graphs
        if compare_seconds == args.seconds:
            ours_excerpt[name] = ours.float().cpu().numpy()
        else:
            vocals, _ = engine.split_of(model, engine.separate_model(model, x_excerpt), x_excerpt)
            ours_excerpt[name] = vocals.float().cpu().numpy()
        del ours
        if reference is not None:
            ref_model = next(m for m in reference._models if m.spec.name == name)
            ref_vocals, _ = reference.split_of(ref_model, reference.separate_model(ref_model, x_excerpt), x_excerpt)
            row["snr_vs_fp32_db"] = snr_db(ours_excerpt[name], ref_vocals.float().cpu().numpy())
        report["rows"].append(row)
        save()
        compile_note = f", compile {row['compile_s']:.1f} s ({row['compiled']})" if run.compile else ""
        memory = f", peak {row['peak_gpu_mb']:.0f} MB" if cuda else ""
        fp32 = f", SNR vs fp32 {row['snr_vs_fp32_db']:.1f} dB" if "snr_vs_fp32_db" in row else ""
        say(f"{name}: {row['ours_s_per_min']:.2f} s/min{compile_note}{memory}{fp32}")
    if reference is not None:
        del reference
        if cuda:
            torch.cuda.empty_cache()
    if run.device.type != "cpu" and engine.ensemble == DEFAULT_ENSEMBLE:
        # The whole ensemble as a song runs it: the models back to back, combined, copied to the host.
        started = time.perf_counter()
        engine.separate(mix)
        report["ensemble_end_to_end_s_per_min"] = (time.perf_counter() - started) / minutes
        save()
        say(f"ensemble end to end: {report['ensemble_end_to_end_s_per_min']:.2f} s/min")

    if args.skip_audio_separator:
        say("audio-separator: skipped (--skip-audio-separator)")
    elif time.perf_counter() - began > args.deadline:
        say(f"audio-separator: left out, the run is past --deadline {args.deadline:.0f} s")
    else:
        from audio_separator.separator import Separator

        with without_ffmpeg_check():
            theirs_separator = Separator(model_file_dir=str(model_dir), output_dir=tempfile.mkdtemp(),
                                         log_level=logging.ERROR)
        for row in report["rows"]:
            if time.perf_counter() - began > args.deadline:
                say(f"audio-separator: {row['model']} left out, the run is past --deadline {args.deadline:.0f} s")
                continue
            spec = next(m.spec for m in engine._models if m.spec.name == row["model"])
            theirs_separator.load_model(spec.checkpoint)
            instance = theirs_separator.model_instance
            with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bars
                if warm:
                    instance.demix(warmup.copy(), override_model_segment_size=False)
                synchronize(run.device)
                started = time.perf_counter()
                theirs = vocals_of(instance.demix(excerpt.copy(), override_model_segment_size=False))
                synchronize(run.device)
            row["audio_separator_s_per_min"] = (time.perf_counter() - started) / compare_minutes
            row["speedup"] = row["audio_separator_s_per_min"] / row["ours_s_per_min"]
            row["snr_vs_audio_separator_db"] = snr_db(ours_excerpt[row["model"]], theirs)
            save()
            say(f"audio-separator {row['model']}: {row['audio_separator_s_per_min']:.2f} s/min")

    rows = {r["model"]: r for r in report["rows"]}
    for preset in presets:
        names = [m.name for m in PRESETS[preset].members]
        entry = {"models": names, "ours_s_per_min": sum(rows[n]["ours_s_per_min"] for n in names)}
        if all("audio_separator_s_per_min" in rows[n] for n in names):
            entry["audio_separator_s_per_min"] = sum(rows[n]["audio_separator_s_per_min"] for n in names)
        report["presets"][preset] = entry
    report["wall_s"] = time.perf_counter() - began
    save()

    print(f"\nSeparation benchmark · {kind} models · {run.device} {gpu} · {run.precision} · batch {run.batch_size}"
          f" · compile {run.compile} · {args.seconds:g} s of audio (audio-separator and fp32 reference:"
          f" {compare_seconds:g} s)")
    header = f"{'model':<22}{'StemBot s/min':>15}{'audio-sep. s/min':>18}{'speed-up':>10}{'SNR vs a-s':>12}"
    extra = run.compile or run.fp16
    if extra:
        header += f"{'SNR vs fp32':>13}{'compile s':>11}{'peak MB':>9}"
    print(header)

    def cell(row: dict, key: str, fmt: str, width: int) -> str:
        return f"{row[key]:>{width}{fmt}}" if key in row else f"{'-':>{width}}"

    for r in report["rows"]:
        line = (f"{r['model']:<22}{r['ours_s_per_min']:>15.2f}{cell(r, 'audio_separator_s_per_min', '.2f', 18)}"
                f"{cell(r, 'speedup', '.1f', 9)}{'x' if 'speedup' in r else ' '}{cell(r, 'snr_vs_audio_separator_db', '.1f', 12)}")
        if extra:
            line += (f"{cell(r, 'snr_vs_fp32_db', '.1f', 13)}{cell(r, 'compile_s', '.1f', 11)}"
                     f"{cell(r, 'peak_gpu_mb', '.0f', 9)}")
        print(line)
    for preset, entry in report["presets"].items():
        theirs_total = entry.get("audio_separator_s_per_min")
        ratio = f"{theirs_total / entry['ours_s_per_min']:>9.1f}x" if theirs_total else f"{'-':>10}"
        theirs_cell = f"{theirs_total:>18.2f}" if theirs_total else f"{'-':>18}"
        print(f"{'preset ' + preset:<22}{entry['ours_s_per_min']:>15.2f}{theirs_cell}{ratio}"
              f"   ({' + '.join(entry['models'])})")
    if "ensemble_end_to_end_s_per_min" in report:
        print(f"{'ensemble end to end':<22}{report['ensemble_end_to_end_s_per_min']:>15.2f}   (engine.separate)")
    if {"default", "fast"} <= set(report["presets"]):
        share = report["presets"]["fast"]["ours_s_per_min"] / report["presets"]["default"]["ours_s_per_min"]
        print(f"fast / default: {share:.3f} of the time ({1 / share:.1f}x faster)")
    low = [r["model"] for r in report["rows"] if r.get("snr_vs_fp32_db", float("inf")) < 40]
    if low:
        print(f"BELOW 40 dB against fp32: {', '.join(low)}")
    recompiled = [r["model"] for r in report["rows"] if r["graphs_compiled_during_song"]]
    if recompiled:
        print(f"recompiled during the song: {', '.join(recompiled)}")
    print(f"whole run: {report['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
