"""`stembot telegram`: the Telegram bot (long polling)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from stembot.config_check import require


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("telegram", help="run the Telegram bot")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    require(settings, "telegram")  # every bad setting named in a line each, before the libraries load
    from bot.telegram import serve

    logging.getLogger("bot").setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request lines would carry the bot token
    asyncio.run(serve(settings))
    return 0
