"""Pro: admin grants with expiry and a scope (one server, or everywhere), the Discord role, linked accounts."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from storage import (
    PRO_ROLE_FRESHNESS,
    Database,
    NotFound,
    ProReason,
    active_grant,
    create_link_code,
    get_or_create_user,
    get_user,
    grant_pro,
    is_pro,
    list_active_grants,
    list_grants,
    pro_reason,
    record_pro_role,
    redeem_link_code,
    retire_unscoped_grants,
    revoke_pro,
)
from storage.migrations import MIGRATIONS

HOME, DEN = "111", "222"  # the operator's server, and a stranger's


async def _linked_pair(db):
    discord = await get_or_create_user(db, "discord", 10, "Ann#1")
    telegram = await get_or_create_user(db, "telegram", 20, "Ann")
    code = await create_link_code(db, discord.id)
    await redeem_link_code(db, code.code, telegram.id)
    return discord, telegram


async def test_caller_says_pro(db):
    user = await get_or_create_user(db, "discord", 1)
    assert not await is_pro(db, user.id)
    assert await is_pro(db, user.id, caller_says_pro=True)
    assert await pro_reason(db, user.id, caller_says_pro=True) is ProReason.CALLER


async def test_grant_without_expiry_until_revoked(db, clock):
    user = await get_or_create_user(db, "telegram", 1)
    grant = await grant_pro(db, user.id, granted_by="admin:alice", note="supporter")
    assert (grant.granted_by, grant.granted_at, grant.until) == ("admin:alice", clock.now(), None)
    assert grant.note == "supporter"
    assert await active_grant(db, user.id) == grant
    assert await pro_reason(db, user.id) is ProReason.GRANT
    clock.advance(timedelta(days=3650))
    assert await is_pro(db, user.id)
    assert await revoke_pro(db, user.id) is True
    assert await revoke_pro(db, user.id) is False
    assert not await is_pro(db, user.id)
    assert await active_grant(db, user.id) is None
    [history] = await list_grants(db, user.id)
    assert history.revoked_at == clock.now()


async def test_expired_grant_stops_counting(db, clock):
    user = await get_or_create_user(db, "telegram", 1)
    until = clock.now() + timedelta(days=30)
    await grant_pro(db, user.id, "admin", until=until)
    clock.set(until - timedelta(seconds=1))
    assert await is_pro(db, user.id)
    assert [g.user_id for g in await list_active_grants(db)] == [user.id]
    clock.set(until)
    assert not await is_pro(db, user.id)
    assert await active_grant(db, user.id) is None
    assert await list_active_grants(db) == []
    assert await revoke_pro(db, user.id) is False  # nothing in force to revoke
    [lapsed] = await list_grants(db, user.id)
    assert lapsed.revoked_at is None and not lapsed.active_at(clock.now())


async def test_regrant_replaces_the_previous_grant(db, clock):
    user = await get_or_create_user(db, "telegram", 1)
    await grant_pro(db, user.id, "admin", until=clock.now() + timedelta(days=1))
    clock.advance(60)
    second = await grant_pro(db, user.id, "admin2", until=clock.now() + timedelta(days=60))
    assert await active_grant(db, user.id) == second
    newest, oldest = await list_grants(db, user.id)
    assert newest == second and oldest.revoked_at == clock.now()
    clock.advance(timedelta(days=2))
    assert await is_pro(db, user.id)


async def test_grant_validation(db, clock):
    user = await get_or_create_user(db, "telegram", 1)
    with pytest.raises(ValueError):
        await grant_pro(db, user.id, "admin", until=clock.now() - timedelta(seconds=1))
    with pytest.raises(NotFound):
        await grant_pro(db, 9999, "admin")
    with pytest.raises(NotFound):
        await record_pro_role(db, 9999, True, HOME)


async def test_a_server_grant_holds_in_that_server_only(db):
    user = await get_or_create_user(db, "discord", 1)
    grant = await grant_pro(db, user.id, "discord:admin", guild_id=DEN)
    assert grant.guild_id == DEN
    assert await pro_reason(db, user.id, guild_id=DEN) is ProReason.GRANT
    assert await active_grant(db, user.id, guild_id=int(DEN)) == grant  # ids as int or str
    assert not await is_pro(db, user.id, guild_id=HOME)
    assert not await is_pro(db, user.id)  # no server: only grants for everywhere count
    assert await revoke_pro(db, user.id, guild_id=HOME) is False  # another server's admins can't end it
    assert await revoke_pro(db, user.id) is False  # nor can a revoke for everywhere
    assert await is_pro(db, user.id, guild_id=DEN)
    assert await revoke_pro(db, user.id, guild_id=DEN) is True
    assert not await is_pro(db, user.id, guild_id=DEN)


async def test_a_grant_for_everywhere_survives_server_revokes(db):
    user = await get_or_create_user(db, "discord", 1)
    everywhere = await grant_pro(db, user.id, "discord:operator")
    here = await grant_pro(db, user.id, "discord:admin", guild_id=DEN)  # replaces nothing: another scope
    assert everywhere.guild_id is None
    assert all([await is_pro(db, user.id, guild_id=g) for g in (None, HOME, DEN)])
    assert await active_grant(db, user.id, guild_id=DEN) == here  # the newest that counts
    assert await revoke_pro(db, user.id, guild_id=DEN) is True
    assert await active_grant(db, user.id, guild_id=DEN) == everywhere
    assert {g.id for g in await list_active_grants(db)} == {everywhere.id}
    regranted = await grant_pro(db, user.id, "discord:operator", note="again")
    assert {g.id for g in await list_active_grants(db)} == {regranted.id}  # replaced the old one for everywhere


async def test_recent_role_counts_in_its_server_and_fades(db, clock):
    user = await get_or_create_user(db, "discord", 1)
    await record_pro_role(db, user.id, True, int(HOME))
    seen = await get_user(db, user.id)
    assert seen.pro_role_held and seen.pro_role_seen_at == clock.now() and seen.pro_role_guild_id == HOME
    assert await pro_reason(db, user.id, guild_id=HOME) is ProReason.ROLE  # e.g. in DMs, through the home server
    assert not await is_pro(db, user.id, guild_id=DEN)  # another server's Pro role is its own
    assert not await is_pro(db, user.id)
    clock.advance(PRO_ROLE_FRESHNESS + timedelta(seconds=1))
    assert not await is_pro(db, user.id, guild_id=HOME)
    await record_pro_role(db, user.id, True, HOME)
    assert await is_pro(db, user.id, guild_id=HOME)
    await record_pro_role(db, user.id, False, HOME)  # role removed
    assert not await is_pro(db, user.id, guild_id=HOME)


async def test_linked_telegram_account_is_pro_through_the_discord_role(db, clock):
    discord, telegram = await _linked_pair(db)
    assert not await is_pro(db, telegram.id, guild_id=HOME)
    await record_pro_role(db, discord.id, True, HOME)
    assert await pro_reason(db, telegram.id, guild_id=HOME) is ProReason.LINKED_ROLE
    assert not await is_pro(db, telegram.id, guild_id=DEN)
    clock.advance(PRO_ROLE_FRESHNESS - timedelta(seconds=1))
    assert await is_pro(db, telegram.id, guild_id=HOME)
    clock.advance(timedelta(seconds=2))  # last seen with the role more than 30 days ago
    assert not await is_pro(db, telegram.id, guild_id=HOME)


async def test_linked_account_is_pro_through_a_grant_either_way(db, clock):
    discord, telegram = await _linked_pair(db)
    await grant_pro(db, telegram.id, "admin", until=clock.now() + timedelta(days=1))
    assert await pro_reason(db, discord.id) is ProReason.LINKED_GRANT
    clock.advance(timedelta(days=1))
    assert not await is_pro(db, discord.id)


async def test_unlinked_accounts_share_nothing(db):
    discord = await get_or_create_user(db, "discord", 10)
    telegram = await get_or_create_user(db, "telegram", 20)
    await record_pro_role(db, discord.id, True, HOME)
    await grant_pro(db, discord.id, "admin")
    assert not await is_pro(db, telegram.id, guild_id=HOME)


async def test_migration_keeps_old_grants_global_and_forgets_old_role_sightings(tmp_path):
    # A database from before grants had a scope: its grants never said which server made them.
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        now = "2025-01-01T00:00:00.000000Z"
        conn.execute(
            "INSERT INTO users (id, platform, platform_user_id, pro_role_held, pro_role_seen_at, created_at, "
            "last_seen_at) VALUES (1, 'discord', '10', 1, ?, ?, ?), (2, 'discord', '20', 1, ?, ?, ?),"
            " (3, 'discord', '30', 0, NULL, ?, ?), (4, 'telegram', '40', 0, NULL, ?, ?)",
            (now,) * 10,
        )
        conn.execute("INSERT INTO pro_grants (user_id, granted_by, granted_at) VALUES (1, 'discord:9', ?)", (now,))
        conn.execute("INSERT INTO pro_grants (user_id, granted_by, granted_at) VALUES (3, 'discord:66', ?)", (now,))
        conn.execute("INSERT INTO pro_grants (user_id, granted_by, granted_at) VALUES (4, 'telegram:5', ?)", (now,))
    async with await Database.open(path) as db:
        assert len(await list_active_grants(db)) == 3
        # Any server's admin could have made the Discord ones: all but the operators' are retired.
        assert await retire_unscoped_grants(db, ["discord:9"]) == 1
        assert await retire_unscoped_grants(db, ["discord:9"]) == 0  # once
        grants = await list_active_grants(db)
        assert sorted(g.granted_by for g in grants) == ["discord:9", "telegram:5"]
        assert all(g.guild_id is None for g in grants)  # still hold everywhere
        assert await pro_reason(db, 1, guild_id=DEN) is ProReason.GRANT
        # The sighting's server is unknown (it may have been a stranger's), so it no longer counts anywhere.
        assert not (await get_user(db, 2)).pro_role_held
        assert not await is_pro(db, 2, guild_id=HOME)
