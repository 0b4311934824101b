"""`stembot web`: serves result files at signed, expiring download links."""

from __future__ import annotations

import argparse
import errno
import logging
import os

from stembot.config_check import require
from stembot.settings import SettingsError

_BIND_ERRORS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("web", help="serve download links for finished jobs (HTTP)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    require(settings, "web")  # every bad setting named in a line each, before the libraries load
    from bot.web import run as run_web

    logging.getLogger("aiohttp.access").setLevel(logging.INFO)
    try:
        run_web(settings, args.host, args.port)
    except OSError as exc:
        if exc.errno not in _BIND_ERRORS:
            raise
        raise SettingsError(f"cannot listen on {args.host}:{args.port} ({os.strerror(exc.errno)}): "
                            "choose another --host or --port") from None
    return 0
