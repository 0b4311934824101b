"""`stembot discord`: the Discord bot (slash commands over the job service)."""

from __future__ import annotations

import argparse
import logging

from stembot.config_check import require


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("discord", help="run the Discord bot")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    require(settings, "discord")  # every bad setting named in a line each, before the libraries load
    from bot.discord.app import run as run_bot

    logging.getLogger("bot").setLevel(logging.INFO)
    # discord.py's DEBUG records carry webhook URLs, which contain interaction tokens: never let them through;
    # its INFO lines ("logging in using static token") say less than ours ("Discord bot ... is connected").
    logging.getLogger("discord").setLevel(logging.WARNING)
    run_bot(settings)
    return 0
