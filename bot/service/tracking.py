"""Tracking results: follow a job, read its result, cancel it, and deliver it exactly once across restarts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from bot.links import sign_link, sign_page_link
from bot.requests import JobResult, StemFile, UserIdentity
from separation_worker.contract import progress_bus, queue
from separation_worker.contract.manifest import Manifest, ManifestError, StemEntry
from storage import (
    InvalidTransition,
    Job,
    JobStatus,
    PieceOutcome,
    cancel_job,
    claim_delivery,
    complete_delivery,
    get_job,
    get_queued_job,
    list_claimable,
    list_jobs,
    record_piece,
    recorded_pieces,
    release_delivery,
    renew_delivery,
)
from storage.files import MANIFEST_FILE

from .accounts import Accounts
from .context import ServiceContext

log = logging.getLogger(__name__)

POSITION_POLL_S = 2.0
DELIVERY_LEASE = timedelta(seconds=60)  # a crashed bot's deliveries are taken over this long after its last renewal


class Tracking:
    def __init__(self, ctx: ServiceContext, accounts: Accounts):
        self.ctx = ctx
        self.accounts = accounts

    # -- following and results ------------------------------------------------------------

    async def watch(self, job_id: str) -> AsyncIterator[progress_bus.JobEvent]:
        """Progress events until the job ends; while it waits, its queue position as it moves.

        SQLite has the last word: when no news comes (e.g. Redis restarted and lost the job's events), a job the
        database says has finished ends the stream all the same. Redis errors reach the caller, who retries.
        """
        db, redis = self.ctx.db, self.ctx.redis
        job = await get_job(db, job_id)
        if job is None:
            return
        if job.finished or job.status is JobStatus.EXPIRED:
            yield _final_event(job)
            return
        last_position: int | None = None
        async for event in progress_bus.follow(redis, job_id, poll_s=POSITION_POLL_S, idle_ticks=True):
            if event is None:
                job = await get_job(db, job_id)
                if job is None:
                    return
                if job.finished or job.status is JobStatus.EXPIRED:
                    yield _final_event(job)
                    return
                # Nothing new: while the job waits, its position still moves as others finish.
                position = await queue.position(redis, job_id)
                if position is None or position == last_position:
                    continue
                event = progress_bus.JobEvent(job_id, "queued", 0.0, position=position)
            if event.state == "queued":
                last_position = event.position
            yield event

    async def result(self, job_id: str) -> JobResult | None:
        """A finished job's stems, analysis and signed download links (None unless done)."""
        settings = self.ctx.settings
        job = await get_job(self.ctx.db, job_id)
        if job is None or job.status is not JobStatus.DONE or job.result_json is None or job.finished_at is None:
            return None
        try:
            manifest = Manifest.from_json(job.result_json)  # the worker's manifest, as SQLite keeps it
        except ManifestError as exc:
            log.error("job %s: unreadable result manifest: %s", job_id, exc, extra={"job_id": job_id})
            return None
        expires_at = job.finished_at + timedelta(hours=settings.file_ttl_hours)
        if self.ctx.files.remote is not None:
            await asyncio.to_thread(self._local_copies, job_id, manifest)
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
            page_url=sign_page_link(settings.public_url, settings.secret_key, job_id, expires_at),
            raw=manifest.to_dict(),
            manifest=manifest,
        )

    def _local_copies(self, job_id: str, manifest: Manifest) -> None:
        # The stems the bots send as files, here on this machine (fetched when the worker ran elsewhere).
        for stem in manifest.stems:
            self.ctx.files.result_file(job_id, stem.primary.file)

    def _stem_file(self, job_id: str, stem: StemEntry, expires_at: datetime) -> StemFile:
        primary, flac = stem.primary, stem.file("flac")
        return StemFile(
            name=stem.name,
            filename=primary.file,
            path=self.ctx.files.path_of(job_id, primary.file),
            size_bytes=primary.size_bytes,
            url=self._link(job_id, primary.file, expires_at),
            silent=stem.silent,
            lossless_url=self._link(job_id, flac.file, expires_at) if flac else None,
            loudness=stem.loudness,
        )

    def _link(self, job_id: str, filename: str, expires_at: datetime) -> str:
        settings = self.ctx.settings
        return sign_link(settings.public_url, settings.secret_key, job_id, filename, expires_at)

    async def job(self, job_id: str) -> Job | None:
        return await get_job(self.ctx.db, job_id)

    async def queue_status(self) -> dict[str, int]:
        waiting = len(await queue.waiting_ids(self.ctx.redis))
        running = len(await list_jobs(self.ctx.db, JobStatus.RUNNING))
        return {"waiting": waiting, "running": running}

    # -- cancelling, restarts and delivery --------------------------------------------------

    async def cancel(self, who: UserIdentity) -> Job | None:
        """Cancel the user's waiting job (refunded). None if there is none or a worker already started it."""
        ctx = self.ctx
        user = await self.accounts.user(who)
        job = await get_queued_job(ctx.db, user.id)
        if job is None:
            return None
        try:
            cancelled = await cancel_job(ctx.db, job.id)
        except InvalidTransition:
            return None
        await queue.remove(ctx.redis, job.id)
        await asyncio.to_thread(ctx.files.delete_job_files, job.id)
        await progress_bus.ProgressPublisher(ctx.redis, job.id).publish("cancelled", 0.0, message="Cancelled.")
        return cancelled

    async def active_jobs(self) -> list[Job]:
        """Jobs still queued or running: a restarted front end re-attaches its watchers to them."""
        return await list_jobs(self.ctx.db, JobStatus.QUEUED, JobStatus.RUNNING)

    async def undelivered_jobs(self) -> list[Job]:
        """Finished jobs whose result has not fully reached the user and that nobody is delivering now (the bot
        restarted meanwhile, a delivery was left for later, or its deliverer crashed and its lease lapsed)."""
        return await list_claimable(self.ctx.db)

    async def claim_delivery(self, job_id: str, lease: timedelta = DELIVERY_LEASE) -> bool:
        """True for exactly one caller at a time: that caller delivers the result, renewing its lease while it
        sends, then completes (every piece went) or releases it (stopping, or leaving it for later)."""
        return await claim_delivery(self.ctx.db, job_id, self.ctx.delivery_owner, lease)

    async def renew_delivery(self, job_id: str, lease: timedelta = DELIVERY_LEASE) -> bool:
        return await renew_delivery(self.ctx.db, job_id, self.ctx.delivery_owner, lease)

    async def release_delivery(self, job_id: str) -> None:
        await release_delivery(self.ctx.db, job_id, self.ctx.delivery_owner)

    async def delivered_pieces(self, job_id: str) -> dict[str, PieceOutcome]:
        """What already went of this job's result (a resumed delivery skips it)."""
        return await recorded_pieces(self.ctx.db, job_id)

    async def record_piece(self, job_id: str, piece: str, outcome: PieceOutcome) -> None:
        await record_piece(self.ctx.db, job_id, piece, outcome)

    async def complete_delivery(self, job_id: str) -> bool:
        """Every piece went: the job is delivered, for good."""
        return await complete_delivery(self.ctx.db, job_id, self.ctx.delivery_owner)


def _final_event(job: Job) -> progress_bus.JobEvent:
    return progress_bus.JobEvent(job.id, job.status.value, 1.0, message=job.error or "")
