"""Discord's side of delivery: where a job's messages go, and how each piece is sent there.

The follower (`bot.delivery`) decides what to send and when. While the interaction token is usable, the deferred
response shows the job's progress and each piece is a followup. After that (Discord expires tokens 15 minutes
after the command), once Discord refuses the token, or after a bot restart, pieces are ordinary messages in the
channel that mention the user (only the summary pings them), or DMs if the channel is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import discord

from bot.delivery import Follower, FollowerConfig, Notice, Rejected, RetryPolicy, Summary, Transient
from bot.progress_text import upload_failed_note
from bot.requests import JobResult, StemFile
from bot.service import SeparationService
from separation_worker.contract.job_spec import JobSpec
from separation_worker.contract.progress_bus import JobEvent
from storage import Job

from . import texts

log = logging.getLogger(__name__)

# Discord's tokens last 15 minutes; keep one for uploading the stems before the token dies mid-request.
TOKEN_LIFETIME = timedelta(minutes=14)
EDIT_INTERVAL_S = 1.5  # at most one edit of the progress message per interval (Discord rate-limits edits)
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # only for jobs whose delivery info predates the stored limit
# discord.py already waits out 429s and retries 5xx five times itself: ours only covers what outlasts that.
SEND_POLICY = RetryPolicy(attempts=3, base_s=2.0)
TOKEN_REFUSED = (401, 403, 404)  # the token expired, or the response was deleted


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


@contextlib.contextmanager
def _neutral_errors() -> Iterator[None]:
    """discord.py's exceptions as the follower's: what outlasted its own retries may still pass; 4xx won't."""
    try:
        yield
    except discord.RateLimited as exc:  # a 429 longer than discord.py waits by itself
        raise Transient("rate limited", exc.retry_after) from exc
    except discord.HTTPException as exc:
        if exc.status >= 500 or exc.status == 429:
            raise Transient(f"HTTP {exc.status}") from exc
        raise Rejected(f"HTTP {exc.status}: {exc.text}") from exc
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise Transient(type(exc).__name__) from exc


Message = Callable[[], dict[str, Any]]  # builds a message afresh for each try (discord.py closes sent files)


