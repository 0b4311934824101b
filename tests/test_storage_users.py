"""Users and guild settings."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storage import (
    find_user,
    get_guild_setting,
    get_or_create_user,
    get_user,
    guild_settings,
    set_guild_setting,
)


async def test_get_or_create_user_is_keyed_by_platform_and_id(db, clock):
    ann = await get_or_create_user(db, "telegram", 1001, "Ann")
    assert (ann.platform, ann.platform_user_id, ann.display_name) == ("telegram", "1001", "Ann")
    assert ann.linked_user_id is None and not ann.pro_role_held and ann.pro_role_seen_at is None
    assert ann.created_at == ann.last_seen_at == clock.now()

    clock.advance(timedelta(hours=1))
    again = await get_or_create_user(db, "telegram", "1001")  # no name given: the old one is kept
    assert again.id == ann.id and again.display_name == "Ann"
    assert again.created_at == ann.created_at and again.last_seen_at == clock.now()

    renamed = await get_or_create_user(db, "telegram", 1001, "Annie")
    assert renamed.id == ann.id and renamed.display_name == "Annie"

    other = await get_or_create_user(db, "discord", 1001, "Ann on Discord")
    assert other.id != ann.id


async def test_lookups(db):
    ann = await get_or_create_user(db, "discord", "77", "Ann")
    assert await get_user(db, ann.id) == ann
    assert await find_user(db, "discord", 77) == ann
    assert await find_user(db, "telegram", 77) is None
    assert await get_user(db, 9999) is None


async def test_unknown_platform_is_refused(db):
    with pytest.raises(ValueError):
        await get_or_create_user(db, "irc", 1)


async def test_guild_settings(db):
    assert await get_guild_setting(db, 123, "pro_role_id") is None
    assert await get_guild_setting(db, 123, "pro_role_id", default="none") == "none"
    await set_guild_setting(db, 123, "pro_role_id", "555")
    await set_guild_setting(db, "123", "channel", "9")
    await set_guild_setting(db, 456, "pro_role_id", "777")
    assert await get_guild_setting(db, "123", "pro_role_id") == "555"
    await set_guild_setting(db, 123, "pro_role_id", "556")  # overwrite
    assert await guild_settings(db, 123) == {"channel": "9", "pro_role_id": "556"}
    await set_guild_setting(db, 123, "channel", None)  # delete
    assert await guild_settings(db, 123) == {"pro_role_id": "556"}
    assert await guild_settings(db, 456) == {"pro_role_id": "777"}
