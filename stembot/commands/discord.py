"""`stembot discord`: the Discord bot (slash commands over the job service)."""

from __future__ import annotations

import argparse
import logging

from stembot.startup import require_redis


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("discord", help="run the Discord bot")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    settings.require("discord_bot_token", "secret_key", "public_url")  # before importing discord.py: fail fast
    require_redis(settings.redis_url)
    from bot.discord.app import run as run_bot

    logging.getLogger("bot").setLevel(logging.INFO)
    # discord.py's DEBUG records carry webhook URLs, which contain interaction tokens: never let them through;
    # its INFO lines ("logging in using static token") say less than ours ("Discord bot ... is connected").
    logging.getLogger("discord").setLevel(logging.WARNING)
    run_bot(settings)
    return 0
