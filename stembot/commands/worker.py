"""`stembot worker`: a GPU worker draining the job queue; with STEMBOT_GPUS, one worker process per listed GPU."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from stembot.config_check import require


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("worker", help="run a separation worker on the Redis job queue")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    require(settings, "worker")  # before loading models, and before arq's own retries and their log lines
    if len(settings.gpus) > 1:
        from stembot.gpu_workers import run_per_gpu

        return run_per_gpu(settings.gpus, verbose=args.verbose)
    if settings.gpus:  # one GPU named: this process sees only it, as cuda:0 (before torch initializes CUDA)
        os.environ["CUDA_VISIBLE_DEVICES"] = settings.gpus[0]
    from arq.worker import create_worker

    from separation_worker.worker import shutdown, worker_settings

    logging.getLogger("separation_worker").setLevel(logging.INFO)
    logging.getLogger("arq").setLevel(logging.INFO)
    worker = create_worker(worker_settings(settings))
    try:
        worker.run()
    except asyncio.CancelledError:
        # SIGTERM just as a job finished: arq's close() re-raises that job's cancellation and skips on_shutdown,
        # and the database's thread would then keep the process alive. Shut down ourselves.
        worker.loop.run_until_complete(shutdown(worker.ctx))
    return 0
