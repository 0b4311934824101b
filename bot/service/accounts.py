"""Accounts and Pro: users, their quota, Pro status, grants and revokes, account links and server settings."""

from __future__ import annotations

from datetime import timedelta

from bot.requests import QuotaInfo, UserIdentity
from storage import (
    LinkCode,
    LinkCodeError,
    ProGrant,
    ProReason,
    User,
    create_link_code,
    get_guild_setting,
    get_or_create_user,
    grant_pro,
    is_pro,
    pro_reason,
    quota_status,
    record_pro_role,
    redeem_link_code,
    revoke_pro,
    set_guild_setting,
)

from .context import ServiceContext


class Accounts:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    # -- users and quota --------------------------------------------------------------

    async def user(self, who: UserIdentity) -> User:
        """The user's record (created on first sight), remembering their home server's Pro role."""
        user = await get_or_create_user(self.ctx.db, who.platform, who.user_id, who.display_name or None)
        scope = self.pro_scope(who)
        # Only the home server's role is remembered (for DMs and linked accounts); other servers' roles are
        # checked live where they count, and must not overwrite it.
        if who.holds_pro_role is not None and scope is not None and scope == self.home_guild():
            await record_pro_role(self.ctx.db, user.id, who.holds_pro_role, scope)
        return user

    def home_guild(self) -> str | None:
        home = self.ctx.settings.discord_home_guild_id
        return None if home is None else str(home)

    def pro_scope(self, who: UserIdentity) -> str | None:
        """The Discord server whose Pro counts for this request: the one it was made in. Anywhere else (DMs,
        Telegram) it is the home server (DISCORD_HOME_GUILD_ID), so that a stranger's server never reaches there."""
        return who.guild_id if who.guild_id is not None else self.home_guild()

    async def limit(self, user_id: int, who: UserIdentity) -> tuple[bool, int]:
        """Whether the user is Pro here, and their songs per day."""
        settings = self.ctx.settings
        pro = await is_pro(self.ctx.db, user_id, caller_says_pro=bool(who.holds_pro_role), guild_id=self.pro_scope(who))
        return pro, settings.pro_songs_per_day if pro else settings.free_songs_per_day

    async def quota(self, who: UserIdentity) -> QuotaInfo:
        user = await self.user(who)
        pro, limit = await self.limit(user.id, who)
        decision = await quota_status(self.ctx.db, user.id, limit)
        return QuotaInfo(pro, decision.used, limit, decision.remaining, decision.next_free_at)

    async def pro_status(self, who: UserIdentity) -> ProReason | None:
        """Why the user is Pro (role, grant, linked account), or None."""
        user = await self.user(who)
        return await pro_reason(
            self.ctx.db, user.id, caller_says_pro=bool(who.holds_pro_role), guild_id=self.pro_scope(who)
        )

    # -- admin and account links -------------------------------------------------------------

    async def grant_pro(
        self, admin: str, target: UserIdentity, days: float | None = None, guild_id: int | str | None = None
    ) -> ProGrant:
        """Record a Pro grant (until `days` from now, or open-ended) that holds in server `guild_id`, or
        everywhere when None: that is for operators only, which the front end checks."""
        user = await self.user(target)
        until = self.ctx.clock.now() + timedelta(days=days) if days else None
        return await grant_pro(self.ctx.db, user.id, admin, until=until, guild_id=guild_id)

    async def revoke_pro(self, target: UserIdentity, guild_id: int | str | None = None) -> bool:
        """End the target's grant in server `guild_id`, or their grant for everywhere when None (operators)."""
        user = await self.user(target)
        return await revoke_pro(self.ctx.db, user.id, guild_id=guild_id)

    async def link_code(self, who: UserIdentity) -> LinkCode:
        """A one-time code the user enters on the other platform to link the two accounts."""
        user = await self.user(who)
        return await create_link_code(self.ctx.db, user.id)

    async def redeem_link_code(self, who: UserIdentity, code: str) -> str:
        """Link this account with the code's owner; returns a user-facing message either way."""
        user = await self.user(who)
        try:
            other = await redeem_link_code(self.ctx.db, code.strip().upper(), user.id)
        except LinkCodeError as exc:
            return exc.message
        return f"Linked with your {other.platform.capitalize()} account {other.display_name or other.platform_user_id}. Pro on either counts on both."

    async def guild_setting(self, guild_id: int, key: str) -> str | None:
        return await get_guild_setting(self.ctx.db, guild_id, key)

    async def set_guild_setting(self, guild_id: int, key: str, value: str | None) -> None:
        await set_guild_setting(self.ctx.db, guild_id, key, value)
