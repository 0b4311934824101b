"""One worker process per GPU (STEMBOT_GPUS=0,1,...): each child sees only its device, as cuda:0.

Processes, not threads: a CUDA context, the models and torch.compile's caches are per process, and one GPU's
crash must not take the others' jobs with it. When any child ends, the others are stopped (SIGTERM: they finish
their heartbeat and hand their jobs back) and this process exits with the child's code, so the container's
restart policy sees the failure instead of a half-working worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

STOP_GRACE_S = 30.0


def child_env(gpu: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = gpu
    env["STEMBOT_GPUS"] = ""  # the child is one plain worker
    return env


def run_per_gpu(gpus: tuple[str, ...], verbose: bool = False) -> int:
    command = [sys.executable, "-m", "stembot.cli", *(["--verbose"] if verbose else []), "worker"]
    children = [subprocess.Popen(command, env=child_env(gpu)) for gpu in gpus]
    print(f"stembot: {len(children)} workers started, one per GPU ({', '.join(gpus)})", file=sys.stderr, flush=True)
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        while not stopping:
            ended = [child for child in children if child.poll() is not None]
            if ended:
                code = ended[0].returncode or 0
                code = code if code >= 0 else 128 - code  # killed by a signal: the shell's 128 + N
                gpu = gpus[children.index(ended[0])]
                print(f"stembot: the worker on GPU {gpu} exited with code {code}; stopping the others",
                      file=sys.stderr, flush=True)
                stop(signal.SIGTERM, None)
                break
            time.sleep(0.5)
    finally:
        deadline = time.monotonic() + STOP_GRACE_S
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return code
