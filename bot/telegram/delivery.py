"""Following a job in its status message, then delivering the stems (exactly once, even across restarts)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError

from bot.progress_text import UPLOADING, describe
from bot.service import SeparationService
from separation_worker.contract.progress_bus import JobEvent
from storage import Job, JobStatus

from . import texts

log = logging.getLogger(__name__)

CLOUD_API = "https://api.telegram.org"
CLOUD_UPLOAD_LIMIT = 50 * 1024 * 1024  # the cloud Bot API; a local Bot API server allows 2000 MB
LOCAL_UPLOAD_LIMIT = 2000 * 1024 * 1024


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
    def of(cls, job: Job) -> "Destination | None":
        data = job.delivery
        if not isinstance(data, dict) or data.get("platform") != "telegram":
            return None
        return cls(int(data["chat_id"]), int(data["status_message_id"]), data.get("reply_to"))


class Deliveries:
    def __init__(self, bot: Bot, service: SeparationService, api_base_url: str, edit_interval_s: float = 1.5):
        self.bot = bot
        self.service = service
        self.upload_limit = CLOUD_UPLOAD_LIMIT if api_base_url.rstrip("/") == CLOUD_API else LOCAL_UPLOAD_LIMIT
        self.edit_interval_s = edit_interval_s  # Telegram throttles frequent edits of one chat
        self._tasks: set[asyncio.Task] = set()

    def follow(self, job_id: str, where: Destination) -> None:
        task = asyncio.create_task(self._follow(job_id, where), name=f"telegram-job-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume(self) -> None:
        """After a restart: follow the jobs still running, deliver those that finished meanwhile."""
        for job in await self.service.active_jobs():
            where = Destination.of(job)
            if where:
                self.follow(job.id, where)
        for job in await self.service.undelivered_jobs():
            where = Destination.of(job)
            if where:
                self._spawn(self._finish(job.id, where))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, job_id: str, where: Destination) -> None:
        status = ThrottledStatus(lambda text: self._edit_status(where, text), self.edit_interval_s)
        try:
            async for event in self.service.watch(job_id):
                if event.terminal:
                    break
                await status.show(describe(event))
            await status.close()
            await self._finish(job_id, where)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("following job %s failed", job_id)

    async def _finish(self, job_id: str, where: Destination) -> None:
        job = await self.service.job(job_id)
        if job is None or not await self.service.claim_delivery(job_id):
            return  # another process (or an earlier run of this one) delivered it
        if job.status is not JobStatus.DONE:
            await self._edit_status(where, describe_final(job))
            return
        result = await self.service.result(job_id)
        if result is None:
            await self._edit_status(where, "⌛ This song's files have expired.")
            return
        await self._edit_status(where, UPLOADING)
        too_big = []
        for stem in result.stems:
            if stem.size_bytes > self.upload_limit:
                too_big.append(stem.name.capitalize())
                continue
            with open(stem.path, "rb") as fh:
                await self.bot.send_audio(
                    where.chat_id,
                    audio=fh,
                    filename=stem.filename,
                    title=texts.stem_title(result, stem.name),
                    performer="StemBot",
                    duration=round(result.duration),
                    reply_to_message_id=where.reply_to,
                    read_timeout=120,
                    write_timeout=120,
                )
        await self.bot.send_message(
            where.chat_id, texts.summary(result, too_big), parse_mode=ParseMode.HTML, disable_web_page_preview=True
        )
        await self._edit_status(where, "✅ Done!")

    async def _edit_status(self, where: Destination, text: str) -> None:
        try:
            await self.bot.edit_message_text(text, chat_id=where.chat_id, message_id=where.status_message_id)
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                log.warning("could not edit the status message: %s", exc)
        except TelegramError as exc:  # e.g. the chat was deleted: delivery of the rest still goes on
            log.warning("could not edit the status message: %s", exc)


class ThrottledStatus:
    """Edits a status message at most once per interval, and always ends up showing the latest text."""

    def __init__(self, edit: Callable[[str], Awaitable[None]], interval_s: float):
        self.edit = edit
        self.interval_s = interval_s
        self.shown = ""
        self.wanted = ""
        self.last_edit = float("-inf")
        self._timer: asyncio.Task | None = None

    async def show(self, text: str) -> None:
        self.wanted = text
        wait = self.last_edit + self.interval_s - time.monotonic()
        if wait <= 0:
            await self._flush()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._flush_after(wait))

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._flush()

    async def _flush(self) -> None:
        if self.wanted != self.shown:
            self.shown = self.wanted
            self.last_edit = time.monotonic()
            await self.edit(self.wanted)


def describe_final(job: Job) -> str:
    return describe(JobEvent(job.id, job.status.value, 1.0, message=job.error or ""))
