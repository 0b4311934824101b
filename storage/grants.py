"""Pro status: admin grants (optionally until a date), the Discord Pro role, and linked accounts.

Pro is asked for a scope: the Discord server whose Pro counts for the request (None: none does). A grant holds
in one server or everywhere (guild_id None); only grants for everywhere or for the scope count. A user is Pro
when the caller says so (the Discord adapter: "holds the scope's Pro role right now"), or when the user or the
account linked to it has a grant that counts, or was recently seen holding the scope's Pro role. The role is
remembered (`record_pro_role`, with the server it belongs to) so that it carries over to where no role is
visible; a sighting older than `PRO_ROLE_FRESHNESS` no longer counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import Enum

from storage.clock import encode_time
from storage.database import Database
from storage.errors import NotFound
from storage.migrations import UNSCOPED_NOTE
from storage.models import ProGrant, User
from storage.sql import Connection
from storage.users import fetch_user, require_user

PRO_ROLE_FRESHNESS = timedelta(days=30)

GuildId = str | int | None  # a Discord server id; None: everywhere (grants) or no server (scopes)


class ProReason(str, Enum):
    """Why a user is Pro (the first that applies, in this order)."""

    CALLER = "caller"  # the front end said so (holds the role right now)
    GRANT = "grant"  # an active admin grant
    ROLE = "role"  # recently seen holding the Pro role
    LINKED_GRANT = "linked_grant"  # the linked account has an active grant
    LINKED_ROLE = "linked_role"  # the linked account was recently seen holding the Pro role


async def grant_pro(
    db: Database,
    user_id: int,
    granted_by: str,
    until: datetime | None = None,
    note: str = "",
    guild_id: GuildId = None,
) -> ProGrant:
    """Make the user Pro in one server (`guild_id`) or everywhere (None) until `until` (None: no expiry),
    replacing (revoking) the previous grant of the same scope; grants of other scopes stay."""
    now = db.clock.now()
    if until is not None and until <= now:
        raise ValueError(f"a grant until {until.isoformat()} would already be over")
    scope = _scope(guild_id)
    async with db.write() as conn:
        await require_user(conn, user_id)
        await _revoke_in(conn, user_id, scope, now)
        async with conn.execute(
            """
            INSERT INTO pro_grants (user_id, granted_by, granted_at, until, note, guild_id)
            VALUES (?, ?, ?, ?, ?, ?) RETURNING *
            """,
            (user_id, granted_by, encode_time(now), None if until is None else encode_time(until), note, scope),
        ) as cursor:
            row = await cursor.fetchone()
    assert row is not None
    return ProGrant.from_row(row)


async def revoke_pro(db: Database, user_id: int, guild_id: GuildId = None) -> bool:
    """End the user's grant of this scope (one server, or everywhere) now. True if one was in force (a lapsed
    one is left as it is). Grants of other scopes stay: a server's admins can't end the operators' grants."""
    async with db.write() as conn:
        return await _revoke_in(conn, user_id, _scope(guild_id), db.clock.now())


async def retire_unscoped_grants(db: Database, operators: Iterable[str]) -> int:
    """Revoke the grants from before Pro had scopes (global, made by any server's admin: strangers included)
    unless an operator made them (`operators`: granted_by values such as "discord:123"). Returns how many."""
    keep = sorted(set(operators))
    now = encode_time(db.clock.now())
    async with db.write() as conn:
        spared = f" AND granted_by NOT IN ({', '.join('?' * len(keep))})" if keep else ""  # `IN ()` is SQLite's only
        cursor = await conn.execute(
            "UPDATE pro_grants SET revoked_at = ? WHERE revoked_at IS NULL AND note = ? AND guild_id IS NULL" + spared,
            (now, UNSCOPED_NOTE, *keep),
        )
        return cursor.rowcount


async def active_grant(db: Database, user_id: int, guild_id: GuildId = None) -> ProGrant | None:
    """The user's grant that counts now in the scope `guild_id` (a grant for everywhere, or for that server)."""
    async with db.read() as conn:
        return await _active_grant_in(conn, user_id, _scope(guild_id), db.clock.now())


async def list_grants(db: Database, user_id: int) -> list[ProGrant]:
    """Every grant the user ever had, in any scope, newest first (revoked and lapsed ones included)."""
    async with db.read() as conn, conn.execute(
        "SELECT * FROM pro_grants WHERE user_id = ? ORDER BY granted_at DESC, id DESC", (user_id,)
    ) as cursor:
        rows = await cursor.fetchall()
    return [ProGrant.from_row(row) for row in rows]


