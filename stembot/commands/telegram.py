"""`stembot telegram`: the Telegram bot (long polling)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from stembot.startup import require_redis


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("telegram", help="run the Telegram bot")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings) -> int:
    settings.require("telegram_bot_token", "secret_key", "public_url")  # before importing PTB: fail fast
    require_redis(settings.redis_url)
    from bot.telegram import serve

    logging.getLogger("bot").setLevel(logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request lines would carry the bot token
    asyncio.run(serve(settings))
    return 0
