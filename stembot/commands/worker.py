"""`stembot worker`: a GPU worker draining the job queue (run one per GPU)."""

from __future__ import annotations

import argparse
import logging

from stembot.startup import require_redis


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("worker", help="run a separation worker on the Redis job queue")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    require_redis(settings.redis_url)  # before loading models, and before arq's own retries and their log lines
    from arq import run_worker

    from separation_worker.worker import worker_settings

    logging.getLogger("separation_worker").setLevel(logging.INFO)
    logging.getLogger("arq").setLevel(logging.INFO)
    run_worker(worker_settings(settings))
    return 0
