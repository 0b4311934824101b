"""Throughput of one worker (issue 14): songs per hour for N queued songs, sequential vs pipelined, in one run.

N synthetic songs are submitted the way the service does (SeparationService.submit: real Redis, real SQLite in a
temp data dir, uploads in the file store) and drained by the real arq worker (separation_worker.worker's
WorkerSettings, in this process), once with jobs_per_worker=1 (today's order: one job from fetch to encode) and
once with several jobs at once taking turns on the device. The engine is the one stand-in: its separation sleeps
a fixed time per song while holding the device lock (the real `SeparationEngine.separate` lock) and returns half
the mix as vocals; everything else (decode, loudness, BPM/key, encode, result.json, SQLite, progress) is real.

    .venv/bin/python bench/worker_throughput.py [--songs 6] [--gpu-seconds 5] [--song-seconds 30] [--jobs 2]

Reports seconds per song for both, the stand-in's device time, the CPU stages per song (measured in the
sequential run, from the jobs' own timings) and the ratio to sequential. Seconds per song are the steady-state
interval between finished songs ((last done - first done) / (N - 1)); the end-to-end time / N, which also counts
filling and draining the pipeline once, is printed beside it. Target: pipelined within 10 % of
max(device time, CPU stages per song). Uses Redis db 4 (flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from arq.worker import Worker  # noqa: E402

from bot.requests import JobHandle, UploadSource, UserIdentity  # noqa: E402
from bot.service import SeparationService  # noqa: E402
from separation_worker.engine import EnsembleOutput, ModelProgress, SeparationEngine  # noqa: E402
from separation_worker.inference.device import run_config  # noqa: E402
from separation_worker.models.zoo import DEFAULT_ENSEMBLE  # noqa: E402
from separation_worker.pipeline import separate_song  # noqa: E402
from separation_worker.worker import worker_settings  # noqa: E402
from stembot.settings import Settings  # noqa: E402
from tests.conftest import music, write_audio  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/4"
CPU_STAGES = ("fetch", "decode", "loudness", "analyze", "encode")


class StandInEngine(SeparationEngine):
    """A fixed-time separation: sleeps `gpu_seconds` per song (inside `separate`'s device lock); vocals = mix / 2."""

    def __init__(self, model_dir: Path, gpu_seconds: float):
        super().__init__(DEFAULT_ENSEMBLE, model_dir, run_config("cpu"))
        self.gpu_seconds = gpu_seconds

    def load(self, *args, **kwargs) -> None:  # no models
        pass

    def run_ensemble(self, mix: np.ndarray, progress: ModelProgress | None = None) -> EnsembleOutput:
        members = self.ensemble.members
        seconds: dict[str, float] = {}
        for index, member in enumerate(members):
            started = time.perf_counter()
            for step in range(1, 11):
                time.sleep(self.gpu_seconds / len(members) / 10)
                if progress:
                    progress(index, member.name, step / 10)
            seconds[member.name] = time.perf_counter() - started
        vocals = (0.5 * mix).astype(np.float32)
        return EnsembleOutput(vocals=vocals, instrumental=mix - vocals, per_model_vocals={},
                              seconds_per_model=seconds)


async def drain(tmp: Path, songs: list[bytes], engine: StandInEngine, jobs_per_worker: int) -> dict:
    """Queue every song, then run one real worker until all are done; the done times and each job's timings."""
    client = aioredis.from_url(REDIS_URL)
    await client.flushdb()
    await client.aclose()
    settings = Settings.from_env({
        "REDIS_URL": REDIS_URL, "STEMBOT_DATA_DIR": str(tmp / f"data-{jobs_per_worker}"),
        "STEMBOT_MODEL_DIR": str(tmp / "models"), "STEMBOT_DEVICE": "cpu",
        "STEMBOT_PUBLIC_URL": "http://localhost", "STEMBOT_SECRET_KEY": "bench-secret-key-0123456789",
        "STEMBOT_MAX_QUEUE": "1000", "STEMBOT_JOBS_PER_WORKER": str(jobs_per_worker),
    })
    async with await SeparationService.start(settings) as service:
        handles = []
        for i, data in enumerate(songs):  # one Free user per song: one song each
            handle = await service.submit(UserIdentity("telegram", f"{jobs_per_worker}{i:04d}"),
                                          UploadSource(f"song{i}.mp3", data=data))
            assert isinstance(handle, JobHandle), handle
            handles.append(handle)

        async def done_at(job_id: str) -> float:
            async for event in service.watch(job_id):
                if event.terminal:
                    assert event.state == "done", (job_id, event)
                    return time.perf_counter()
            raise RuntimeError(f"job {job_id}: the watch ended early")

        spec = worker_settings(settings, engine)  # the real WorkerSettings (poll delay and all)
        worker = Worker(**{k: v for k, v in vars(spec).items() if not k.startswith("_")}, handle_signals=False)
        started = time.perf_counter()
        task = asyncio.create_task(worker.main())
        try:
            finished = await asyncio.wait_for(asyncio.gather(*(done_at(h.job_id) for h in handles)), 3600)
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await worker.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        timings = [(await service.job(h.job_id)).result["timings"] for h in handles]  # type: ignore[union-attr]
        attempts = [(await service.job(h.job_id)).attempts for h in handles]  # type: ignore[union-attr]
    assert attempts == [1] * len(handles), attempts
    done = sorted(t - started for t in finished)
    return {"done": done, "timings": timings}


def per_song(run: dict) -> tuple[float, float]:
    """(steady-state seconds per song, end-to-end seconds per song)."""
    done = run["done"]
    steady = (done[-1] - done[0]) / (len(done) - 1) if len(done) > 1 else done[0]
    return steady, done[-1] / len(done)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--songs", type=int, default=6, help="songs queued (N)")
    parser.add_argument("--gpu-seconds", type=float, default=5.0, help="the stand-in separation's time per song")
    parser.add_argument("--song-seconds", type=float, default=30.0, help="length of each synthetic song")
    parser.add_argument("--jobs", type=int, default=2, help="jobs_per_worker for the pipelined run")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="stembot-throughput-"))
    (tmp / "models").mkdir()
    songs = [write_audio(tmp / f"song{i}.mp3", music(args.song_seconds, seed=i, level=0.4)).read_bytes()
             for i in range(args.songs)]
    engine = StandInEngine(tmp / "models", args.gpu_seconds)
    # First calls (imports, numba/FFT plans) out of the way, so neither run pays them.
    warm = StandInEngine(tmp / "models", 0.0)
    await asyncio.to_thread(separate_song, tmp / "song0.mp3", tmp / "warm", warm,
                            Settings.from_env({"STEMBOT_MODEL_DIR": str(tmp / "models"), "STEMBOT_DEVICE": "cpu"}),
                            fmt=["mp3", "flac"])

    print(f"{args.songs} songs of {args.song_seconds:.0f} s, stand-in separation {args.gpu_seconds:.2f} s/song, "
          f"through the real arq worker (Redis db 4, SQLite in {tmp})")
    sequential = await drain(tmp, songs, engine, 1)
    pipelined = await drain(tmp, songs, engine, args.jobs)

    stage_means = {s: statistics.mean(t.get(s) or 0.0 for t in sequential["timings"]) for s in CPU_STAGES}
    cpu = sum(stage_means.values())
    separate = statistics.mean(t["separate"] for t in sequential["timings"])
    seq_steady, seq_e2e = per_song(sequential)
    pip_steady, pip_e2e = per_song(pipelined)
    bound = max(separate, cpu)
    print(f"CPU stages per song (sequential run): {cpu:.2f} s  ("
          + ", ".join(f"{s} {v:.2f}" for s, v in stage_means.items() if v) + ")")
    print(f"stand-in device time per song:      {separate:.2f} s   (sum {separate + cpu:.2f} s, "
          f"slower side {bound:.2f} s)")
    print(f"{'':34}{'s/song':>8}{'songs/h':>9}{'e2e s/song':>12}")
    for name, steady, e2e in (("sequential (jobs_per_worker=1)", seq_steady, seq_e2e),
                              (f"pipelined (jobs_per_worker={args.jobs})", pip_steady, pip_e2e)):
        print(f"{name:34}{steady:8.2f}{3600 / steady:9.0f}{e2e:12.2f}")
    print(f"pipelined / sequential: {pip_steady / seq_steady:.2f}  (end to end {pip_e2e / seq_e2e:.2f}); "
          f"pipelined / slower side: {pip_steady / bound:.3f}")
    met = pip_steady <= 1.10 * bound
    print(f"target (pipelined within 10 % of the slower side): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