async def list_active_grants(db: Database) -> list[ProGrant]:
    """All grants in force now, in every scope, oldest first (for operators)."""
    now = encode_time(db.clock.now())
    async with db.read() as conn, conn.execute(
        "SELECT * FROM pro_grants WHERE revoked_at IS NULL AND (until IS NULL OR until > ?) ORDER BY granted_at",
        (now,),
    ) as cursor:
        rows = await cursor.fetchall()
    return [ProGrant.from_row(row) for row in rows]


async def record_pro_role(db: Database, user_id: int, holds_role: bool, guild_id: str | int) -> None:
    """Remember whether the user holds server `guild_id`'s Pro role, as seen now (replacing any earlier
    sighting, of whichever server: one is kept)."""
    async with db.write() as conn:
        cursor = await conn.execute(
            "UPDATE users SET pro_role_held = ?, pro_role_seen_at = ?, pro_role_guild_id = ? WHERE id = ?",
            (int(holds_role), encode_time(db.clock.now()), str(guild_id), user_id),
        )
        if cursor.rowcount != 1:
            raise NotFound(f"no user with id {user_id}")


async def is_pro(
    db: Database,
    user_id: int,
    caller_says_pro: bool = False,
    role_freshness: timedelta = PRO_ROLE_FRESHNESS,
    *,
    guild_id: GuildId = None,
) -> bool:
    """Whether the user gets the Pro limit now in the scope `guild_id` (see the module docstring)."""
    return await pro_reason(db, user_id, caller_says_pro, role_freshness, guild_id=guild_id) is not None


async def pro_reason(
    db: Database,
    user_id: int,
    caller_says_pro: bool = False,
    role_freshness: timedelta = PRO_ROLE_FRESHNESS,
    *,
    guild_id: GuildId = None,
) -> ProReason | None:
    """Why the user is Pro now in the scope `guild_id`, or None if not."""
    if caller_says_pro:
        return ProReason.CALLER
    now = db.clock.now()
    scope = _scope(guild_id)
    async with db.read() as conn:
        user = await require_user(conn, user_id)
        if await _active_grant_in(conn, user.id, scope, now):
            return ProReason.GRANT
        if _role_counts(user, scope, now, role_freshness):
            return ProReason.ROLE
        linked = None if user.linked_user_id is None else await fetch_user(conn, user.linked_user_id)
        if linked is not None:
            if await _active_grant_in(conn, linked.id, scope, now):
                return ProReason.LINKED_GRANT
            if _role_counts(linked, scope, now, role_freshness):
                return ProReason.LINKED_ROLE
    return None


def _scope(guild_id: GuildId) -> str | None:
    return None if guild_id is None else str(guild_id)


def _role_counts(user: User, scope: str | None, now: datetime, freshness: timedelta) -> bool:
    seen_at = user.pro_role_seen_at
    return (
        scope is not None
        and user.pro_role_guild_id == scope
        and user.pro_role_held
        and seen_at is not None
        and now - seen_at <= freshness
    )


async def _active_grant_in(conn: Connection, user_id: int, scope: str | None, now: datetime) -> ProGrant | None:
    # `guild_id = NULL` is never true, so with no scope only grants for everywhere count.
    async with conn.execute(
        """
        SELECT * FROM pro_grants
        WHERE user_id = ? AND (guild_id IS NULL OR guild_id = ?) AND revoked_at IS NULL AND (until IS NULL OR until > ?)
        ORDER BY granted_at DESC, id DESC LIMIT 1
        """,
        (user_id, scope, encode_time(now)),
    ) as cursor:
        row = await cursor.fetchone()
    return None if row is None else ProGrant.from_row(row)


async def _revoke_in(conn: Connection, user_id: int, scope: str | None, now: datetime) -> bool:
    # Only grants still in force: revoked_at means "cut short", so a grant that simply ran out keeps its history.
    stamp = encode_time(now)
    cursor = await conn.execute(
        """
        UPDATE pro_grants SET revoked_at = ?
        WHERE user_id = ? AND guild_id IS NOT DISTINCT FROM ? AND revoked_at IS NULL AND (until IS NULL OR until > ?)
        """,
        (stamp, user_id, scope, stamp),
    )
    return cursor.rowcount > 0
