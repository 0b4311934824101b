"""Each module registers one `stembot` subcommand: register(subparsers) sets `handler(args, settings)`."""

from . import analyze, models, separate, status, telegram, web, worker

COMMANDS = (separate, analyze, models, worker, web, telegram, status)
