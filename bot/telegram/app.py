"""The Telegram bot's lifecycle: the service, the PTB Application, long polling, restart recovery."""

from __future__ import annotations

import asyncio
import logging
import signal

from telegram import BotCommand
from telegram.error import InvalidToken, NetworkError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder

from bot.delivery import FollowerConfig
from bot.service import SeparationService
from stembot import redaction
from stembot.settings import SettingsError
from stembot.startup import network_reason

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

DEFAULT_API = "https://api.telegram.org"
_STATUS_CODES = {"Unauthorized": 401, "Not Found": 404}  # what the Bot API answers to a bad token


class TelegramBot:
    def __init__(
        self, settings, edit_interval_s: float = 1.5, poll_timeout_s: int = 30, delivery: FollowerConfig | None = None
    ):
        settings.require("telegram_bot_token", "secret_key", "public_url")
        redaction.install(redaction.secrets_of(settings))
        self.settings = settings
        self.edit_interval_s = edit_interval_s
        self.poll_timeout_s = poll_timeout_s
        self.delivery = delivery  # how deliveries retry and drain (default: FollowerConfig, drain from settings)
        self.app: Application | None = None
        self.service: SeparationService | None = None
        self.deliveries: Deliveries | None = None

    def _build(self) -> Application:
        base = self.settings.telegram_api_base_url.rstrip("/")
        # With max_retries=0 the limiter logs each 429 it passes on as an error with a traceback; the follower
        # logs its own retries.
        logging.getLogger("telegram.ext.AIORateLimiter").setLevel(logging.CRITICAL)
        return (
            ApplicationBuilder()
            .token(self.settings.telegram_bot_token)
            .base_url(f"{base}/bot")  # PTB appends the token
            .base_file_url(f"{base}/file/bot")
            .concurrent_updates(True)  # one user's slow download must not hold up the others
            # Paces sends under Telegram's flood limits (30/s overall, 20/min per group). It does not retry a
            # 429 itself (max_retries=0): the delivery follower does, honouring retry_after within its own
            # bounded attempts, so a 429 is never retried by both (that would multiply the tries).
            .rate_limiter(AIORateLimiter(max_retries=0))
            .build()
        )

    async def start(self) -> None:
        """Start polling; a failed start releases what it took (an open database would keep the process alive)."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        self.app = self._build()
        await self._check_token()  # before storage and Redis are touched
        self.service = await SeparationService.start(self.settings)
        self.deliveries = Deliveries(self.app.bot, self.service, self.settings.telegram_api_base_url,
                                     self.edit_interval_s, drain_s=self.settings.drain_seconds, config=self.delivery)
        TelegramFrontend(self.settings, self.service, self.deliveries).register(self.app)
        await self.app.bot.set_my_commands(COMMANDS)
        await self.app.start()
        assert self.app.updater is not None  # built with an updater (long polling)
        await self.app.updater.start_polling(timeout=self.poll_timeout_s, drop_pending_updates=False)
        await self.deliveries.resume()  # jobs that were running, or finished, while we were down
        log.info("Telegram bot @%s is running", self.app.bot.username)

    async def _check_token(self) -> None:
        """`initialize()` calls getMe; turn its failures into one line naming the setting, never the token."""
        assert self.app is not None
        base = self.settings.telegram_api_base_url
        try:
            await self.app.initialize()
        except InvalidToken as exc:
            # PTB's own message quotes the token; the server's answer ("Unauthorized") is in the cause.
            answer = str(exc.__cause__ or "rejected")
            status = f"{_STATUS_CODES[answer]} {answer}" if answer in _STATUS_CODES else answer
            # A 404 from a server other than Telegram's may also mean the base URL is not a Bot API.
            also = " and TELEGRAM_API_BASE_URL" if answer == "Not Found" and base != DEFAULT_API else ""
            raise SettingsError(f"TELEGRAM_BOT_TOKEN was rejected by the Telegram Bot API ({status}): "
                                f"check the token from @BotFather{also}") from None
        except NetworkError as exc:  # TimedOut included
            raise SettingsError(f"cannot reach the Telegram Bot API at {base} ({network_reason(exc)}): "
                                "check TELEGRAM_API_BASE_URL and the network") from None

    async def stop(self) -> None:
        if self.app is not None:
            if self.app.updater is not None and self.app.updater.running:
                await self.app.updater.stop()
            if self.deliveries is not None:
                await self.deliveries.close()
            if self.app.running:
                await self.app.stop()
            await self.app.shutdown()
            await self.app.bot.shutdown()  # after a failed initialize() only the bot's HTTP clients are open
            self.app = None
        if self.service is not None:
            await self.service.close()
            self.service = None


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
