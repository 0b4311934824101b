"""Each module registers one `stembot` subcommand: register(subparsers) sets `handler(args, settings)`."""

from . import analyze, models, separate, telegram, web, worker

COMMANDS = (separate, analyze, models, worker, web, telegram)
