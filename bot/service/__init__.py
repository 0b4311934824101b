"""The service every front end uses: submit a song, follow it, get its result.

Platform-neutral: Telegram and Discord adapters (and `stembot web`) call it with a UserIdentity and a Source.
A refusal (quota, bad link, not audio, too long, queue full) costs nothing: nothing is charged, stored or
queued. Accepted jobs are charged and created in one transaction, then queued on Redis; SQLite stays the record,
so a restart loses nothing.

The work is split by job, one module each:

- `context`    -- `ServiceContext`, what the parts share: settings, database, files, Redis, clock, wording and
                  this process's name in delivery leases.
- `accounts`   -- `Accounts`: users, quota, Pro status, grants and revokes, link codes, server settings.
- `submitting` -- `Submitting`: submit, precheck, the rate limit, the checks, probing and storing uploads.
- `tracking`   -- `Tracking`: watch, result, job, cancel, queue status, active and undelivered jobs, and the
                  delivery claims, leases and piece records.

`SeparationService` is a facade over the three: it opens and closes what they share and hands each public
method to the part that does it, in one line. Front ends keep depending on one object with one set of methods
(nothing that calls the service had to change), while each part can be read, and tested, on its own; the parts
are also reachable as `service.accounts`, `service.submitting` and `service.tracking`. The delegation is spelled
out rather than generated (no `__getattr__`, no mixins) so that the whole surface is visible here and to mypy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from bot.requests import JobHandle, JobResult, ModeChange, ModeOption, QuotaInfo, Refusal, Source, UserIdentity
from bot.wording import Wording
from separation_worker.contract import progress_bus, queue
from separation_worker.contract.reconciler import reconcile
from storage import (
    Clock,
    Database,
    FileStore,
    Job,
    LinkCode,
    PieceOutcome,
    ProGrant,
    ProReason,
    SystemClock,
    retire_unscoped_grants,
)

from .accounts import Accounts
from .context import ServiceContext
from .modes import ModeChoices
from .submitting import MINUTES_PER_JOB, Submitting, new_job_id
from .tracking import DELIVERY_LEASE, POSITION_POLL_S, Tracking

__all__ = [
    "DELIVERY_LEASE",
    "MINUTES_PER_JOB",
    "POSITION_POLL_S",
    "Accounts",
    "SeparationService",
    "ServiceContext",
    "Submitting",
    "Tracking",
    "new_job_id",
]

log = logging.getLogger(__name__)

TRIM_EVERY_S = 600.0


class SeparationService:
    def __init__(self, settings, db: Database, files: FileStore, redis, clock: Clock):
        self.context = ServiceContext.of(settings, db, files, redis, clock)
        self.accounts = Accounts(self.context)
        self.modes = ModeChoices(self.context, self.accounts)
        self.submitting = Submitting(self.context, self.accounts, self.modes)
        self.tracking = Tracking(self.context, self.accounts)
        self._trimmer: asyncio.Task | None = None

    @classmethod
    async def start(cls, settings, clock: Clock | None = None) -> SeparationService:
        """Open storage and Redis, and put back into the queue whatever Redis lost."""
        settings.require("secret_key", "public_url")
        clock = clock or SystemClock()
        db = await Database.for_settings(settings, clock=clock)
        redis = await queue.connect(settings.redis_url)
        files = FileStore.for_settings(settings)
        await asyncio.to_thread(files.prepare)
        service = cls(settings, db, files, redis, clock)
        if files.remote is not None:
            service._trimmer = asyncio.create_task(service._trim_local_copies(), name="trim-local-copies")
        await reconcile(db, redis)
        retired = await retire_unscoped_grants(db, [f"discord:{i}" for i in settings.discord_owner_ids])
        if retired:
            log.warning("revoked %d Pro grants from before grants had a scope, not made by DISCORD_OWNER_IDS", retired)
        return service

    async def _trim_local_copies(self) -> None:
        # With an object store, this machine's copies (uploads, stems fetched to send) go once the job is old.
        while True:
            await asyncio.sleep(TRIM_EVERY_S)
            older_than = self.clock.now() - timedelta(hours=self.settings.file_ttl_hours)
            try:
                await asyncio.to_thread(self.files.trim_local_copies, older_than)
            except OSError:
                log.exception("could not trim the local copies of old jobs")

    async def close(self) -> None:
        if self._trimmer is not None:
            self._trimmer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._trimmer
        await self.redis.aclose()
        await self.db.close()

    async def __aenter__(self) -> SeparationService:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # -- what the parts share -----------------------------------------------------------

    @property
    def settings(self):
        return self.context.settings

    @property
    def db(self) -> Database:
        return self.context.db

    @property
    def files(self) -> FileStore:
        return self.context.files

    @property
    def redis(self):
        return self.context.redis

    @property
    def clock(self) -> Clock:
        return self.context.clock

    @property
    def wording(self) -> Wording:
        return self.context.wording

    @property
    def delivery_owner(self) -> str:
        return self.context.delivery_owner

    # -- accounts and Pro (accounts.py) ----------------------------------------------------

    async def quota(self, who: UserIdentity) -> QuotaInfo:
        return await self.accounts.quota(who)

    async def pro_status(self, who: UserIdentity) -> ProReason | None:
        return await self.accounts.pro_status(who)

    async def grant_pro(
        self, admin: str, target: UserIdentity, days: float | None = None, guild_id: int | str | None = None
    ) -> ProGrant:
        return await self.accounts.grant_pro(admin, target, days, guild_id)

    async def revoke_pro(self, target: UserIdentity, guild_id: int | str | None = None) -> bool:
        return await self.accounts.revoke_pro(target, guild_id)

    async def link_code(self, who: UserIdentity) -> LinkCode:
        return await self.accounts.link_code(who)

    async def redeem_link_code(self, who: UserIdentity, code: str) -> str:
        return await self.accounts.redeem_link_code(who, code)

    async def guild_setting(self, guild_id: int, key: str) -> str | None:
        return await self.accounts.guild_setting(guild_id, key)

    async def set_guild_setting(self, guild_id: int, key: str, value: str | None) -> None:
        await self.accounts.set_guild_setting(guild_id, key, value)

    # -- submitting (submitting.py) ---------------------------------------------------------

    async def submit(
        self, who: UserIdentity, source: Source, delivery: object = None, mode: str | None = None
    ) -> JobHandle | Refusal:
        return await self.submitting.submit(who, source, delivery, mode)

    # -- modes (modes.py) -------------------------------------------------------------------

    async def mode_options(self, who: UserIdentity) -> list[ModeOption]:
        return await self.modes.options(who)

    async def default_mode(self, who: UserIdentity) -> str:
        return await self.modes.default_for(who)

    async def set_default_mode(self, who: UserIdentity, mode: str) -> str | Refusal:
        return await self.modes.set_default(who, mode)

    async def change_mode(self, who: UserIdentity, job_id: str, mode: str) -> ModeChange | Refusal:
        return await self.modes.change(who, job_id, mode)

    async def precheck(
        self, who: UserIdentity, size: int | None = None, duration: float | None = None
    ) -> Refusal | None:
        return await self.submitting.precheck(who, size, duration)

    async def allow_command(self, who: UserIdentity) -> Refusal | None:
        return await self.submitting.allow_command(who)

    # -- tracking results (tracking.py) -------------------------------------------------------

    def watch(self, job_id: str) -> AsyncIterator[progress_bus.JobEvent]:
        return self.tracking.watch(job_id)

    async def result(self, job_id: str) -> JobResult | None:
        return await self.tracking.result(job_id)

    async def job(self, job_id: str) -> Job | None:
        return await self.tracking.job(job_id)

    async def queue_status(self) -> dict[str, int]:
        return await self.tracking.queue_status()

    async def cancel(self, who: UserIdentity) -> Job | None:
        return await self.tracking.cancel(who)

    async def active_jobs(self) -> list[Job]:
        return await self.tracking.active_jobs()

    async def undelivered_jobs(self) -> list[Job]:
        return await self.tracking.undelivered_jobs()

    async def claim_delivery(self, job_id: str, lease: timedelta = DELIVERY_LEASE) -> bool:
        return await self.tracking.claim_delivery(job_id, lease)

    async def renew_delivery(self, job_id: str, lease: timedelta = DELIVERY_LEASE) -> bool:
        return await self.tracking.renew_delivery(job_id, lease)

    async def release_delivery(self, job_id: str) -> None:
        await self.tracking.release_delivery(job_id)

    async def delivered_pieces(self, job_id: str) -> dict[str, PieceOutcome]:
        return await self.tracking.delivered_pieces(job_id)

    async def record_piece(self, job_id: str, piece: str, outcome: PieceOutcome) -> None:
        await self.tracking.record_piece(job_id, piece, outcome)

    async def complete_delivery(self, job_id: str) -> bool:
        return await self.tracking.complete_delivery(job_id)
