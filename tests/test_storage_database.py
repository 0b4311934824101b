"""Database: migrations, WAL, transactions, timestamps."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from storage import Database, FakeClock, SchemaTooNew, get_or_create_user
from storage.clock import UTC, decode_time, encode_time
from storage.migrations import SCHEMA_VERSION


async def test_open_creates_parent_dirs_and_migrates(tmp_path):
    path = tmp_path / "deep" / "er" / "stembot.sqlite3"
    async with await Database.open(path) as db:
        assert path.exists()
        assert await db.schema_version() == SCHEMA_VERSION >= 1
        assert (await db.journal_mode()).lower() == "wal"


async def test_migrations_are_idempotent(tmp_path):
    path = tmp_path / "db.sqlite3"
    async with await Database.open(path) as db:
        user = await get_or_create_user(db, "telegram", 42, "Ann")
    async with await Database.open(path) as db:  # second open: nothing to migrate, data intact
        assert await db.schema_version() == SCHEMA_VERSION
        again = await get_or_create_user(db, "telegram", 42)
        assert again.id == user.id and again.display_name == "Ann"


async def test_in_data_dir_uses_the_shared_file_name(tmp_path):
    async with await Database.in_data_dir(tmp_path / "data") as db:
        assert db.path == tmp_path / "data" / "stembot.sqlite3"


async def test_refuses_a_database_from_a_newer_version(tmp_path):
    path = tmp_path / "db.sqlite3"
    async with await Database.open(path):
        pass
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNew):
        await Database.open(path)


async def test_write_rolls_back_on_error_and_connection_stays_usable(tmp_path):
    async with await Database.open(tmp_path / "db.sqlite3") as db:
        with pytest.raises(RuntimeError):
            async with db.write() as conn:
                await conn.execute(
                    "INSERT INTO guild_settings (guild_id, key, value, updated_at) VALUES ('g', 'k', 'v', 'x')"
                )
                raise RuntimeError("boom")
        async with db.read() as conn, conn.execute("SELECT COUNT(*) FROM guild_settings") as cursor:
            assert (await cursor.fetchone())[0] == 0
        await get_or_create_user(db, "discord", 1)  # no transaction was left open


def test_timestamps_round_trip_and_sort_as_text():
    early = datetime(2025, 3, 1, 9, 5, 7, 123456, tzinfo=UTC)
    late = early.astimezone(timezone(timedelta(hours=5))) + timedelta(microseconds=1)  # other zone, same format
    assert decode_time(encode_time(early)) == early
    assert encode_time(early) < encode_time(late)
    with pytest.raises(ValueError):
        encode_time(datetime(2025, 1, 1))  # naive


def test_fake_clock_moves_only_when_told():
    clock = FakeClock()
    start = clock.now()
    assert clock.now() == start and start.tzinfo is not None
    assert clock.advance(timedelta(hours=1)) == start + timedelta(hours=1)
    assert clock.advance(30) == start + timedelta(hours=1, seconds=30)


async def test_many_connections_opening_a_fresh_file_at_once(tmp_path):
    # Every process migrates on start; when they all start together exactly one applies the migrations.
    path = tmp_path / "db.sqlite3"
    dbs = await asyncio.gather(*(Database.open(path) for _ in range(10)))
    try:
        for db in dbs:
            assert await db.schema_version() == SCHEMA_VERSION
            assert (await db.journal_mode()).lower() == "wal"
    finally:
        for db in dbs:
            await db.close()
