"""`stembot health ROLE`: exit 0 if this machine's ROLE processes are healthy (for container healthchecks)."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

from separation_worker.contract.heartbeat import read_health

HTTP_TIMEOUT_S = 5.0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("health", help="exit 0 if the local worker, web or bot process is healthy")
    parser.add_argument("role", choices=("worker", "web", "telegram", "discord"))
    parser.add_argument("--port", type=int, default=8080, help="web: the port `stembot web` listens on (default 8080)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    if args.role == "web":
        healthy, summary = _web(args.port)
    else:
        health = read_health(settings.health_dir, args.role)
        healthy, summary = health.healthy, health.summary
    print(summary, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


def _web(port: int) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310 (a fixed local URL)
            return response.status == 200, f"web: {url} answered {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"web: {url} did not answer ({getattr(exc, 'reason', exc)})"
