"""Separation speed: StemBot's engine vs audio-separator's own Separator, side by side in one run.

For each model of the ensemble: seconds of compute per minute of audio on both paths (same
checkpoint, same device, same chunking settings), their ratio, and the SNR between the two
outputs (ours against audio-separator's, which runs fp32 by default).

    .venv/bin/python bench/separation.py                       # tiny random-weight models, CPU, < 1 min
    .venv/bin/python bench/separation.py --real-size --device cuda --seconds 60
    .venv/bin/python bench/separation.py --model-dir ~/.cache/stembot/models   # real checkpoints
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from separation_worker.engine import SeparationEngine  # noqa: E402
from separation_worker.inference.device import run_config  # noqa: E402
from separation_worker.models.zoo import DEFAULT_ENSEMBLE  # noqa: E402
from tests.support.model_factory import DOWNLOAD_CHECKS, write_ensemble  # noqa: E402


def test_signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Tones, a pulse and noise: enough structure that every band carries signal."""
    rng = np.random.default_rng(seed)
    sr = 44100
    t = np.arange(int(seconds * sr)) / sr
    tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / (i + 1) for i, f in enumerate((110, 220, 330, 523, 880)))
    pulse = (np.sin(2 * np.pi * 2 * t) > 0.9) * rng.standard_normal(t.size)
    x = np.stack([tones + pulse, np.roll(tones, 300) + pulse]) + 0.05 * rng.standard_normal((2, t.size))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    noise = np.sum((estimate - reference) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(reference**2) / noise))


def vocals_of(demixed) -> np.ndarray:
    """audio-separator's vocals, whatever case the model's YAML spells them in."""
    if not isinstance(demixed, dict):
        return np.asarray(demixed)
    return np.asarray(next(stem for name, stem in demixed.items() if name.casefold() == "vocals"))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-size", action="store_true", help="random weights of the published configurations")
    parser.add_argument("--model-dir", type=Path, help="use the checkpoints already in this folder (e.g. real ones)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the test audio")
    parser.add_argument("--batch-size", type=int, default=0, help="chunks per forward pass (0: by device)")
    parser.add_argument("--compile", default="auto", choices=("auto", "true", "false"))
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR)

    model_dir = args.model_dir or Path(tempfile.mkdtemp(prefix="stembot-bench-"))
    if not args.model_dir:
        write_ensemble(model_dir, size="real" if args.real_size else "tiny")
    checks = model_dir / "download_checks.json"
    if not checks.exists():  # a real model dir keeps the list audio-separator downloaded
        checks.write_text(json.dumps(DOWNLOAD_CHECKS))

    run = run_config(args.device, args.batch_size, args.compile)
    engine = SeparationEngine(DEFAULT_ENSEMBLE, model_dir, run)
    engine.load(allow_download=False)
    mix = test_signal(args.seconds)
    minutes = args.seconds / 60

    from audio_separator.separator import Separator

    theirs_separator = Separator(
        model_file_dir=str(model_dir), output_dir=tempfile.mkdtemp(), log_level=logging.ERROR
    )
    x = torch.from_numpy(mix).to(run.device)
    warmup = torch.from_numpy(test_signal(min(args.seconds, 12.0), seed=1)).to(run.device)

    rows = []
    for model in engine._models:
        spec = model.spec
        engine.separate_model(model, warmup)  # compiles (CUDA) and warms caches; not timed
        synchronize(run.device)
        started = time.perf_counter()
        ours, _ = engine.split_of(model, engine.separate_model(model, x), x)
        synchronize(run.device)
        ours_s = time.perf_counter() - started

        theirs_separator.load_model(spec.checkpoint)
        instance = theirs_separator.model_instance
        instance.demix(test_signal(12.0, seed=1), override_model_segment_size=False)  # same warm-up
        synchronize(run.device)
        started = time.perf_counter()
        theirs = instance.demix(mix.copy(), override_model_segment_size=False)
        synchronize(run.device)
        theirs_s = time.perf_counter() - started
        theirs = vocals_of(theirs)

        rows.append(
            {
                "model": spec.name,
                "ours_s_per_min": ours_s / minutes,
                "audio_separator_s_per_min": theirs_s / minutes,
                "speedup": theirs_s / ours_s,
                "snr_db": snr_db(ours.float().cpu().numpy(), np.asarray(theirs)),
            }
        )

    kind = "real-checkpoints" if args.model_dir else ("real-size random" if args.real_size else "tiny random")
    gpu = torch.cuda.get_device_name() if run.device.type == "cuda" else ""
    print(f"\nSeparation benchmark · {kind} models · {run.device} {gpu} · {run.precision} · batch {run.batch_size}"
          f" · compile {run.compile} · {args.seconds:.0f} s of audio")
    print(f"{'model':<22}{'StemBot s/min':>15}{'audio-separator s/min':>24}{'speed-up':>10}{'SNR dB':>9}")
    for r in rows:
        print(f"{r['model']:<22}{r['ours_s_per_min']:>15.2f}{r['audio_separator_s_per_min']:>24.2f}"
              f"{r['speedup']:>9.1f}x{r['snr_db']:>9.1f}")
    ours_total = sum(r["ours_s_per_min"] for r in rows)
    theirs_total = sum(r["audio_separator_s_per_min"] for r in rows)
    print(f"{'ensemble':<22}{ours_total:>15.2f}{theirs_total:>24.2f}{theirs_total / ours_total:>9.1f}x")
    if args.json:
        args.json.write_text(json.dumps({"device": str(run.device), "gpu": gpu, "precision": run.precision,
                                         "kind": kind, "seconds": args.seconds, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
