"""Runs one queued job: input from the file store or a link, the pipeline, the result into the database.

The database is the record: the job moves queued -> running -> done | failed there, and every
failure is refunded (bad input costs nothing; our own failures neither). Progress goes to
Redis for watchers. The pipeline itself runs in a thread, so the event loop stays free for
arq's bookkeeping and our heartbeat — and for the worker's other jobs: a worker runs a few at once,
which take turns on the device (the engine's lock), so one job's fetch, decode and CPU stages overlap
another's separation. Time a job spends queued for the device is not counted against its limit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from storage import Database, FileStore, InvalidTransition, jobs
from storage.models import Job, JobStatus

from .contract import messages, metrics
from .contract.errors import InputError
from .contract.job_spec import JobSpec, SourceKind
from .contract.manifest import Manifest
from .contract.messages import NO_SPEC, OUR_FAULT, TIMED_OUT, UPLOAD_GONE
from .contract.progress_bus import STAGE_TO_STATE, ProgressPublisher
from .engine import SeparationEngine
from .models.modes import Mode, mode_named
from .pipeline import separate_song
from .progress import ProgressEvent

if TYPE_CHECKING:
    from stembot.settings import Settings

log = logging.getLogger(__name__)


class JobTimeout(Exception):
    pass


class JobAbandoned(Exception):
    """The attempt's task was cancelled (arq's own time limit, the worker stopping): its thread stops too."""


class Retry(Exception):
    """The attempt failed for a passing reason; the job goes back to the queue."""


@dataclass
class JobRunner:
    settings: Settings
    engine: SeparationEngine
    db: Database
    files: FileStore
    redis: Redis

    async def run(self, job_id: str, attempt: int) -> str:
        """Run one attempt. Returns the final status; raises Retry to be run again."""
        job = await jobs.get_job(self.db, job_id)
        if job is None or job.finished or job.status is JobStatus.EXPIRED:
            return job.status.value if job else "unknown"  # already settled (e.g. enqueued twice)
        publisher = ProgressPublisher(self.redis, job_id)
        if attempt > self.settings.max_attempts:
            return await self._fail(job_id, publisher, OUR_FAULT)
        try:
            if job.status is JobStatus.RUNNING:  # the previous attempt's worker died
                await jobs.requeue_job(self.db, job_id)
            job = await jobs.start_job(self.db, job_id)
        except InvalidTransition:  # cancelled in the meantime
            return (await jobs.get_job(self.db, job_id)).status.value  # type: ignore[union-attr]
        await publisher.publish("downloading", 0.0)  # fetching a link, or reading the upload
        log.info("job %s: attempt %d started", job_id, attempt, extra={"job_id": job_id})

        try:
            manifest = await self._separate(job, publisher)
        except InputError as exc:
            return await self._fail(job_id, publisher, str(exc))
        except JobTimeout:
            return await self._fail(job_id, publisher, TIMED_OUT)
        except Exception:
            log.exception("job %s: attempt %d failed", job_id, attempt, extra={"job_id": job_id})
            await asyncio.to_thread(self.files.remove_outputs, job_id)  # the next attempt starts clean
            if attempt >= self.settings.max_attempts:
                return await self._fail(job_id, publisher, OUR_FAULT)
            await jobs.requeue_job(self.db, job_id)
            await publisher.publish("queued", 0.0)
            raise Retry(job_id) from None
        # Results reach the object store (when there is one) before the job is done, and the upload goes only
        # after: a worker killed in between leaves a job the next attempt can still run.
        await asyncio.to_thread(self.files.publish_outputs, job_id)
        await jobs.finish_job(self.db, job_id, manifest.to_dict())  # the database keeps the same manifest as result.json
        await asyncio.to_thread(self._tidy_after_done, job_id)
        await publisher.publish("done", 1.0)
        await metrics.record_job(self.redis, "done", manifest.timings.to_dict(), manifest.duration)
        log.info("job %s: done", job_id, extra={"job_id": job_id, "outcome": "done", "seconds": manifest.timings.total})
        return "done"

    async def _separate(self, job: Job, publisher: ProgressPublisher) -> Manifest:
        loop = asyncio.get_running_loop()
        spec = self._spec_of(job)
        settings = self._settings_for(spec)
        outputs = self.files.outputs(job.id)
        if spec.source is SourceKind.LINK and spec.url:
            source = spec.url
        else:  # from the object store, when the upload was made on another machine
            source = await asyncio.to_thread(self._upload_path, job.id, spec)
        started = time.monotonic()
        limit = settings.job_timeout_base_s + settings.job_timeout_factor * settings.max_duration_seconds
        waited = 0.0  # queued for the device behind the worker's other jobs: not this job's own time
        abandoned = threading.Event()

        def on_progress(event: ProgressEvent) -> None:  # runs in the pipeline's thread
            nonlocal limit, waited
            if abandoned.is_set():
                raise JobAbandoned()  # frees the device, or the place in its queue, for the others
            if event.duration is not None:  # now the limit can scale with the song's real length
                limit = settings.job_timeout_base_s + settings.job_timeout_factor * event.duration
            if event.device_wait is not None:
                waited = event.device_wait
            if time.monotonic() - started - waited > limit:
                raise JobTimeout()
            state = STAGE_TO_STATE.get(event.stage)
            if state:
                asyncio.run_coroutine_threadsafe(publisher.publish(state, event.fraction), loop)

        try:
            manifest = await asyncio.to_thread(
                functools.partial(
                    separate_song,
                    source,
                    outputs,
                    self.engine,
                    settings,
                    fmt=spec.formats,
                    progress=on_progress,
                    allow_private_urls=self.settings.allow_private_urls,
                    keep_original=spec.keep_original,
                    mode=self._mode_of(spec),
                    raw_copies=spec.raw_copies,
                )
            )
        except asyncio.CancelledError:
            abandoned.set()  # a thread can't be cancelled: it stops at its next progress event
            raise
        return manifest

    def _tidy_after_done(self, job_id: str) -> None:
        self.files.remove_inputs(job_id)  # the upload is no longer needed
        self.files.drop_local_copy(job_id)  # the object store has the results; this machine needn't keep them

    def _spec_of(self, job: Job) -> JobSpec:
        if job.spec_json is None:
            raise InputError(NO_SPEC)
        try:
            return JobSpec.from_json(job.spec_json)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("job %s: unreadable spec: %s", job.id, exc, extra={"job_id": job.id})
            raise InputError(NO_SPEC) from None

    def _mode_of(self, spec: JobSpec) -> Mode:
        try:
            return mode_named(spec.mode)
        except ValueError:  # a mode a newer service knows and this worker does not
            raise InputError(messages.unknown_mode(spec.mode)) from None

    def _settings_for(self, spec: JobSpec):
        """The settings, with the submitting user's tier limits (from the job's spec)."""
        changes: dict[str, object] = {}
        if spec.max_duration_s is not None:
            changes["max_duration_seconds"] = min(float(spec.max_duration_s), self.settings.max_duration_seconds)
        if spec.max_bytes is not None:
            changes["max_input_bytes"] = min(int(spec.max_bytes), self.settings.max_input_bytes)
        return self.settings.replace(**changes) if changes else self.settings

    def _upload_path(self, job_id: str, spec: JobSpec):
        path = self.files.input_file(job_id, spec.upload_name or None)  # no name: a job from before specs named it
        if path is None:
            raise InputError(UPLOAD_GONE)
        return path

    async def _fail(self, job_id: str, publisher: ProgressPublisher, reason: str) -> str:
        await jobs.fail_job(self.db, job_id, reason, refund=True)
        await asyncio.to_thread(self.files.delete_job_files, job_id)  # nothing outlives a failed job
        await publisher.publish("failed", 0.0, message=reason)
        await metrics.record_job(self.redis, "failed")
        log.info("job %s: failed: %s", job_id, reason, extra={"job_id": job_id, "outcome": "failed"})
        return "failed"
