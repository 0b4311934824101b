"""Telegram's side of delivery: where a job's messages go, and how each piece is sent there.

The follower (`bot.delivery`) decides what to send and when; this module only speaks Telegram: the status
message edited in place, each stem as `sendAudio` titled as its file is tagged ("Night Drive (Vocals)", the song's
artist as performer) so it plays inline, the summary in HTML, and PTB's exceptions turned into the follower's
`Transient` / `Rejected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from telegram import Bot, InlineKeyboardMarkup
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.delivery import Follower, FollowerConfig, Notice, Rejected, Summary, Transient
from bot.progress_text import describe, upload_failed_note
from bot.requests import JobResult, StemFile
from bot.service import SeparationService
from separation_worker.contract.manifest import stem_label
from separation_worker.contract.progress_bus import JobEvent
from storage import Job

from . import texts

log = logging.getLogger(__name__)

CLOUD_API = "https://api.telegram.org"
CLOUD_UPLOAD_LIMIT = 50 * 1024 * 1024  # the cloud Bot API; a local Bot API server allows 2000 MB
LOCAL_UPLOAD_LIMIT = 2000 * 1024 * 1024
UPLOAD_TIMEOUT_S = 120  # PTB's 5 s default read timeout ends many uploads Telegram did receive


@dataclass(frozen=True)
class Destination:
    """Where a job's messages go; stored with the job so a restarted bot can still deliver."""

    chat_id: int
    status_message_id: int
    reply_to: int | None = None

    def to_delivery(self) -> dict:
        return {"platform": "telegram", "chat_id": self.chat_id, "status_message_id": self.status_message_id,
                "reply_to": self.reply_to}

    @classmethod
    def of(cls, job: Job) -> Destination | None:
        data = job.delivery
        if not isinstance(data, dict) or data.get("platform") != "telegram":
            return None
        return cls(int(data["chat_id"]), int(data["status_message_id"]), data.get("reply_to"))


@contextlib.contextmanager
def _neutral_errors() -> Iterator[None]:
    """PTB's exceptions as the follower's: flood control, 5xx and timeouts may pass; a refusal won't."""
    try:
        yield
    except InvalidToken as exc:  # every later send would be refused too; not a NetworkError
        raise Rejected(exc.message) from exc
    except RetryAfter as exc:
        wait = exc.retry_after
        raise Transient("flood control", wait.total_seconds() if isinstance(wait, timedelta) else float(wait)) from exc
    except TimedOut as exc:
        raise Transient("timed out") from exc
    except (BadRequest, Forbidden) as exc:  # BadRequest is a NetworkError in PTB: checked first
        raise Rejected(exc.message) from exc
    except NetworkError as exc:  # 502 Bad Gateway, other 5xx, connection errors
        raise Transient(exc.message) from exc