class DiscordChannel:
    """One job's way back: the interaction while its token lasts, then the channel (or a DM)."""

    def __init__(
        self,
        client: discord.Client,
        job: Job,
        interaction: discord.Interaction | None,
        token_lifetime: timedelta,
    ):
        self.client = client
        self.source = job.source
        self.mode = _mode_of(job)
        self.target = Target.of(job)
        self.interaction = interaction
        self.deadline: datetime | None = interaction.created_at + token_lifetime if interaction else None
        self._dead = interaction is None

    @property
    def upload_limit(self) -> int:
        return self.target.upload_limit

    @property
    def live(self) -> bool:
        """The interaction's token may still be used."""
        return not self._dead and self.deadline is not None and discord.utils.utcnow() < self.deadline

    def describe(self, event: JobEvent) -> str:
        return texts.progress(event, self.source, self.mode)

    def done_text(self, result: JobResult) -> str:
        return texts.done(result.title)

    async def edit_status(self, text: str) -> None:
        if not self.live:
            return
        assert self.interaction is not None
        try:
            await self.interaction.edit_original_response(content=text)
        except discord.HTTPException as exc:
            self._dead = exc.status in TOKEN_REFUSED
            log.info("could not edit a progress message (HTTP %s)", exc.status)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("could not edit a progress message (%s)", type(exc).__name__)

    async def send_stem(self, result: JobResult, stem: StemFile) -> None:
        try:
            data = await asyncio.to_thread(stem.path.read_bytes)
        except OSError as exc:
            raise Rejected(f"cannot read {stem.filename}: {exc.strerror}") from exc
        caption = f"🎵 **{discord.utils.escape_markdown(result.title)}** — {stem.name.capitalize()}"
        await self._send(
            lambda mention: {"content": f"{mention}{caption}", "file": discord.File(io.BytesIO(data), filename=stem.filename)},
            ping=False,
        )

    async def send_summary(self, summary: Summary) -> None:
        note = upload_failed_note([s.name for s in summary.failed]) if summary.failed else ""
        result = summary.result

        def message(mention: str) -> dict[str, Any]:
            lead = texts.ready_for(self.target.user_id, result.title) if mention else ""
            content = "\n".join(part for part in (lead, note) if part) or None
            return {"content": content, "embed": texts.result_embed(result, list(summary.linked))}

        await self._send(message, ping=True)

    async def send_notice(self, notice: Notice) -> None:
        if not notice.expired and self.live:
            assert self.interaction is not None
            self._dead = True  # the progress message is done with
            try:
                with _neutral_errors():
                    # Errors are private: the public progress message goes, an ephemeral notice replaces it.
                    with contextlib.suppress(discord.NotFound):
                        await self.interaction.delete_original_response()
                    await self.interaction.followup.send(texts.failed(notice.source, notice.reason), ephemeral=True)
                return
            except Rejected as exc:
                log.warning("failure notice refused (%s); posting in the channel", exc)
        user = self.target.user_id
        text = texts.expired_for(user, notice.source) if notice.expired else texts.failed_for(user, notice.source, notice.reason)
        await self._post(lambda: {"content": text}, ping=True)

    async def _send(self, message: Callable[[str], dict[str, Any]], ping: bool) -> None:
        """Through the interaction while it lasts; in the channel (mentioning the user) once it doesn't."""
        if self.live:
            assert self.interaction is not None
            try:
                with _neutral_errors():
                    await self.interaction.followup.send(wait=True, **message(""))
                return
            except Rejected as exc:
                cause = exc.__cause__
                if not (isinstance(cause, discord.HTTPException) and cause.status in TOKEN_REFUSED):
                    raise
                self._dead = True
                log.info("followup refused (HTTP %s); posting in the channel instead", cause.status)
        await self._post(lambda: message(f"<@{self.target.user_id}> "), ping)

    async def _post(self, message: Message, ping: bool) -> None:
        """An ordinary message: in the job's channel, or by DM if that is gone."""
        users = [discord.Object(self.target.user_id)] if ping else []
        mention = discord.AllowedMentions(everyone=False, roles=False, users=users)
        with _neutral_errors():
            if self.target.guild_id is not None and self.target.channel_id is not None:
                channel = self.client.get_channel(self.target.channel_id)
                try:
                    if channel is None:
                        channel = await self.client.fetch_channel(self.target.channel_id)
                    await channel.send(allowed_mentions=mention, **message())  # type: ignore[union-attr]
                    return
                except (discord.NotFound, discord.Forbidden) as exc:
                    log.info("channel unavailable (HTTP %s); sending by DM", exc.status)
            user = self.client.get_user(self.target.user_id) or await self.client.fetch_user(self.target.user_id)
            await user.send(allowed_mentions=mention, **message())


class Deliveries:
    """The Discord bot's follower: the cog calls `follow` and `resume`, and `close` when it unloads."""

    def __init__(
        self,
        client: discord.Client,
        service: SeparationService,
        token_lifetime: timedelta | float = TOKEN_LIFETIME,
        edit_interval: float = EDIT_INTERVAL_S,
        drain_s: float = FollowerConfig.drain_s,
        config: FollowerConfig | None = None,
    ):
        self.client = client
        # How long after the command its token is used (a timedelta, or seconds).
        self.token_lifetime = (
            token_lifetime if isinstance(token_lifetime, timedelta) else timedelta(seconds=token_lifetime)
        )
        config = config or FollowerConfig(edit_interval_s=edit_interval, drain_s=drain_s, send=SEND_POLICY)
        self.follower = Follower(service, self._channel_for, config)

    def _channel_for(self, job: Job, live: object | None) -> DiscordChannel | None:
        if not is_discord_job(job):
            return None
        interaction = live if isinstance(live, discord.Interaction) else None
        return DiscordChannel(self.client, job, interaction, self.token_lifetime)

    def follow(self, job_id: str, interaction: discord.Interaction | None = None) -> None:
        """Watch the job until it ends, then deliver it (through `interaction` while its token lasts)."""
        self.follower.follow(job_id, interaction)

    async def resume(self) -> None:
        await self.follower.resume()

    async def close(self) -> None:
        await self.follower.close()


def _mode_of(job: Job) -> str | None:
    """The job's mode, for its status heading (None when its spec can't be read: the heading leaves it out)."""
    try:
        return JobSpec.from_json(job.spec_json).mode if job.spec_json else None
    except (ValueError, KeyError, TypeError):
        return None
