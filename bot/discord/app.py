"""The bot itself: a `commands.Bot` with the StemBot cog, pointed at the configured Discord endpoints."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.ext import commands
from discord.gateway import DiscordWebSocket

from bot.service import SeparationService
from stembot.settings import Settings

from . import texts
from .cog import StemCog
from .delivery import EDIT_INTERVAL_S, TOKEN_LIFETIME, Deliveries

log = logging.getLogger(__name__)

DISCORD_GATEWAY = "wss://gateway.discord.gg/"


def point_at(settings: Settings) -> None:
    """Aim discord.py at the configured REST API and gateway.

    Both are class attributes that discord.py reads on every request (`Route.BASE`) and every connect
    (`DEFAULT_GATEWAY`); set here, in the factory, so that importing this package changes nothing.
    """
    discord.http.Route.BASE = settings.discord_api_base_url.rstrip("/")
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url or DISCORD_GATEWAY)


class StemTree(app_commands.CommandTree):
    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        if isinstance(error, app_commands.MissingPermissions):
            text = texts.ADMIN_ONLY
        elif isinstance(error, app_commands.NoPrivateMessage):
            text = texts.GUILD_ONLY
        else:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("/%s failed", command, exc_info=getattr(error, "original", error))
            text = texts.OOPS
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True)
            else:
                await interaction.response.send_message(text, ephemeral=True)
        except discord.HTTPException:
            pass


class StemBot(commands.Bot):
    def __init__(
        self,
        settings: Settings,
        service: SeparationService,
        *,
        token_lifetime: timedelta | float = TOKEN_LIFETIME,
        edit_interval: float = EDIT_INTERVAL_S,
        sync_commands: bool = True,
        **options: Any,
    ):
        super().__init__(
            command_prefix=commands.when_mentioned,  # no prefix commands: everything is an app command
            help_command=None,
            intents=discord.Intents(guilds=True),  # guilds and their roles; nothing privileged
            allowed_mentions=discord.AllowedMentions.none(),  # song titles are user input
            tree_cls=StemTree,
            **options,
        )
        self.settings = settings
        self.service = service
        self.deliveries = Deliveries(self, service, token_lifetime=token_lifetime, edit_interval=edit_interval)
        self.sync_commands = sync_commands

    async def setup_hook(self) -> None:
        await self.add_cog(StemCog(self, self.service, self.settings, self.deliveries))
        if self.sync_commands:
            await self._sync()

    async def _sync(self) -> None:
        guild_id = self.settings.discord_guild_id
        if guild_id:  # a test server sees changes at once; global commands can take a while to appear
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
        else:
            synced = await self.tree.sync()
        log.info("synced %d commands%s", len(synced), f" to guild {guild_id}" if guild_id else "")


def create_bot(settings: Settings, service: SeparationService, **options: Any) -> StemBot:
    """The bot over `service`; options: token_lifetime, edit_interval, sync_commands, and discord.py's own."""
    point_at(settings)
    return StemBot(settings, service, **options)


async def serve(settings: Settings) -> None:
    """Run the bot until SIGINT/SIGTERM, then close it (deliveries under way finish first)."""
    settings.require("discord_bot_token", "secret_key", "public_url")
    async with await SeparationService.start(settings) as service:
        bot = create_bot(settings, service)
        loop = asyncio.get_running_loop()
        closing: list[asyncio.Task] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: closing.append(asyncio.create_task(bot.close())))
        async with bot:
            await bot.start(settings.discord_bot_token)
        await asyncio.gather(*closing)


def run(settings: Settings) -> None:
    asyncio.run(serve(settings))
