"""The Discord front end: slash commands over the job service (discord.py 2.x, app commands)."""

from .app import StemBot, create_bot, run, serve

__all__ = ["StemBot", "create_bot", "run", "serve"]
