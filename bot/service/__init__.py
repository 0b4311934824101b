"""The service every front end uses: submit a song, follow it, get its result.

Platform-neutral: Telegram and Discord adapters call it with a UserIdentity and a Source.
A refusal (quota, bad link, not audio, too long, queue full) costs nothing: nothing is
charged, stored or queued. Accepted jobs are charged and created in one transaction,
then queued on Redis; SQLite stays the record, so a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from urllib.parse import urlparse

from bot.links import sign_link, sign_page_link
from bot.requests import (
    JobHandle,
    JobResult,
    LinkSource,
    QuotaInfo,
    Refusal,
    RefusalCode,
    Source,
    StemFile,
    UploadSource,
    UserIdentity,
)
from bot.wording import Wording
from separation_worker import audio_io
from separation_worker.contract import metrics, progress_bus, queue
from separation_worker.contract.errors import InputError
from separation_worker.contract.job_spec import JobSpec
from separation_worker.contract.manifest import Manifest, ManifestError, StemEntry
from separation_worker.contract.reconciler import reconcile
from separation_worker.fetch import refuse_private_host
from storage import (
    INCOMING,
    Clock,
    Database,
    FileStore,
    InvalidTransition,
    Job,
    JobStatus,
    LinkCode,
    LinkCodeError,
    PieceOutcome,
    ProGrant,
    ProReason,
    SystemClock,
    accept_job,
    cancel_job,
    claim_delivery,
    complete_delivery,
    create_link_code,
    fail_job,
    get_guild_setting,
    get_job,
    get_or_create_user,
    get_queued_job,
    grant_pro,
    is_pro,
    list_claimable,
    list_jobs,
    pro_reason,
    quota_status,
    record_piece,
    record_pro_role,
    recorded_pieces,
    redeem_link_code,
    release_delivery,
    renew_delivery,
    retire_unscoped_grants,
    revoke_pro,
    safe_filename,
    set_guild_setting,
)
from storage.files import MANIFEST_FILE

log = logging.getLogger(__name__)

POSITION_POLL_S = 2.0
DELIVERY_LEASE = timedelta(seconds=60)  # a crashed bot's deliveries are taken over this long after its last renewal
MINUTES_PER_JOB = 0.5  # rough GPU time per song, for "try again in N min"


class SeparationService:
    def __init__(self, settings, db: Database, files: FileStore, redis, clock: Clock):
        self.settings = settings
        self.db = db
        self.files = files
        self.redis = redis
        self.clock = clock
        self.wording = Wording.of(settings)
        # Names this process in delivery leases: unique per start, readable in the database.
        self.delivery_owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

    @classmethod
    async def start(cls, settings, clock: Clock | None = None) -> SeparationService:
        """Open storage and Redis, and put back into the queue whatever Redis lost."""
        settings.require("secret_key", "public_url")
        clock = clock or SystemClock()
        db = await Database.in_data_dir(settings.data_dir, clock=clock)
        redis = await queue.connect(settings.redis_url)
        service = cls(settings, db, FileStore.in_data_dir(settings.data_dir), redis, clock)
        await reconcile(db, redis)
        retired = await retire_unscoped_grants(db, [f"discord:{i}" for i in settings.discord_owner_ids])
        if retired:
            log.warning("revoked %d Pro grants from before grants had a scope, not made by DISCORD_OWNER_IDS", retired)
        return service

    async def close(self) -> None:
        await self.redis.aclose()
        await self.db.close()

    async def __aenter__(self) -> SeparationService:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- users and quota --------------------------------------------------------------

    async def _user(self, who: UserIdentity):
        user = await get_or_create_user(self.db, who.platform, who.user_id, who.display_name or None)
        scope = self._pro_scope(who)
        # Only the home server's role is remembered (for DMs and linked accounts); other servers' roles are
        # checked live where they count, and must not overwrite it.
        if who.holds_pro_role is not None and scope is not None and scope == self._home_guild():
            await record_pro_role(self.db, user.id, who.holds_pro_role, scope)
        return user

    def _home_guild(self) -> str | None:
        home = self.settings.discord_home_guild_id
        return None if home is None else str(home)

    def _pro_scope(self, who: UserIdentity) -> str | None:
        """The Discord server whose Pro counts for this request: the one it was made in. Anywhere else (DMs,
        Telegram) it is the home server (DISCORD_HOME_GUILD_ID), so that a stranger's server never reaches there."""
        return who.guild_id if who.guild_id is not None else self._home_guild()

    async def _limit(self, user_id: int, who: UserIdentity) -> tuple[bool, int]:
        pro = await is_pro(self.db, user_id, caller_says_pro=bool(who.holds_pro_role), guild_id=self._pro_scope(who))
        return pro, self.settings.pro_songs_per_day if pro else self.settings.free_songs_per_day

    async def quota(self, who: UserIdentity) -> QuotaInfo:
        user = await self._user(who)
        pro, limit = await self._limit(user.id, who)
        decision = await quota_status(self.db, user.id, limit)
        return QuotaInfo(pro, decision.used, limit, decision.remaining, decision.next_free_at)

    # -- submitting -----------------------------------------------------------------------

    async def submit(self, who: UserIdentity, source: Source, delivery: object = None) -> JobHandle | Refusal:
        """Check, charge, store and queue one song; or refuse it, at no cost."""
        outcome = await self._submit(who, source, delivery)
        if isinstance(outcome, Refusal):
            await metrics.count(self.redis, f"refusals:{outcome.code.value}")
        return outcome

    async def precheck(
        self, who: UserIdentity, size: int | None = None, duration: float | None = None
    ) -> Refusal | None:
        """The cheap checks (quota, queue, declared size and length), for a front end to run before it
        downloads an upload; submit() runs them again."""
        user = await self._user(who)
        pro, limit = await self._limit(user.id, who)
        refusal = await self._check_load(user.id, pro, limit) or self._check_declared(size, duration, pro)
        if refusal:
            await metrics.count(self.redis, f"refusals:{refusal.code.value}")
        return refusal

    async def _submit(self, who: UserIdentity, source: Source, delivery: object) -> JobHandle | Refusal:
        user = await self._user(who)
        pro, limit = await self._limit(user.id, who)
        max_duration = self._max_duration(pro)
        # Cheap checks first: probing a file costs a process, refusing by quota or queue costs a query.
        refusal = await self._check_load(user.id, pro, limit) or await self._check_source(source, max_duration, pro)
        if refusal:
            return refusal
        job_id = new_job_id()
        # The worker holds links to the same per-tier length limit as uploads.
        limits = {"max_duration_s": max_duration, "max_bytes": self.settings.max_input_bytes}
        if isinstance(source, LinkSource):
            label, spec = source.url, JobSpec.link(source.url.strip(), **limits)
        else:
            label, spec = source.filename, JobSpec.upload(_upload_name(source), **limits)
        max_in_flight = self.settings.max_waiting_pro if pro else self.settings.max_waiting_free
        acceptance = await accept_job(
            self.db, user.id, job_id, label, limit, delivery=delivery, spec=spec.to_json(), max_in_flight=max_in_flight
        )
        if acceptance.busy:
            return self._busy_refusal(max_in_flight)
        if acceptance.job is None:
            return self._quota_refusal(pro, acceptance.decision)
        try:
            if isinstance(source, UploadSource):
                await asyncio.to_thread(self._store_upload, job_id, source)
            await queue.enqueue(self.redis, job_id)
        except Exception:
            log.exception("job %s: could not be queued", job_id)
            await fail_job(self.db, job_id, Wording.NOT_QUEUED_FAILURE, refund=True)
            await asyncio.to_thread(self.files.delete_job_files, job_id)
            return Refusal(RefusalCode.BUSY, Wording.NOT_QUEUED)
        decision = acceptance.decision
        position = await queue.position(self.redis, job_id)
        await progress_bus.ProgressPublisher(self.redis, job_id).publish("queued", 0.0, position=position)
        return JobHandle(job_id, position, QuotaInfo(pro, decision.used, limit, decision.remaining, decision.next_free_at))

    async def _check_load(self, user_id: int, pro: bool, limit: int) -> Refusal | None:
        """The user's quota and the global queue cap (quota and songs in flight are checked again, atomically,
        when the job is accepted)."""
        decision = await quota_status(self.db, user_id, limit)
        if not decision.accepted:
            return self._quota_refusal(pro, decision)
        waiting = len(await queue.waiting_ids(self.redis))
        if waiting >= self.settings.max_queue:
            running = len(await list_jobs(self.db, JobStatus.RUNNING))
            minutes = max(1, math.ceil(waiting / max(running, 1) * MINUTES_PER_JOB))
            return Refusal(RefusalCode.QUEUE_FULL, Wording.queue_full(minutes))
        return None

    def _busy_refusal(self, in_flight: int) -> Refusal:
        return Refusal(RefusalCode.BUSY_USER, Wording.busy_user(in_flight))

    async def allow_command(self, who: UserIdentity) -> Refusal | None:
        """Per-user rate limit on commands and messages (a fixed one-minute window in Redis)."""
        key = f"stembot:rate:{who.platform}:{who.user_id}:{int(self.clock.now().timestamp() // 60)}"
        count = await self.redis.incr(key)
        if count == 1:
            await self.redis.expire(key, 120)
        if count > self.settings.commands_per_minute:
            return Refusal(RefusalCode.RATE_LIMITED, Wording.RATE_LIMITED)
        return None

    async def _check_source(self, source: Source, max_duration: float, pro: bool) -> Refusal | None:
        if isinstance(source, LinkSource):
            parsed = urlparse(source.url.strip())
            if parsed.scheme.lower() not in {"http", "https"} or not parsed.hostname:
                return Refusal(RefusalCode.BAD_LINK, Wording.BAD_LINK)
            if not self.settings.allow_private_urls:
                try:
                    await asyncio.to_thread(refuse_private_host, parsed.hostname)
                except InputError as exc:
                    return Refusal(RefusalCode.PRIVATE_LINK, str(exc))
            return None
        size = len(source.data) if source.data is not None else (source.path.stat().st_size if source.path else 0)
        return self._check_declared(size, None, pro) or await asyncio.to_thread(self._probe_upload, source, max_duration, pro)

    def _max_duration(self, pro: bool) -> float:
        if pro:
            return self.settings.max_duration_seconds
        return min(self.settings.max_duration_seconds, self.settings.max_duration_free_seconds)

    def _check_declared(self, size: int | None, duration: float | None, pro: bool) -> Refusal | None:
        """Refuse by what the platform or the container says, before anything is downloaded or decoded."""
        if size is not None and size > self.settings.max_input_bytes:
            return Refusal(RefusalCode.TOO_LARGE, self.wording.too_large())
        if duration is not None and duration > self._max_duration(pro) + 1:
            return Refusal(RefusalCode.TOO_LONG, self.wording.too_long(duration, pro))
        return None

    def _probe_upload(self, source: UploadSource, max_duration: float, pro: bool) -> Refusal | None:
        """Refuse files that aren't audio, or are too long, before they cost anything."""
        with self.files.staging() as staging:
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
        name = f"{INCOMING}/{_upload_name(source)}"
        if source.data is not None:
            self.files.atomic_write(job_id, name, source.data)
        elif source.movable:
            self.files.adopt(job_id, name, source.path)  # type: ignore[arg-type]
        else:
            with self.files.writing(job_id, name) as temp:
                shutil.copyfile(source.path, temp)  # type: ignore[arg-type]

    def _quota_refusal(self, pro: bool, decision) -> Refusal:
        message = self.wording.quota(pro, decision.limit, decision.next_free_at, self.clock.now())
        return Refusal(RefusalCode.QUOTA, message, next_free_at=decision.next_free_at)

    async def pro_status(self, who: UserIdentity) -> ProReason | None:
        """Why the user is Pro (role, grant, linked account), or None."""
        user = await self._user(who)
        return await pro_reason(
            self.db, user.id, caller_says_pro=bool(who.holds_pro_role), guild_id=self._pro_scope(who)
        )

    # -- admin and account links -------------------------------------------------------------

    async def grant_pro(
        self, admin: str, target: UserIdentity, days: float | None = None, guild_id: int | str | None = None
    ) -> ProGrant:
        """Record a Pro grant (until `days` from now, or open-ended) that holds in server `guild_id`, or
        everywhere when None: that is for operators only, which the front end checks."""
        user = await self._user(target)
        until = self.clock.now() + timedelta(days=days) if days else None
        return await grant_pro(self.db, user.id, admin, until=until, guild_id=guild_id)

    async def revoke_pro(self, target: UserIdentity, guild_id: int | str | None = None) -> bool:
        """End the target's grant in server `guild_id`, or their grant for everywhere when None (operators)."""
        user = await self._user(target)
        return await revoke_pro(self.db, user.id, guild_id=guild_id)

    async def link_code(self, who: UserIdentity) -> LinkCode:
        """A one-time code the user enters on the other platform to link the two accounts."""
        user = await self._user(who)
        return await create_link_code(self.db, user.id)

    async def redeem_link_code(self, who: UserIdentity, code: str) -> str:
        """Link this account with the code's owner; returns a user-facing message either way."""
        user = await self._user(who)
        try:
            other = await redeem_link_code(self.db, code.strip().upper(), user.id)
        except LinkCodeError as exc:
            return exc.message
        return f"Linked with your {other.platform.capitalize()} account {other.display_name or other.platform_user_id}. Pro on either counts on both."

    async def guild_setting(self, guild_id: int, key: str) -> str | None:
        return await get_guild_setting(self.db, guild_id, key)

    async def set_guild_setting(self, guild_id: int, key: str, value: str | None) -> None:
        await set_guild_setting(self.db, guild_id, key, value)

    async def queue_status(self) -> dict[str, int]:
        waiting = len(await queue.waiting_ids(self.redis))
        running = len(await list_jobs(self.db, JobStatus.RUNNING))
        return {"waiting": waiting, "running": running}

    # -- following and results ------------------------------------------------------------

    async def watch(self, job_id: str) -> AsyncIterator[progress_bus.JobEvent]:
        """Progress events until the job ends; while it waits, its queue position as it moves.

        SQLite has the last word: when no news comes (e.g. Redis restarted and lost the job's events), a job the
        database says has finished ends the stream all the same. Redis errors reach the caller, who retries.
        """
        job = await get_job(self.db, job_id)
        if job is None:
            return
        if job.finished or job.status is JobStatus.EXPIRED:
            yield _final_event(job)
            return
        last_position: int | None = None
        async for event in progress_bus.follow(self.redis, job_id, poll_s=POSITION_POLL_S, idle_ticks=True):
            if event is None:
                job = await get_job(self.db, job_id)
                if job is None:
                    return
                if job.finished or job.status is JobStatus.EXPIRED:
                    yield _final_event(job)
                    return
                # Nothing new: while the job waits, its position still moves as others finish.
                position = await queue.position(self.redis, job_id)
                if position is None or position == last_position:
                    continue
                event = progress_bus.JobEvent(job_id, "queued", 0.0, position=position)
            if event.state == "queued":
                last_position = event.position
            yield event

    async def result(self, job_id: str) -> JobResult | None:
        """A finished job's stems, analysis and signed download links (None unless done)."""
        job = await get_job(self.db, job_id)
        if job is None or job.status is not JobStatus.DONE or job.result_json is None or job.finished_at is None:
            return None
        try:
            manifest = Manifest.from_json(job.result_json)  # the worker's manifest, as SQLite keeps it
        except ManifestError as exc:
            log.error("job %s: unreadable result manifest: %s", job_id, exc, extra={"job_id": job_id})
            return None
        expires_at = job.finished_at + timedelta(hours=self.settings.file_ttl_hours)
        return JobResult(
            job_id=job_id,
            title=manifest.title,
            duration=manifest.duration,
            stems=[self._stem_file(job_id, stem, expires_at) for stem in manifest.stems],
            bpm=manifest.bpm,
            key=manifest.key,
            camelot=manifest.camelot,
            summary=manifest.analysis.summary(),
            models=[m.to_dict() for m in manifest.models],
            expires_at=expires_at,
            result_url=self._link(job_id, MANIFEST_FILE, expires_at),
            page_url=sign_page_link(self.settings.public_url, self.settings.secret_key, job_id, expires_at),
            raw=manifest.to_dict(),
            manifest=manifest,
        )

    def _stem_file(self, job_id: str, stem: StemEntry, expires_at: datetime) -> StemFile:
        primary, flac = stem.primary, stem.file("flac")
        return StemFile(
            name=stem.name,
            filename=primary.file,
            path=self.files.path_of(job_id, primary.file),
            size_bytes=primary.size_bytes,
            url=self._link(job_id, primary.file, expires_at),
            silent=stem.silent,
            lossless_url=self._link(job_id, flac.file, expires_at) if flac else None,
            loudness=stem.loudness,
        )

    def _link(self, job_id: str, filename: str, expires_at: datetime) -> str:
        return sign_link(self.settings.public_url, self.settings.secret_key, job_id, filename, expires_at)

    async def job(self, job_id: str) -> Job | None:
        return await get_job(self.db, job_id)

    # -- cancelling, restarts and delivery --------------------------------------------------

    async def cancel(self, who: UserIdentity) -> Job | None:
        """Cancel the user's waiting job (refunded). None if there is none or a worker already started it."""
        user = await self._user(who)
        job = await get_queued_job(self.db, user.id)
        if job is None:
            return None
        try:
            cancelled = await cancel_job(self.db, job.id)
        except InvalidTransition:
            return None
        await queue.remove(self.redis, job.id)
        await asyncio.to_thread(self.files.delete_job_files, job.id)
        await progress_bus.ProgressPublisher(self.redis, job.id).publish("cancelled", 0.0, message="Cancelled.")
        return cancelled

    async def active_jobs(self) -> list[Job]:
        """Jobs still queued or running: a restarted front end re-attaches its watchers to them."""
        return await list_jobs(self.db, JobStatus.QUEUED, JobStatus.RUNNING)

    async def undelivered_jobs(self) -> list[Job]:
        """Finished jobs whose result has not fully reached the user and that nobody is delivering now (the bot
        restarted meanwhile, a delivery was left for later, or its deliverer crashed and its lease lapsed)."""
        return await list_claimable(self.db)

    async def claim_delivery(self, job_id: str, lease: timedelta = DELIVERY_LEASE) -> bool:
        """True for exactly one caller at a time: that caller delivers the result, renewing its lease while it
        sends, then completes (every piece went) or releases it (stopping, or leaving it for later)."""
        return await claim_delivery(self.db, job_id, self.delivery_owner, lease)

    async def renew_delivery(self, job_id: str, lease: timedelta = DELIVERY_LEASE) -> bool:
        return await renew_delivery(self.db, job_id, self.delivery_owner, lease)

    async def release_delivery(self, job_id: str) -> None:
        await release_delivery(self.db, job_id, self.delivery_owner)

    async def delivered_pieces(self, job_id: str) -> dict[str, PieceOutcome]:
        """What already went of this job's result (a resumed delivery skips it)."""
        return await recorded_pieces(self.db, job_id)

    async def record_piece(self, job_id: str, piece: str, outcome: PieceOutcome) -> None:
        await record_piece(self.db, job_id, piece, outcome)

    async def complete_delivery(self, job_id: str) -> bool:
        """Every piece went: the job is delivered, for good."""
        return await complete_delivery(self.db, job_id, self.delivery_owner)


def _final_event(job: Job) -> progress_bus.JobEvent:
    return progress_bus.JobEvent(job.id, job.status.value, 1.0, message=job.error or "")


def _upload_name(source: UploadSource) -> str:
    return safe_filename(source.filename, "upload")


def new_job_id() -> str:
    return secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")

