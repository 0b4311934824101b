"""Pro: admin grants with expiry, the Discord role, linked accounts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage import (
    PRO_ROLE_FRESHNESS,
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
    revoke_pro,
)


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
        await record_pro_role(db, 9999, True)


async def test_recent_role_counts_for_the_user_and_fades(db, clock):
    user = await get_or_create_user(db, "discord", 1)
    await record_pro_role(db, user.id, True)
    seen = await get_user(db, user.id)
    assert seen.pro_role_held and seen.pro_role_seen_at == clock.now()
    assert await pro_reason(db, user.id) is ProReason.ROLE  # e.g. in DMs, where no role is visible
    clock.advance(PRO_ROLE_FRESHNESS + timedelta(seconds=1))
    assert not await is_pro(db, user.id)
    await record_pro_role(db, user.id, True)
    assert await is_pro(db, user.id)
    await record_pro_role(db, user.id, False)  # role removed
    assert not await is_pro(db, user.id)


async def test_linked_telegram_account_is_pro_through_the_discord_role(db, clock):
    discord, telegram = await _linked_pair(db)
    assert not await is_pro(db, telegram.id)
    await record_pro_role(db, discord.id, True)
    assert await pro_reason(db, telegram.id) is ProReason.LINKED_ROLE
    clock.advance(PRO_ROLE_FRESHNESS - timedelta(seconds=1))
    assert await is_pro(db, telegram.id)
    clock.advance(timedelta(seconds=2))  # last seen with the role more than 30 days ago
    assert not await is_pro(db, telegram.id)


async def test_linked_account_is_pro_through_a_grant_either_way(db, clock):
    discord, telegram = await _linked_pair(db)
    await grant_pro(db, telegram.id, "admin", until=clock.now() + timedelta(days=1))
    assert await pro_reason(db, discord.id) is ProReason.LINKED_GRANT
    clock.advance(timedelta(days=1))
    assert not await is_pro(db, discord.id)


async def test_unlinked_accounts_share_nothing(db):
    discord = await get_or_create_user(db, "discord", 10)
    telegram = await get_or_create_user(db, "telegram", 20)
    await record_pro_role(db, discord.id, True)
    await grant_pro(db, discord.id, "admin")
    assert not await is_pro(db, telegram.id)
