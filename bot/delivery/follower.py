"""The platform-neutral follower: watch a job, edit its status, deliver its result piece by piece, record it.

    follow(job) ─> watch (retried across Redis errors and restarts; SQLite has the last word)
               ─> throttled status edits
               ─> claim (a lease) ─> each piece not yet recorded: send with retries, record ─> complete

A restart resumes from the record (`resume`), and a sweep keeps looking for finished jobs nobody delivers
(left for later after repeated failures, or whose deliverer crashed and whose lease lapsed). `close()` stops
watching at once, lets deliveries under way finish for `drain_s`, then stops them and releases their leases,
so that the next start resumes where they stopped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta

from redis.exceptions import RedisError

from bot.service import DELIVERY_LEASE, SeparationService
from separation_worker.contract.progress_bus import JobEvent
from storage import Job, JobStatus, PieceOutcome

from .channel import Channel
from .pieces import NOTICE, SUMMARY, Notice, stem_pieces, summary_for
from .retry import GaveUp, Rejected, RetryPolicy, retrying
from .status import ThrottledStatus

log = logging.getLogger(__name__)

ChannelFor = Callable[[Job, object | None], Channel | None]  # None: not this platform's job


@dataclass(frozen=True)
class FollowerConfig:
    edit_interval_s: float = 1.5  # status edits per message (both platforms throttle frequent edits)
    drain_s: float = 8.0  # on stop, how long deliveries under way may go on
    sweep_s: float = 30.0  # how often finished jobs nobody is delivering are looked for
    lease: timedelta = DELIVERY_LEASE
    send: RetryPolicy = field(default_factory=RetryPolicy)
    watch: RetryPolicy = field(default_factory=lambda: RetryPolicy(base_s=0.5, max_s=10.0))  # never gives up


class Follower:
    def __init__(self, service: SeparationService, channel_for: ChannelFor, config: FollowerConfig | None = None):
        self.service = service
        self.channel_for = channel_for
        self.config = config or FollowerConfig()
        self._tasks: dict[str, asyncio.Task] = {}
        self._delivering: set[str] = set()
        self._sweeper: asyncio.Task | None = None
        self._closed = False
        self._unreadable: set[str] = set()  # jobs whose delivery data channel_for could not read (logged once)

    # -- lifecycle ---------------------------------------------------------------------------------

    def follow(self, job_id: str, live: object | None = None) -> None:
        """Watch the job until it ends, then deliver it; `live` is the platform's context (e.g. Discord's
        interaction) for the channel. One task per job: following a job already followed does nothing."""
        self._spawn(job_id, lambda: self._follow(job_id, live))

    async def resume(self) -> None:
        """After a (re)start: follow the jobs still running, deliver the finished ones nobody delivered, and
        keep sweeping for those. Idempotent (Discord calls it on every READY)."""
        if self._closed:
            return
        for job in await self.service.active_jobs():
            if self._channel(job, None) is not None:
                self.follow(job.id)
        await self._sweep_once()
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="delivery-sweep")

    async def close(self) -> None:
        """Stop watching; drain deliveries under way for `drain_s`; stop the rest (the next start resumes them)."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for job_id, task in list(self._tasks.items()):
            if job_id not in self._delivering:
                task.cancel()
        sending = [self._tasks[j] for j in self._delivering if j in self._tasks]
        if sending:
            log.info("draining %d deliveries for up to %.0f s", len(sending), self.config.drain_s)
            _, pending = await asyncio.wait(sending, timeout=self.config.drain_s)
            for task in pending:
                task.cancel()
        await asyncio.gather(*self._tasks.values(), *([self._sweeper] if self._sweeper else []), return_exceptions=True)

    def _spawn(self, job_id: str, work: Callable[[], Coroutine[object, object, None]]) -> None:
        if self._closed or job_id in self._tasks:
            return
        task = asyncio.create_task(work(), name=f"delivery-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_s)
            await self._sweep_once()

    async def _sweep_once(self) -> None:
        try:
            jobs = await self.service.undelivered_jobs()
        except Exception:
            log.exception("could not list undelivered jobs")
            return
        for job in jobs:
            channel = self._channel(job, None)
            if channel is not None:
                self._spawn(job.id, functools.partial(self._deliver_guarded, job.id, channel))

    def _channel(self, job: Job, live: object | None) -> Channel | None:
        """The job's channel here, or None. Delivery data this platform cannot read (a damaged or foreign row)
        is logged once and left alone: one bad row must not stop start-up or the sweep."""
        try:
            return self.channel_for(job, live)
        except Exception:
            if job.id not in self._unreadable:
                self._unreadable.add(job.id)
                log.exception("job %s: its delivery data cannot be read; it is not delivered", job.id)
            return None

    # -- following ---------------------------------------------------------------------------------

    async def _follow(self, job_id: str, live: object | None) -> None:
        job = await self.service.job(job_id)
        channel = None if job is None else self._channel(job, live)
        if channel is None:
            return
        status = ThrottledStatus(channel.edit_status, self.config.edit_interval_s)
        await self._guarded(job_id, self._watch_then_deliver(job_id, channel, status))

    async def _watch_then_deliver(self, job_id: str, channel: Channel, status: ThrottledStatus) -> None:
        final = await self._watch(job_id, channel, status)
        status.cancel()
        if final is None:
            return
        if final.state in ("done", "failed"):
            await self._deliver(job_id, channel, status)
        else:  # cancelled or expired: the status says so, nothing to deliver
            await status.settle(channel.describe(final))

    async def _watch(self, job_id: str, channel: Channel, status: ThrottledStatus) -> JobEvent | None:
        """The job's terminal event, showing progress on the way; Redis errors are waited out."""
        failures = 0
        while True:
            try:
                async for event in self.service.watch(job_id):
                    failures = 0
                    if event.terminal:
                        return event
                    await status.show(channel.describe(event))
                return None  # the job is unknown
            except (RedisError, OSError) as exc:
                failures += 1
                delay = self.config.watch.delay(failures)
                log.warning("job %s: lost the progress stream (%s); again in %.1f s", job_id, type(exc).__name__, delay)
                await asyncio.sleep(delay)

    async def _guarded(self, job_id: str, work: Awaitable[None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: delivery failed; it is retried later", job_id)

    async def _deliver_guarded(self, job_id: str, channel: Channel) -> None:
        await self._guarded(job_id, self._deliver(job_id, channel, None))

    # -- delivering --------------------------------------------------------------------------------

    async def _deliver(self, job_id: str, channel: Channel, status: ThrottledStatus | None) -> None:
        if self._closed or not await self.service.claim_delivery(job_id, self.config.lease):
            return  # stopping, or someone else (another process, an earlier task) delivers it
        self._delivering.add(job_id)
        keeper = asyncio.create_task(self._keep_lease(job_id, asyncio.current_task()))
        complete = False
        try:
            status = status or ThrottledStatus(channel.edit_status, self.config.edit_interval_s)
            complete = await self._send_pieces(job_id, channel, status)
        finally:
            keeper.cancel()
            self._delivering.discard(job_id)
            if complete:
                await self.service.complete_delivery(job_id)
            else:
                await self.service.release_delivery(job_id)

    async def _keep_lease(self, job_id: str, delivery: asyncio.Task | None) -> None:
        every = self.config.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            if not await self.service.renew_delivery(job_id, self.config.lease):
                log.error("job %s: lost the delivery lease; stopping this delivery", job_id)
                if delivery is not None:
                    delivery.cancel()
                return

    async def _send_pieces(self, job_id: str, channel: Channel, status: ThrottledStatus) -> bool:
        """Send what the record says has not gone yet. True once every piece went."""
        job = await self.service.job(job_id)
        if job is None:
            return True
        record = await self.service.delivered_pieces(job_id)
        if job.status is JobStatus.FAILED:
            return await self._send_once(job_id, NOTICE, record, lambda: channel.send_notice(Notice(job.source, job.error)))
        result = await self.service.result(job_id)
        if result is None:  # done, but its files expired before anyone could deliver them
            notice = Notice(job.source, None, expired=True)
            return await self._send_once(job_id, NOTICE, record, lambda: channel.send_notice(notice))
        await status.settle(channel.describe(JobEvent(job_id, "uploading")))
        for piece in stem_pieces(result, channel.upload_limit):
            if piece.key in record:
                continue
            try:
                send = functools.partial(channel.send_stem, result, piece.stem)
                await retrying(send, self.config.send, f"job {job_id}: {piece.key}")
                outcome = PieceOutcome.SENT
            except (Rejected, GaveUp) as exc:
                log.warning("job %s: %s not uploaded (%s); the summary links it", job_id, piece.key, exc)
                outcome = PieceOutcome.LINKED
            await self.service.record_piece(job_id, piece.key, outcome)
            record[piece.key] = outcome
        summary = summary_for(result, channel.upload_limit, record)
        if not await self._send_once(job_id, SUMMARY, record, lambda: channel.send_summary(summary)):
            return False
        await status.settle(channel.done_text(result))
        return True

    async def _send_once(
        self, job_id: str, key: str, record: dict[str, PieceOutcome], send: Callable[[], Awaitable[None]]
    ) -> bool:
        if key in record:
            return True
        try:
            await retrying(send, self.config.send, f"job {job_id}: {key}")
        except GaveUp as exc:
            log.warning("%s; left for later", exc)
            return False
        except Rejected as exc:  # e.g. the user blocked the bot: nothing more can reach them
            log.warning("job %s: %s refused (%s); giving up on this delivery", job_id, key, exc)
            return True
        await self.service.record_piece(job_id, key, PieceOutcome.SENT)
        record[key] = PieceOutcome.SENT
        return True
