"""`stembot web`: serves result files at signed, expiring download links."""

from __future__ import annotations

import argparse
import logging


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("web", help="serve download links for finished jobs (HTTP)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    from bot.web import run as run_web

    logging.getLogger("aiohttp.access").setLevel(logging.INFO)
    run_web(settings, args.host, args.port)
    return 0
