"""Submitting: check, charge, store and queue one song, or refuse it at no cost.

A refusal (quota, bad link, not audio, too long, queue full) costs nothing: nothing is charged, stored or queued.
Accepted jobs are charged and created in one transaction, then queued on Redis; SQLite stays the record.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import shutil
from urllib.parse import urlparse

from bot.requests import JobHandle, LinkSource, QuotaInfo, Refusal, RefusalCode, Source, UploadSource, UserIdentity
from bot.wording import Wording
from separation_worker import audio_io
from separation_worker.contract import metrics, progress_bus, queue
from separation_worker.contract.errors import InputError
from separation_worker.contract.job_spec import JobSpec
from separation_worker.contract.modes import DEFAULT_MODE
from separation_worker.fetch import refuse_private_host
from storage import INCOMING, JobStatus, accept_job, fail_job, list_jobs, quota_status, safe_filename

from .accounts import Accounts
from .context import ServiceContext
from .modes import MODE_OPTION, ModeChoices

log = logging.getLogger(__name__)

MINUTES_PER_JOB = 0.5  # rough GPU time per song, for "try again in N min"


class Submitting:
    def __init__(self, ctx: ServiceContext, accounts: Accounts, modes: ModeChoices):
        self.ctx = ctx
        self.accounts = accounts
        self.modes = modes

    async def submit(
        self, who: UserIdentity, source: Source, delivery: object = None, mode: str | None = None
    ) -> JobHandle | Refusal:
        """Check, charge, store and queue one song (in `mode`, else the user's default); or refuse it, at no cost."""
        outcome = await self._submit(who, source, delivery, mode)
        if isinstance(outcome, Refusal):
            await metrics.count(self.ctx.redis, f"refusals:{outcome.code.value}")
        return outcome

    async def precheck(
        self, who: UserIdentity, size: int | None = None, duration: float | None = None
    ) -> Refusal | None:
        """The cheap checks (quota, queue, declared size and length), for a front end to run before it
        downloads an upload; submit() runs them again."""
        user = await self.accounts.user(who)
        pro, limit = await self.accounts.limit(user.id, who)
        mode = self.modes.default_of(user, pro)  # what the song will cost unless the user picks another mode
        refusal = await self._check_load(user.id, pro, limit, mode) or self._check_declared(size, duration, pro)
        if refusal:
            await metrics.count(self.ctx.redis, f"refusals:{refusal.code.value}")
        return refusal

    async def allow_command(self, who: UserIdentity) -> Refusal | None:
        """Per-user rate limit on commands and messages (a fixed one-minute window in Redis)."""
        redis = self.ctx.redis
        key = f"stembot:rate:{who.platform}:{who.user_id}:{int(self.ctx.clock.now().timestamp() // 60)}"
        count = await redis.incr(key)
        if count == 1:
            await redis.expire(key, 120)
        if count > self.ctx.settings.commands_per_minute:
            return Refusal(RefusalCode.RATE_LIMITED, Wording.RATE_LIMITED)
        return None

    async def _submit(
        self, who: UserIdentity, source: Source, delivery: object, mode: str | None
    ) -> JobHandle | Refusal:
        ctx, settings = self.ctx, self.ctx.settings
        user = await self.accounts.user(who)
        pro, limit = await self.accounts.limit(user.id, who)
        max_duration = self._max_duration(pro)
        mode = mode.strip().lower() if mode else self.modes.default_of(user, pro)
        songs = settings.mode_cost(mode)
        # Cheap checks first: probing a file costs a process, refusing by quota or queue costs a query.
        refusal = (
            self.modes.check(mode, pro)
            or await self._check_load(user.id, pro, limit, mode)
            or await self._check_source(source, max_duration, pro)
        )
        if refusal:
            return refusal
        job_id = new_job_id()
        # The worker holds links to the same per-tier length limit as uploads.
        limits = {"max_duration_s": max_duration, "max_bytes": settings.max_input_bytes}
        if isinstance(source, LinkSource):
            label, spec = source.url, JobSpec.link(source.url.strip(), **limits)
        else:
            label, spec = source.filename, JobSpec.upload(_upload_name(source), **limits)
        spec = spec.with_options(**{MODE_OPTION: mode, "raw_copies": settings.raw_downloads})
        max_in_flight = settings.max_waiting_pro if pro else settings.max_waiting_free
        acceptance = await accept_job(
            ctx.db, user.id, job_id, label, limit, delivery=delivery, spec=spec.to_json(), max_in_flight=max_in_flight,
            songs=songs,
        )
        if acceptance.busy:
            return self._busy_refusal(max_in_flight)
        if acceptance.job is None:
            return self._quota_refusal(pro, acceptance.decision, mode)
        try:
            if isinstance(source, UploadSource):
                await asyncio.to_thread(self._store_upload, job_id, source)
            await queue.enqueue(ctx.redis, job_id)
        except Exception:
            log.exception("job %s: could not be queued", job_id)
            await fail_job(ctx.db, job_id, Wording.NOT_QUEUED_FAILURE, refund=True)
            await asyncio.to_thread(ctx.files.delete_job_files, job_id)
            return Refusal(RefusalCode.BUSY, Wording.NOT_QUEUED)
        decision = acceptance.decision
        position = await queue.position(ctx.redis, job_id)
        await progress_bus.ProgressPublisher(ctx.redis, job_id).publish("queued", 0.0, position=position)
        quota = QuotaInfo(pro, decision.used, limit, decision.remaining, decision.next_free_at)
        return JobHandle(job_id, position, quota, mode=mode, songs=songs)

    # -- the checks -------------------------------------------------------------------------

    async def _check_load(self, user_id: int, pro: bool, limit: int, mode: str = DEFAULT_MODE) -> Refusal | None:
        """The user's quota (for a song in `mode`) and the global queue cap (quota and songs in flight are checked
        again, atomically, when the job is accepted)."""
        decision = await quota_status(self.ctx.db, user_id, limit, songs=self.ctx.settings.mode_cost(mode))
        if not decision.accepted:
            return self._quota_refusal(pro, decision, mode)
        waiting = len(await queue.waiting_ids(self.ctx.redis))
        if waiting >= self.ctx.settings.max_queue:
            running = len(await list_jobs(self.ctx.db, JobStatus.RUNNING))
            minutes = max(1, math.ceil(waiting / max(running, 1) * MINUTES_PER_JOB))
            return Refusal(RefusalCode.QUEUE_FULL, Wording.queue_full(minutes))
        return None

    def _busy_refusal(self, in_flight: int) -> Refusal:
        return Refusal(RefusalCode.BUSY_USER, Wording.busy_user(in_flight))

    def _quota_refusal(self, pro: bool, decision, mode: str = DEFAULT_MODE) -> Refusal:
        wording, now = self.ctx.wording, self.ctx.clock.now()
        if decision.remaining > 0:  # room for a song, not for one in this mode
            message = wording.mode_quota(mode, decision.remaining, decision.next_free_at, now)
        else:
            message = wording.quota(pro, decision.limit, decision.next_free_at, now)
        return Refusal(RefusalCode.QUOTA, message, next_free_at=decision.next_free_at)

    async def _check_source(self, source: Source, max_duration: float, pro: bool) -> Refusal | None:
        if isinstance(source, LinkSource):
            parsed = urlparse(source.url.strip())
            if parsed.scheme.lower() not in {"http", "https"} or not parsed.hostname:
                return Refusal(RefusalCode.BAD_LINK, Wording.BAD_LINK)
            if not self.ctx.settings.allow_private_urls:
                try:
                    await asyncio.to_thread(refuse_private_host, parsed.hostname)
                except InputError as exc:
                    return Refusal(RefusalCode.PRIVATE_LINK, str(exc))
            return None
        size = len(source.data) if source.data is not None else (source.path.stat().st_size if source.path else 0)
        return self._check_declared(size, None, pro) or await asyncio.to_thread(self._probe_upload, source, max_duration, pro)

    def _max_duration(self, pro: bool) -> float:
        settings = self.ctx.settings
        if pro:
            return settings.max_duration_seconds
        return min(settings.max_duration_seconds, settings.max_duration_free_seconds)

    def _check_declared(self, size: int | None, duration: float | None, pro: bool) -> Refusal | None:
        """Refuse by what the platform or the container says, before anything is downloaded or decoded."""
        if size is not None and size > self.ctx.settings.max_input_bytes:
            return Refusal(RefusalCode.TOO_LARGE, self.ctx.wording.too_large())
        if duration is not None and duration > self._max_duration(pro) + 1:
            return Refusal(RefusalCode.TOO_LONG, self.ctx.wording.too_long(duration, pro))
        return None

    # -- uploads: probing and storing ---------------------------------------------------------

    def _probe_upload(self, source: UploadSource, max_duration: float, pro: bool) -> Refusal | None:
        """Refuse files that aren't audio, or are too long, before they cost anything."""
        with self.ctx.files.staging() as staging:
            path = source.path
            if path is None:
                path = staging / safe_filename(source.filename, "upload")
                path.write_bytes(source.data or b"")
            if path.stat().st_size == 0:
                return Refusal(RefusalCode.NOT_AUDIO, Wording.EMPTY_FILE)
            try:
                info = audio_io.probe(path)
            except InputError as exc:
                return Refusal(RefusalCode.NOT_AUDIO, str(exc))
        return self._check_declared(None, audio_io.declared_duration(info), pro)

    def _store_upload(self, job_id: str, source: UploadSource) -> None:
        files = self.ctx.files
        name = f"{INCOMING}/{_upload_name(source)}"
        if source.data is not None:
            files.atomic_write(job_id, name, source.data)
        elif source.movable:
            files.adopt(job_id, name, source.path)  # type: ignore[arg-type]
        else:
            with files.writing(job_id, name) as temp:
                shutil.copyfile(source.path, temp)  # type: ignore[arg-type]
        files.publish(job_id, [name])  # a worker on another machine reads it from the object store


def _upload_name(source: UploadSource) -> str:
    return safe_filename(source.filename, "upload")


def new_job_id() -> str:
    return secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")
