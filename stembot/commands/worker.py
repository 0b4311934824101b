"""`stembot worker`: a GPU worker draining the job queue (run one per GPU)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from stembot.startup import require_redis


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("worker", help="run a separation worker on the Redis job queue")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    require_redis(settings.redis_url)  # before loading models, and before arq's own retries and their log lines
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
