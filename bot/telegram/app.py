"""The Telegram bot's lifecycle: the service, the PTB Application, long polling, restart recovery."""

from __future__ import annotations

import asyncio
import logging
import signal

from telegram import BotCommand
from telegram.ext import Application, ApplicationBuilder

from bot.service import SeparationService
from stembot import redaction

from .delivery import Deliveries
from .handlers import TelegramFrontend

log = logging.getLogger(__name__)

COMMANDS = [
    BotCommand("help", "What I do and the limits"),
    BotCommand("quota", "Songs left today"),
    BotCommand("pro", "How to get Pro"),
    BotCommand("link", "Link your Discord account"),
    BotCommand("cancel", "Cancel your queued song"),
]


class TelegramBot:
    def __init__(self, settings, edit_interval_s: float = 1.5, poll_timeout_s: int = 30):
        settings.require("telegram_bot_token", "secret_key", "public_url")
        redaction.install(redaction.secrets_of(settings))
        self.settings = settings
        self.edit_interval_s = edit_interval_s
        self.poll_timeout_s = poll_timeout_s
        self.app: Application | None = None
        self.service: SeparationService | None = None
        self.deliveries: Deliveries | None = None

    def _build(self) -> Application:
        base = self.settings.telegram_api_base_url.rstrip("/")
        return (
            ApplicationBuilder()
            .token(self.settings.telegram_bot_token)
            .base_url(f"{base}/bot")  # PTB appends the token
            .base_file_url(f"{base}/file/bot")
            .concurrent_updates(True)  # one user's slow download must not hold up the others
            .build()
        )

    async def start(self) -> None:
        self.service = await SeparationService.start(self.settings)
        self.app = self._build()
        await self.app.initialize()
        self.deliveries = Deliveries(self.app.bot, self.service, self.settings.telegram_api_base_url, self.edit_interval_s)
        TelegramFrontend(self.settings, self.service, self.deliveries).register(self.app)
        await self.app.bot.set_my_commands(COMMANDS)
        await self.app.start()
        await self.app.updater.start_polling(timeout=self.poll_timeout_s, drop_pending_updates=False)
        await self.deliveries.resume()  # jobs that were running, or finished, while we were down
        log.info("Telegram bot @%s is running", self.app.bot.username)

    async def stop(self) -> None:
        if self.app is not None:
            if self.app.updater.running:
                await self.app.updater.stop()
            if self.deliveries is not None:
                await self.deliveries.close()
            if self.app.running:
                await self.app.stop()
            await self.app.shutdown()
        if self.service is not None:
            await self.service.close()


async def serve(settings) -> None:
    """Run until SIGINT/SIGTERM."""
    bot = TelegramBot(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await bot.start()
    try:
        await stop.wait()
    finally:
        await bot.stop()
