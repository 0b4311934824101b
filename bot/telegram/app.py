"""The Telegram bot's lifecycle: the service, the PTB Application, long polling, restart recovery.

A start that fails, and polling that can never recover, end the bot with one line saying why. PTB alone would not:
its updater retries every polling error forever (a 409 Conflict from a second instance included), logging a
traceback each time, and on a 401 its polling task ends silently while the process runs on.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from telegram import BotCommand, BotCommandScopeChat
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder
from telegram.request import HTTPXRequest

from bot.delivery import FollowerConfig
from bot.service import SeparationService
from separation_worker.contract.heartbeat import Heartbeat
from stembot import redaction
from stembot.settings import SettingsError
from stembot.startup import network_reason

from . import handlers
from .delivery import Deliveries
from .handlers import Audience, TelegramFrontend

log = logging.getLogger(__name__)

T = TypeVar("T")

# The command menu (setMyCommands at start), from the handlers' own table: everyone's, and admins' in their chats.
COMMANDS = [BotCommand(c.name, c.description) for c in handlers.COMMANDS if c.audience is Audience.EVERYONE]
ADMIN_COMMANDS = COMMANDS + [BotCommand(c.name, c.description) for c in handlers.COMMANDS
                             if c.audience is Audience.ADMINS]

DEFAULT_API = "https://api.telegram.org"
_STATUS_CODES = {"Unauthorized": 401, "Not Found": 404}  # what the Bot API answers to a bad token

# Polling gives up after this many 409s in a row: one alone is an instance that is stopping (its last getUpdates
# ends our pending one), more is another instance polling with the same token. Backing off 1, 1.5, 2.25 s… it
# takes a few seconds.
CONFLICTS_TO_GIVE_UP = 3


class BotStopped(RuntimeError):
    """The bot could not start, or polling failed for good: one line, for the operator."""


class PollingWatch:
    """Follows what getUpdates answers, and decides when polling has failed for good (`ended`, `failure`)."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.ended = asyncio.Event()
        self.failure: str | None = None
        self.active = False  # polling runs: before, a start-up getUpdates reports its own failure
        self.closing = False  # stopping: the last getUpdates's answer no longer matters
        self._conflicts = 0

    def answered(self) -> None:
        self._conflicts = 0

    def failed(self, exc: TelegramError) -> None:
        if not self.active or self.closing or self.failure is not None:
            return
        if isinstance(exc, InvalidToken):  # revoked or replaced while we ran: PTB's polling has ended already
            self._give_up(_token_rejected(exc.message, self.base_url, "while polling"))
        elif isinstance(exc, Conflict):
            self._conflicts += 1
            log.debug("getUpdates: %s (%d in a row)", exc.message, self._conflicts)
            if self._conflicts >= CONFLICTS_TO_GIVE_UP:
                self._give_up(_conflict_line(exc.message))
        elif isinstance(exc, RetryAfter):  # flood control: PTB waits as told
            log.warning("Telegram asks to wait %s s before polling again", _seconds(exc))
        else:  # 5xx, a lost connection: Telegram's come and go, and PTB retries
            log.warning("polling Telegram failed (%s); retrying", network_reason(exc))

    def _give_up(self, line: str) -> None:
        self.failure = line
        self.ended.set()


class _WatchedPolling(HTTPXRequest):
    """getUpdates' own HTTP client (PTB gives long polling a separate one), reporting each outcome to the watch."""

    def __init__(self, watch: PollingWatch):
        super().__init__(connection_pool_size=1)  # what PTB's builder gives getUpdates by default
        self.watch = watch

    async def post(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]  # final in PTB; the one hook
        try:
            result = await super().post(*args, **kwargs)
        except TelegramError as exc:
            self.watch.failed(exc)
            raise
        self.watch.answered()
        return result


