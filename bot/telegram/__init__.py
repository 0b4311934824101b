"""The Telegram front end: a thin python-telegram-bot adapter over bot.service."""

from .app import TelegramBot, serve

__all__ = ["TelegramBot", "serve"]
