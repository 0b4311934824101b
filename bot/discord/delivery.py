"""Following jobs and delivering their results, exactly once.

While the interaction token is usable, the deferred response shows the job's progress and the result comes as
its followup. After that (Discord expires tokens 15 minutes after the command), or after a bot restart, the
result is an ordinary message in the channel that mentions the user, or a DM if the channel is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import discord
from redis.exceptions import RedisError

from bot.requests import JobResult, StemFile
from bot.service import SeparationService
from separation_worker.contract.progress_bus import JobEvent
from storage import Job, JobStatus

from . import texts

log = logging.getLogger(__name__)

# Discord's tokens last 15 minutes; keep one for uploading the stems before the token dies mid-request.
TOKEN_LIFETIME = timedelta(minutes=14)
EDIT_INTERVAL_S = 1.5  # at most one edit of the progress message per interval (Discord rate-limits edits)
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # only for jobs whose delivery info predates the stored limit
MAX_FILES = 10  # per Discord message
WATCH_RETRY_S = 2.0
DRAIN_S = 10.0  # on shutdown, let deliveries already under way finish


def delivery_info(interaction: discord.Interaction) -> dict[str, Any]:
    """What a later delivery needs, stored with the job.

    No interaction token: a job picked up again after a restart is always delivered as a channel message.
    """
    return {
        "platform": "discord",
        "user_id": str(interaction.user.id),
        "channel_id": str(interaction.channel_id) if interaction.channel_id else None,
        "guild_id": str(interaction.guild_id) if interaction.guild_id else None,
        "upload_limit": interaction.filesize_limit,
    }


def is_discord_job(job: Job) -> bool:
    return isinstance(job.delivery, dict) and job.delivery.get("platform") == "discord"


@dataclass(frozen=True)
class Target:
    """Where a result goes as an ordinary message."""

    user_id: int
    channel_id: int | None
    guild_id: int | None
    upload_limit: int

    @classmethod
    def of(cls, job: Job) -> Target:
        data = job.delivery

        def snowflake(key: str) -> int | None:
            return int(data[key]) if data.get(key) else None

        return cls(
            user_id=int(data["user_id"]),
            channel_id=snowflake("channel_id"),
            guild_id=snowflake("guild_id"),
            upload_limit=int(data.get("upload_limit") or DEFAULT_UPLOAD_LIMIT),
        )


class ProgressMessage:
    """The deferred response, edited as the job moves.

    At most one edit per `interval`, only when the text changes, and the latest text always lands (a trailing
    edit); nothing once the token is past `deadline` or Discord refuses it.
    """

    def __init__(self, interaction: discord.Interaction, deadline: datetime, interval: float = EDIT_INTERVAL_S):
        self.interaction = interaction
        self.deadline = deadline
        self.interval = interval
        self._wanted: str | None = None
        self._shown: str | None = None
        self._next_at = 0.0
        self._dead = False
        self._task: asyncio.Task | None = None

    @property
    def usable(self) -> bool:
        return not self._dead and discord.utils.utcnow() < self.deadline

    def show(self, text: str) -> None:
        """Ask for `text` to be shown; returns at once."""
        self._wanted = text
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def settle(self, text: str) -> None:
        """Show `text` and wait until it is shown (or can't be)."""
        self.show(text)
        if self._task is not None:
            await asyncio.wait({self._task})  # unlike awaiting it, never cancels the edit nor raises its error

    def close(self) -> None:
        self._dead = True
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.usable and self._wanted is not None and self._wanted != self._shown:
            delay = self._next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                continue  # the wanted text may have changed while waiting
            text = self._wanted
            self._next_at = loop.time() + self.interval
            self._shown = text  # also on failure: never retry one text in a loop
            try:
                await self.interaction.edit_original_response(content=text)
            except discord.HTTPException as exc:
                # 401: the token expired; 404: the message was deleted. Either way, stop editing.
                self._dead = exc.status in (401, 403, 404)
                log.info("could not edit a progress message (HTTP %s)", exc.status)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                log.warning("could not edit a progress message (%s)", type(exc).__name__)


class Deliveries:
    """One watcher per job this bot follows; deliveries claim the job first, so each result goes out once."""

    def __init__(
        self,
        client: discord.Client,
        service: SeparationService,
        token_lifetime: timedelta | float = TOKEN_LIFETIME,
        edit_interval: float = EDIT_INTERVAL_S,
    ):
        self.client = client
        self.service = service
        # How long after the command its token is used (a timedelta, or seconds).
        self.token_lifetime = (
            token_lifetime if isinstance(token_lifetime, timedelta) else timedelta(seconds=token_lifetime)
        )
        self.edit_interval = edit_interval
        self._watchers: dict[str, asyncio.Task] = {}
        self._sending: set[asyncio.Task] = set()
        self._resuming = asyncio.Lock()
        self._closed = False

    def follow(self, job_id: str, interaction: discord.Interaction | None = None) -> None:
        """Watch the job until it ends, then deliver it (through `interaction` while its token lasts)."""
        if self._closed or job_id in self._watchers:
            return
        task = asyncio.create_task(self._watch(job_id, interaction), name=f"discord-watch-{job_id}")
        self._watchers[job_id] = task
        task.add_done_callback(lambda _: self._watchers.pop(job_id, None))

    async def resume(self) -> None:
        """After a (re)start: follow our unfinished jobs and deliver finished ones nobody delivered."""
        async with self._resuming:  # one at a time (READY comes again after a reconnect), and never after close()
            if self._closed:
                return
            for job in await self.service.active_jobs():
                if is_discord_job(job):
                    self.follow(job.id)
            for job in await self.service.undelivered_jobs():
                if is_discord_job(job) and job.id not in self._watchers:
                    self._deliver_soon(job.id, None)

    async def close(self) -> None:
        """Stop watching; give deliveries under way a moment to finish (their jobs are already claimed)."""
        async with self._resuming:
            self._closed = True
        for task in list(self._watchers.values()):
            task.cancel()
        if self._sending:
            await asyncio.wait(self._sending, timeout=DRAIN_S)
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._watchers.values(), *self._sending, return_exceptions=True)

    # -- watching ----------------------------------------------------------------------------------

    async def _watch(self, job_id: str, interaction: discord.Interaction | None) -> None:
        job = await self.service.job(job_id)
        if job is None:
            return
        progress = None
        if interaction is not None:
            progress = ProgressMessage(interaction, interaction.created_at + self.token_lifetime, self.edit_interval)
        handed_over = False
        try:
            last: JobEvent | None = None
            async for event in self._events(job_id):
                last = event
                if progress is not None and not event.terminal:
                    progress.show(texts.progress(event, job.source))
            if last is not None and last.state in ("done", "failed"):
                self._deliver_soon(job_id, progress)
                handed_over = True
            elif last is not None and progress is not None:  # cancelled or expired: say so, nothing to deliver
                await progress.settle(texts.progress(last, job.source))
        finally:
            if progress is not None and not handed_over:
                progress.close()

    async def _events(self, job_id: str) -> AsyncIterator[JobEvent]:
        """The service's progress stream, picked up again after a Redis hiccup."""
        while True:
            try:
                async for event in self.service.watch(job_id):
                    yield event
                    if event.terminal:
                        return
                return
            except (RedisError, OSError) as exc:
                log.warning("job %s: lost the progress stream (%s); retrying", job_id, type(exc).__name__)
                await asyncio.sleep(WATCH_RETRY_S)

    # -- delivering --------------------------------------------------------------------------------

    def _deliver_soon(self, job_id: str, progress: ProgressMessage | None) -> None:
        # Its own task, so that stopping the watchers never cuts a claimed delivery short.
        if self._closed:
            return
        task = asyncio.create_task(self._deliver(job_id, progress), name=f"discord-deliver-{job_id}")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, job_id: str, progress: ProgressMessage | None) -> None:
        """Claim the job, then send its result or failure: through the interaction while its token is usable."""
        try:
            job = await self.service.job(job_id)
            if job is None or job.status not in (JobStatus.DONE, JobStatus.FAILED):
                return
            if not await self.service.claim_delivery(job_id):
                return  # another watcher (or a previous run) delivers it
            live = progress if progress is not None and progress.usable else None
            if job.status is JobStatus.FAILED:
                await self._send_failure(job, live)
            else:
                await self._send_result(job, live)
        except Exception:
            log.exception("job %s: delivery failed", job_id)
        finally:
            if progress is not None:
                progress.close()

    async def _send_result(self, job: Job, live: ProgressMessage | None) -> None:
        target = Target.of(job)
        result = await self.service.result(job.id)
        if result is None:  # its files expired before anyone could deliver them
            await self._post(target, lambda: {"content": texts.expired_for(target.user_id, job.source)})
            return
        if live is not None:
            live.show(texts.uploading(job.source))
            interaction = live.interaction
            try:
                await _send_stems(
                    lambda build: interaction.followup.send(wait=True, **build()),
                    result,
                    interaction.filesize_limit,
                    content=None,
                )
            except discord.HTTPException as exc:
                log.warning("job %s: followup failed (HTTP %s); posting in the channel instead", job.id, exc.status)
            else:
                await live.settle(texts.done(result.title))
                return
        await _send_stems(
            lambda build: self._post(target, build),
            result,
            target.upload_limit,
            content=texts.ready_for(target.user_id, result.title),
        )

    async def _send_failure(self, job: Job, live: ProgressMessage | None) -> None:
        if live is not None:
            live.close()
            try:
                # Errors are private: the public progress message goes, an ephemeral notice replaces it.
                with contextlib.suppress(discord.NotFound):
                    await live.interaction.delete_original_response()
                await live.interaction.followup.send(texts.failed(job.source, job.error), ephemeral=True)
                return
            except discord.HTTPException as exc:
                log.warning("job %s: failure notice failed (HTTP %s); posting in the channel", job.id, exc.status)
        target = Target.of(job)
        await self._post(target, lambda: {"content": texts.failed_for(target.user_id, job.source, job.error)})

    async def _post(self, target: Target, message: Callable[[], dict[str, Any]]) -> None:
        """An ordinary message mentioning the user: in the job's channel, or by DM if that is gone.

        `message` builds the message afresh for each try (files can be sent only once).
        """
        mention = discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(target.user_id)])
        if target.guild_id is not None and target.channel_id is not None:
            channel = self.client.get_channel(target.channel_id)
            try:
                if channel is None:
                    channel = await self.client.fetch_channel(target.channel_id)
                await channel.send(allowed_mentions=mention, **message())  # type: ignore[union-attr]
                return
            except (discord.NotFound, discord.Forbidden) as exc:
                log.info("channel unavailable (HTTP %s); sending by DM", exc.status)
        user = self.client.get_user(target.user_id) or await self.client.fetch_user(target.user_id)
        await user.send(allowed_mentions=mention, **message())


def _attachable(stems: list[StemFile], limit: int) -> list[StemFile]:
    return [s for s in stems if s.size_bytes <= limit][:MAX_FILES]


async def _send_stems(
    send: Callable[[Callable[[], dict[str, Any]]], Awaitable[Any]], result: JobResult, limit: int, content: str | None
) -> None:
    """Stems that fit the upload limit as attachments, the rest as signed links in the summary embed.

    `send` gets a builder that makes the message afresh (discord.py closes files once it has sent them). Should
    Discord still refuse the upload as too large (413: e.g. a total-size limit), the stems go as links only.
    """
    attached = _attachable(result.stems, limit)
    for attempt in (attached, []):

        def build(stems: list[StemFile] = attempt) -> dict[str, Any]:
            linked = [s for s in result.stems if s not in stems]
            return {
                "content": content,
                "embed": texts.result_embed(result, linked),
                "files": [discord.File(s.path, filename=s.filename) for s in stems],
            }

        try:
            await send(build)
            return
        except discord.HTTPException as exc:
            if exc.status != 413 or not attempt:
                raise
            log.info("job %s: attachments refused as too large; sending links", result.job_id)
