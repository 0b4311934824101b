"""STEMBOT_COMPILE=true with a compiler that cannot run: a real torch.compile failure, not a simulated one.

A subprocess (so inductor reads the broken CXX fresh, with an empty kernel cache) separates with the tiny
BS-Roformer: the failure must turn into eager running with one warning line and results equal to eager's.
Run as `python -m tests.test_compile_fallback {warm-up|mid-job} OUT.npz`, it is that subprocess.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from separation_worker.engine import SeparationEngine
from separation_worker.inference.device import run_config
from separation_worker.models.zoo import DEFAULT_ENSEMBLE, Ensemble
from stembot.settings import Settings
from tests.conftest import music

ROOT = Path(__file__).resolve().parents[1]
BS_ROFORMER = DEFAULT_ENSEMBLE.members[0]  # the smallest compile: one transformer block per layer
WARNING = "torch.compile failed for BS-Roformer ("


def _song() -> np.ndarray:
    return music(3.0, seed=3)  # a few chunks, so the mid-job failure hits the first of several


def _separate_compiled(mode: str, out: Path) -> None:
    warnings.filterwarnings("ignore")  # the libraries' import-time deprecation noise, as `stembot` does
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    engine = SeparationEngine.from_settings(Settings.from_env(dotenv=False))
    assert engine.run.compile and engine.run.device.type == "cpu"
    # warm-up: the failure comes at load's warm-up; mid-job: no warm-up, so at the song's first chunk.
    engine.load(allow_download=False, warm_up=mode == "warm-up")
    result = engine.separate(_song())
    np.savez(out, vocals=result.vocals, instrumental=result.instrumental)


@pytest.fixture(scope="module")
def eager(model_dir) -> dict[str, np.ndarray]:
    engine = SeparationEngine(Ensemble(members=(BS_ROFORMER,)), model_dir, run_config("cpu", compile_setting="false"))
    result = engine.separate(_song())
    return {"vocals": result.vocals, "instrumental": result.instrumental}


@pytest.mark.parametrize("mode", ["warm-up", "mid-job"])
def test_compile_failure_runs_eagerly_with_one_warning(mode, model_dir, eager, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEMBOT_", "TORCH"))}
    env.update({
        "STEMBOT_MODEL_DIR": str(model_dir),
        "STEMBOT_DEVICE": "cpu",
        "STEMBOT_COMPILE": "true",
        "STEMBOT_ENSEMBLE": json.dumps([BS_ROFORMER.to_dict()]),
        "CXX": str(tmp_path / "no-such-compiler" / "g++"),  # inductor's C++ compiler on CPU
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),  # empty: no kernel cached by an earlier run
        "PYTHONPATH": str(ROOT),
    })
    out = tmp_path / "stems.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.test_compile_fallback", mode, str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log_lines = [line for line in proc.stderr.splitlines() if line.startswith(("WARNING", "ERROR", "CRITICAL"))]
    assert len(log_lines) == 1, proc.stderr[-3000:]
    assert WARNING in log_lines[0] and log_lines[0].endswith("), running eagerly"), log_lines[0]
    assert "C++ compiler" in log_lines[0]  # the short reason names what is missing
    assert "Traceback" not in proc.stderr
    compiled = np.load(out)
    for stem in ("vocals", "instrumental"):
        np.testing.assert_allclose(compiled[stem], eager[stem], rtol=0, atol=1e-6)


if __name__ == "__main__":
    _separate_compiled(sys.argv[1], Path(sys.argv[2]))
