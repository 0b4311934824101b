"""Separation modes for users: which they may pick (by tier), what each costs, their default, and changing the
mode of a song still waiting in the queue (the worker reads the job's spec only when it starts it)."""

from __future__ import annotations

from bot.requests import ModeChange, ModeOption, QuotaInfo, Refusal, RefusalCode, UserIdentity
from bot.wording import Wording, mode_title
from separation_worker.contract.job_spec import JobSpec
from separation_worker.contract.modes import DEFAULT_MODE, MODE_NAMES, MODE_SUMMARIES
from storage import User, change_queued_spec, get_job, set_default_mode

from .accounts import Accounts
from .context import ServiceContext

MODE_OPTION = "mode"  # the JobSpec option the worker reads


class ModeChoices:
    def __init__(self, ctx: ServiceContext, accounts: Accounts):
        self.ctx = ctx
        self.accounts = accounts

    async def options(self, who: UserIdentity) -> list[ModeOption]:
        """Every mode, marked with whether this user may pick it (tier) and what it costs."""
        user = await self.accounts.user(who)
        pro, _ = await self.accounts.limit(user.id, who)
        allowed = self.ctx.settings.modes_for(pro)
        return [
            ModeOption(name, mode_title(name), MODE_SUMMARIES[name], self.ctx.settings.mode_cost(name), name in allowed)
            for name in MODE_NAMES
            if name in self.ctx.settings.pro_modes or name in allowed
        ]

    async def default_for(self, who: UserIdentity) -> str:
        user = await self.accounts.user(who)
        pro, _ = await self.accounts.limit(user.id, who)
        return self.default_of(user, pro)

    def default_of(self, user: User, pro: bool) -> str:
        """The user's chosen default while their tier still allows it (a lapsed Pro falls back), else vocals."""
        chosen = user.default_mode
        return chosen if chosen is not None and chosen in self.ctx.settings.modes_for(pro) else DEFAULT_MODE

    def check(self, mode: str, pro: bool) -> Refusal | None:
        """Refuse a mode that doesn't exist or that the tier may not pick."""
        wording: Wording = self.ctx.wording
        if mode not in MODE_NAMES:
            return Refusal(RefusalCode.UNKNOWN_MODE, wording.unknown_mode(mode))
        if mode not in self.ctx.settings.modes_for(pro):
            return Refusal(RefusalCode.PRO_MODE, wording.pro_mode(mode))
        return None

    async def set_default(self, who: UserIdentity, mode: str) -> str | Refusal:
        """Remember `mode` for the user's next songs; the sentence confirming it, or a refusal."""
        mode = mode.strip().lower()
        user = await self.accounts.user(who)
        pro, _ = await self.accounts.limit(user.id, who)
        refusal = self.check(mode, pro)
        if refusal:
            return refusal
        await set_default_mode(self.ctx.db, user.id, None if mode == DEFAULT_MODE else mode)
        return self.ctx.wording.mode_set(mode)

    async def change(self, who: UserIdentity, job_id: str, mode: str) -> ModeChange | Refusal:
        """Switch a waiting song of the user's to `mode`, charging the difference in one transaction."""
        ctx = self.ctx
        user = await self.accounts.user(who)
        pro, limit = await self.accounts.limit(user.id, who)
        refusal = self.check(mode, pro)
        if refusal:
            return refusal
        job = await get_job(ctx.db, job_id)
        if job is None or job.user_id != user.id or job.spec_json is None:
            return Refusal(RefusalCode.TOO_LATE, ctx.wording.NOT_YOUR_SONG)
        try:
            spec = JobSpec.from_json(job.spec_json)
        except (ValueError, KeyError, TypeError):  # written by another version: leave it as it is
            return Refusal(RefusalCode.TOO_LATE, ctx.wording.TOO_LATE_FOR_MODE)
        updated = spec.with_options(**{MODE_OPTION: mode})
        songs = ctx.settings.mode_cost(mode)
        outcome = await change_queued_spec(ctx.db, job_id, user.id, updated.to_json(), limit, songs)
        if outcome.job is None:
            return Refusal(RefusalCode.TOO_LATE, ctx.wording.NOT_YOUR_SONG)
        if outcome.too_late:
            return Refusal(RefusalCode.TOO_LATE, ctx.wording.TOO_LATE_FOR_MODE)
        decision = outcome.decision
        assert decision is not None
        if not outcome.changed:
            return Refusal(RefusalCode.QUOTA, ctx.wording.mode_quota(mode, decision.remaining, decision.next_free_at,
                                                                     ctx.clock.now()))
        quota = QuotaInfo(pro, decision.used, limit, decision.remaining, decision.next_free_at)
        return ModeChange(job_id, mode, songs, quota)