class TelegramChannel:
    """One job's chat: implements `bot.delivery.Channel`.

    While the job waits, its status message keeps the mode picker (`pickers[job_id]`, if there is one): every edit
    of a Telegram message drops its keyboard unless it sends it again. Once the job leaves the queue it goes.
    """

    def __init__(
        self,
        bot: Bot,
        where: Destination,
        upload_limit: int,
        job_id: str = "",
        pickers: dict[str, InlineKeyboardMarkup] | None = None,
    ):
        self.bot = bot
        self.where = where
        self._upload_limit = upload_limit
        self._job_id = job_id
        self._pickers = pickers if pickers is not None else {}
        self._waiting = True

    @property
    def upload_limit(self) -> int:
        return self._upload_limit

    @contextlib.contextmanager
    def _sending(self) -> Iterator[None]:
        """A group that became a supergroup has a new chat id: follow it, and let the retry send there at once."""
        try:
            with _neutral_errors():
                yield
        except ChatMigrated as exc:
            log.info("chat %s moved to %s; sending there", self.where.chat_id, exc.new_chat_id)
            self.where = dataclasses.replace(self.where, chat_id=int(exc.new_chat_id), reply_to=None)
            raise Transient("the chat moved to a supergroup", 0.0) from exc

    def describe(self, event: JobEvent) -> str:
        self._waiting = event.state == "queued" and self._waiting  # back in the queue (a retry): too late to pick
        if not self._waiting:
            self._pickers.pop(self._job_id, None)
        return describe(event)

    def done_text(self, result: JobResult) -> str:
        return describe(JobEvent(result.job_id, "done", 1.0))

    async def edit_status(self, text: str) -> None:
        picker = self._pickers.get(self._job_id) if self._waiting else None
        try:
            await self.bot.edit_message_text(
                text, chat_id=self.where.chat_id, message_id=self.where.status_message_id, reply_markup=picker
            )
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                log.warning("could not edit the status message: %s", exc)
        except TelegramError as exc:  # e.g. flood control on edits: the status is cosmetic, the delivery goes on
            log.warning("could not edit the status message: %s", exc)

    async def send_stem(self, result: JobResult, stem: StemFile) -> None:
        try:
            data = await asyncio.to_thread(stem.path.read_bytes)
        except OSError as exc:
            raise Rejected(f"cannot read {stem.filename}: {exc.strerror}") from exc
        with self._sending():
            await self.bot.send_audio(
                self.where.chat_id,
                audio=data,
                filename=stem.filename,
                title=texts.stem_title(result, stem.name),
                performer=texts.performer(result),
                duration=round(result.duration),
                reply_to_message_id=self.where.reply_to,
                allow_sending_without_reply=True,
                read_timeout=UPLOAD_TIMEOUT_S,
                write_timeout=UPLOAD_TIMEOUT_S,
            )

    async def send_summary(self, summary: Summary) -> None:
        text = texts.summary(summary.result, [stem_label(s.name) for s in summary.too_big])
        if summary.failed:
            text += "\n" + upload_failed_note([s.name for s in summary.failed])
        with self._sending():
            await self.bot.send_message(
                self.where.chat_id, text, parse_mode=ParseMode.HTML, disable_web_page_preview=True
            )

    async def send_notice(self, notice: Notice) -> None:
        """Failures are told in the status message itself (a new message if that one is gone)."""
        state = "expired" if notice.expired else "failed"
        text = describe(JobEvent("", state, 1.0, message=notice.reason or ""))
        with self._sending():
            try:
                await self.bot.edit_message_text(text, chat_id=self.where.chat_id, message_id=self.where.status_message_id)
            except BadRequest as exc:
                if "not modified" in str(exc).lower():
                    return
                await self.bot.send_message(self.where.chat_id, text)


class Deliveries:
    """The Telegram bot's follower: handlers call `follow`, the app `resume` at start and `close` at stop."""

    def __init__(
        self,
        bot: Bot,
        service: SeparationService,
        api_base_url: str,
        edit_interval_s: float = 1.5,
        drain_s: float = FollowerConfig.drain_s,
        config: FollowerConfig | None = None,
    ):
        self.bot = bot
        self.upload_limit = CLOUD_UPLOAD_LIMIT if api_base_url.rstrip("/") == CLOUD_API else LOCAL_UPLOAD_LIMIT
        config = config or FollowerConfig(edit_interval_s=edit_interval_s, drain_s=drain_s)
        self.follower = Follower(service, self._channel_for, config)
        self.pickers: dict[str, InlineKeyboardMarkup] = {}  # by job id: the mode pickers of jobs still waiting

    def _channel_for(self, job: Job, live: object | None) -> TelegramChannel | None:
        where = Destination.of(job)
        return None if where is None else TelegramChannel(self.bot, where, self.upload_limit, job.id, self.pickers)

    def follow(self, job_id: str, where: Destination | None = None, picker: InlineKeyboardMarkup | None = None) -> None:
        """Follow a job just accepted (its destination is stored with it), keeping `picker` under its status
        message while it waits."""
        if picker is not None:
            self.pickers[job_id] = picker
        self.follower.follow(job_id)

    async def resume(self) -> None:
        await self.follower.resume()

    async def close(self) -> None:
        await self.follower.close()
