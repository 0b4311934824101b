"""Account-link codes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage import (
    LinkCodeError,
    LinkFailure,
    NotFound,
    create_link_code,
    get_or_create_user,
    get_user,
    linked_account,
    redeem_link_code,
    unlink,
)
from storage.links import CODE_ALPHABET, CODE_LENGTH, DEFAULT_CODE_TTL


@pytest.fixture
async def accounts(db):
    discord = await get_or_create_user(db, "discord", 10, "Ann#1")
    telegram = await get_or_create_user(db, "telegram", 20, "Ann")
    return discord, telegram


async def _redeem_fails(db, code: str, user_id: int) -> LinkFailure:
    with pytest.raises(LinkCodeError) as caught:
        await redeem_link_code(db, code, user_id)
    assert caught.value.message  # something to show the user
    return caught.value.reason


async def test_codes_are_short_unambiguous_and_random(db, accounts, clock):
    discord, _ = accounts
    codes = set()
    for _ in range(50):
        link = await create_link_code(db, discord.id)
        assert len(link.code) == CODE_LENGTH and set(link.code) <= set(CODE_ALPHABET)
        assert link.expires_at == clock.now() + DEFAULT_CODE_TTL
        codes.add(link.code)
    assert len(codes) == 50
    assert not set("01IOL") & set(CODE_ALPHABET)


async def test_redeem_links_both_accounts(db, accounts):
    discord, telegram = accounts
    code = await create_link_code(db, discord.id)
    other = await redeem_link_code(db, code.code.lower()[:4] + "-" + code.code.lower()[4:], telegram.id)  # as typed
    assert other.id == discord.id and other.linked_user_id == telegram.id
    assert (await get_user(db, telegram.id)).linked_user_id == discord.id
    assert (await linked_account(db, telegram.id)).id == discord.id
    assert (await linked_account(db, discord.id)).id == telegram.id


async def test_codes_are_single_use(db, accounts):
    discord, telegram = accounts
    code = await create_link_code(db, discord.id)
    await redeem_link_code(db, code.code, telegram.id)
    other_telegram = await get_or_create_user(db, "telegram", 21)
    assert await _redeem_fails(db, code.code, other_telegram.id) is LinkFailure.USED
    assert (await linked_account(db, discord.id)).id == telegram.id


async def test_codes_expire(db, accounts, clock):
    discord, telegram = accounts
    code = await create_link_code(db, discord.id, ttl=timedelta(minutes=5))
    clock.advance(timedelta(minutes=5))
    assert await _redeem_fails(db, code.code, telegram.id) is LinkFailure.EXPIRED
    assert await linked_account(db, telegram.id) is None


async def test_same_platform_is_refused_and_the_code_survives(db, accounts):
    discord, telegram = accounts
    other_discord = await get_or_create_user(db, "discord", 11)
    code = await create_link_code(db, discord.id)
    assert await _redeem_fails(db, code.code, other_discord.id) is LinkFailure.SAME_PLATFORM
    assert await _redeem_fails(db, code.code, discord.id) is LinkFailure.SAME_PLATFORM  # one's own code
    await redeem_link_code(db, code.code, telegram.id)


async def test_unknown_code(db, accounts):
    _, telegram = accounts
    assert await _redeem_fails(db, "ABCDEFGH", telegram.id) is LinkFailure.NOT_FOUND


async def test_a_new_code_replaces_the_unused_old_one(db, accounts):
    discord, telegram = accounts
    old = await create_link_code(db, discord.id)
    new = await create_link_code(db, discord.id)
    assert await _redeem_fails(db, old.code, telegram.id) is LinkFailure.NOT_FOUND
    await redeem_link_code(db, new.code, telegram.id)


async def test_relinking_replaces_the_old_pair(db, accounts):
    discord, telegram = accounts
    await redeem_link_code(db, (await create_link_code(db, discord.id)).code, telegram.id)
    new_telegram = await get_or_create_user(db, "telegram", 22)
    await redeem_link_code(db, (await create_link_code(db, new_telegram.id)).code, discord.id)
    assert (await linked_account(db, discord.id)).id == new_telegram.id
    assert await linked_account(db, telegram.id) is None  # the old partner is no longer linked


async def test_unlink(db, accounts):
    discord, telegram = accounts
    assert await unlink(db, discord.id) is False
    await redeem_link_code(db, (await create_link_code(db, discord.id)).code, telegram.id)
    assert await unlink(db, telegram.id) is True
    assert await linked_account(db, discord.id) is None and await linked_account(db, telegram.id) is None


async def test_unknown_users(db, accounts):
    discord, _ = accounts
    with pytest.raises(NotFound):
        await create_link_code(db, 9999)
    code = await create_link_code(db, discord.id)
    with pytest.raises(NotFound):
        await redeem_link_code(db, code.code, 9999)