class _ReportedHere(logging.Filter):
    """Drops PTB's tracebacks for the failures TelegramBot reports itself, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.name == "telegram.ext" and record.levelno >= logging.ERROR \
                and record.getMessage().startswith("Network Retry Loop"):
            return False  # a start-up call or polling gave up; it reaches us as an exception or through the watch
        if record.name == "telegram.ext.Updater" and isinstance(error, (InvalidToken, Conflict)):
            return False  # the updater's last getUpdates at stop, after polling failed for good
        return True


def _quiet_ptb() -> None:
    # With max_retries=0 the limiter logs each 429 it passes on as an error with a traceback; the follower
    # logs its own retries.
    logging.getLogger("telegram.ext.AIORateLimiter").setLevel(logging.CRITICAL)
    for name in ("telegram.ext", "telegram.ext.Updater"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ReportedHere) for f in logger.filters):
            logger.addFilter(_ReportedHere())


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
        self.base_url = settings.telegram_api_base_url
        self.app: Application | None = None
        self.service: SeparationService | None = None
        self.deliveries: Deliveries | None = None
        self.polling = PollingWatch(self.base_url)

    def _build(self) -> Application:
        base = self.base_url.rstrip("/")
        _quiet_ptb()
        return (
            ApplicationBuilder()
            .token(self.settings.telegram_bot_token)
            .base_url(f"{base}/bot")  # PTB appends the token
            .base_file_url(f"{base}/file/bot")
            .get_updates_request(_WatchedPolling(self.polling))
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
        self.polling = PollingWatch(self.base_url)
        self.app = self._build()
        await self._check_token()  # before storage and Redis are touched
        self.service = await SeparationService.start(self.settings)
        self.deliveries = Deliveries(self.app.bot, self.service, self.base_url,
                                     self.edit_interval_s, drain_s=self.settings.drain_seconds, config=self.delivery)
        TelegramFrontend(self.settings, self.service, self.deliveries).register(self.app)
        await self._set_commands()
        await self._check_polling()
        await self.app.start()
        assert self.app.updater is not None  # built with an updater (long polling)
        # The watch logs polling errors in a line each; PTB's default would log a traceback for every retry.
        self.polling.active = True
        await self._startup_call("deleteWebhook", self.app.updater.start_polling(
            timeout=self.poll_timeout_s, drop_pending_updates=False, error_callback=lambda exc: None))
        await self.deliveries.resume()  # jobs that were running, or finished, while we were down
        log.info("Telegram bot @%s is running", self.app.bot.username)

    async def _check_token(self) -> None:
        """`initialize()` calls getMe; turn its failures into one line naming the setting, never the token."""
        assert self.app is not None
        try:
            await self.app.initialize()
        except InvalidToken as exc:
            # PTB's own message quotes the token; the server's answer ("Unauthorized") is in the cause.
            raise SettingsError(_token_rejected(str(exc.__cause__ or "rejected"), self.base_url)) from None
        except NetworkError as exc:  # TimedOut included
            raise SettingsError(f"cannot reach the Telegram Bot API at {self.base_url} ({network_reason(exc)}): "
                                "check TELEGRAM_API_BASE_URL and the network") from None
        except TelegramError as exc:
            raise self._startup_error("getMe", exc) from None

    async def _set_commands(self) -> None:
        """The command menu: everyone's, then the admin commands in each admin's own chat."""
        assert self.app is not None
        await self._startup_call("setMyCommands", self.app.bot.set_my_commands(COMMANDS))
        for admin in self.settings.telegram_admin_ids:
            try:
                await self.app.bot.set_my_commands(ADMIN_COMMANDS, scope=BotCommandScopeChat(admin))
            except (BadRequest, Forbidden) as exc:  # no chat with that admin yet: not worth a stop
                log.warning("admin commands not listed for TELEGRAM_ADMIN_IDS %s (%s): they work all the same",
                            admin, exc.message)
            except TelegramError as exc:
                raise self._startup_error("setMyCommands", exc) from None

    async def _check_polling(self) -> None:
        """One getUpdates answered before polling starts, so that a refusal (a revoked token, a webhook we may not
        delete, a failing server) is a failed start. PTB's own polling sends its first getUpdates in the
        background, where a failure would only show after start. It deletes the webhook again: harmless."""
        assert self.app is not None
        await self._startup_call("deleteWebhook", self.app.bot.delete_webhook(drop_pending_updates=False))
        # timeout 0: answered at once; no offset: nothing is confirmed, polling gets the same updates.
        await self._startup_call("getUpdates", self.app.bot.get_updates(timeout=0, limit=1))

    async def _startup_call(self, method: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except TelegramError as exc:
            raise self._startup_error(method, exc) from None

    def _startup_error(self, method: str, exc: TelegramError) -> Exception:
        """One line for a start-up call that failed (PTB's message alone, "Bad Gateway", names nothing)."""
        if isinstance(exc, InvalidToken):
            return SettingsError(_token_rejected(exc.message, self.base_url))
        if isinstance(exc, Conflict):  # a webhook set again at once, or another instance's getUpdates
            return BotStopped(_conflict_line(exc.message))
        if isinstance(exc, RetryAfter):
            return BotStopped(f"the Telegram Bot API at {self.base_url} asks to wait {_seconds(exc)} s before "
                              f"{method} (flood control): start again after that")
        return BotStopped(f"the Telegram Bot API at {self.base_url} failed {method} at start ({network_reason(exc)}): "
                          "try again; if it keeps failing, check TELEGRAM_API_BASE_URL")

    async def run_until(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; BotStopped if polling failed for good first."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.polling.ended.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self.polling.failure is not None:
            raise BotStopped(self.polling.failure)

    async def stop(self) -> None:
        """Release everything, each part even if another's stop fails: the database above all (its thread keeps
        the process alive)."""
        self.polling.closing = True
        app, self.app = self.app, None
        service, self.service = self.service, None
        try:
            if app is not None:
                await self._stop_app(app)
        finally:
            if service is not None:
                await service.close()

    async def _stop_app(self, app: Application) -> None:
        try:
            if app.updater is not None and app.updater.running:
                try:
                    await app.updater.stop()
                except TelegramError:  # a polling task that ended on its error re-raises it here: already told
                    pass
            if self.deliveries is not None:
                await self.deliveries.close()
        finally:
            try:
                if app.running:
                    await app.stop()
                await app.shutdown()
            finally:
                await app.bot.shutdown()  # after a failed initialize() only the bot's HTTP clients are open


def _token_rejected(answer: str, base: str, when: str = "") -> str:
    status = f"{_STATUS_CODES[answer]} {answer}" if answer in _STATUS_CODES else answer
    # A 404 from a server other than Telegram's may also mean the base URL is not a Bot API.
    also = " and TELEGRAM_API_BASE_URL" if answer == "Not Found" and base != DEFAULT_API else ""
    during = f" {when}" if when else ""
    return (f"TELEGRAM_BOT_TOKEN was rejected by the Telegram Bot API{during} ({status}): "
            f"check the token from @BotFather{also}")


def _conflict_line(answer: str) -> str:
    if "webhook" in answer.lower():
        return ("a webhook is set for this TELEGRAM_BOT_TOKEN (409 Conflict): another program uses the token; "
                "give each bot its own token")
    return ("another bot instance is polling with this TELEGRAM_BOT_TOKEN (409 Conflict): "
            "run one `stembot telegram` per token")


def _seconds(exc: RetryAfter) -> int:
    wait = exc.retry_after
    return round(wait.total_seconds() if isinstance(wait, timedelta) else float(wait))


async def serve(settings) -> None:
    """Run until SIGINT/SIGTERM; BotStopped (one line) if polling fails for good first."""
    bot = TelegramBot(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await bot.start()
    # Healthy while long polling runs (a failure for good ends the process anyway).
    heartbeat = Heartbeat(settings.health_dir, "telegram",
                          healthy=lambda: bot.app is not None and bot.app.updater is not None and bot.app.updater.running)
    heartbeat.start()
    try:
        await bot.run_until(stop)
    finally:
        await heartbeat.stop()
        await bot.stop()
