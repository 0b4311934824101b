"""Each module registers one `stembot` subcommand: register(subparsers) sets `handler(args, settings)`."""

from . import analyze, discord, models, separate, status, telegram, web, worker

COMMANDS = (separate, analyze, models, worker, web, telegram, discord, status)
