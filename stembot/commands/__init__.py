"""Each module registers one `stembot` subcommand: register(subparsers) sets `handler(args, settings)`."""

from . import analyze, check, discord, health, models, separate, status, telegram, web, worker

COMMANDS = (separate, analyze, models, check, worker, web, telegram, discord, status, health)
