"""The bot itself: a `commands.Bot` with the StemBot cog, pointed at the configured Discord endpoints."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import timedelta
from typing import Any

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands
from discord.gateway import DiscordWebSocket

from bot.service import SeparationService
from separation_worker.contract.heartbeat import Heartbeat
from stembot.settings import Settings, SettingsError
from stembot.startup import network_reason

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
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice: don't warn it's missing
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
        self.deliveries = Deliveries(
            self, service, token_lifetime=token_lifetime, edit_interval=edit_interval, drain_s=settings.drain_seconds
        )
        self.sync_commands = sync_commands
        self.synced = ""  # what the last sync did, for the log line once connected

    def dispatch(self, event_name: str, /, *args: Any, **kwargs: Any) -> None:
        # discord.py retries a gateway it cannot reach forever, logging a traceback each time. If the first
        # connection fails, a setting or the network is wrong: discord.py dispatches "disconnect" inside its
        # except block, so raising here ends connect() with one line saying which.
        if event_name == "disconnect" and self.ws is None and not self.is_closed():
            error = sys.exc_info()[1]  # the connection error discord.py is handling
            if error is not None:
                raise SettingsError(_gateway_failure(self.settings, error)) from None
        super().dispatch(event_name, *args, **kwargs)

    async def on_ready(self) -> None:
        log.info("Discord bot %s is connected%s", self.user, self.synced)

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
        self.synced = f"; {len(synced)} commands synced" + (f" to guild {guild_id}" if guild_id else "")


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
        # Healthy while the gateway session is up: discord.py reconnects by itself, a long outage shows as stale.
        heartbeat = Heartbeat(settings.health_dir, "discord", healthy=lambda: bot.is_ready() and not bot.is_closed())
        heartbeat.start()
        try:
            async with bot:
                await login(bot, settings)
                await bot.connect()
            await asyncio.gather(*closing)
        finally:
            await heartbeat.stop()


async def login(bot: StemBot, settings: Settings) -> None:
    """`bot.login()`, its failures turned into one line naming the setting at fault."""
    try:
        await bot.login(settings.discord_bot_token)
    except discord.LoginFailure:  # Discord answered 401 to GET /users/@me
        raise SettingsError("DISCORD_BOT_TOKEN was rejected by the Discord API (401 Unauthorized): "
                            "check the token in the Discord developer portal") from None
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        raise SettingsError(f"cannot reach the Discord API at {settings.discord_api_base_url} ({network_reason(exc)}): "
                            "check DISCORD_API_BASE_URL and the network") from None


def _gateway_failure(settings: Settings, error: BaseException) -> str:
    reason = f"closed with code {error.code}" if isinstance(error, discord.ConnectionClosed) else network_reason(error)
    gateway = settings.discord_gateway_url or DISCORD_GATEWAY
    return f"cannot connect to the Discord gateway at {gateway} ({reason}): check DISCORD_GATEWAY_URL and the network"


def run(settings: Settings) -> None:
    asyncio.run(serve(settings))
