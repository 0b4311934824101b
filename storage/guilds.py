"""Per-guild settings (Discord): a small key → value store, e.g. "pro_role_id"."""

from __future__ import annotations

from storage.clock import encode_time
from storage.database import Database

PRO_ROLE_ID = "pro_role_id"


async def get_guild_setting(db: Database, guild_id: str | int, key: str, default: str | None = None) -> str | None:
    async with db.read() as conn, conn.execute(
        "SELECT value FROM guild_settings WHERE guild_id = ? AND key = ?", (str(guild_id), key)
    ) as cursor:
        row = await cursor.fetchone()
    return default if row is None else row[0]


async def set_guild_setting(db: Database, guild_id: str | int, key: str, value: str | None) -> None:
    """Set a setting; None removes it."""
    async with db.write() as conn:
        if value is None:
            await conn.execute("DELETE FROM guild_settings WHERE guild_id = ? AND key = ?", (str(guild_id), key))
            return
        await conn.execute(
            """
            INSERT INTO guild_settings (guild_id, key, value, updated_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (guild_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
            """,
            (str(guild_id), key, str(value), encode_time(db.clock.now())),
        )


async def guild_settings(db: Database, guild_id: str | int) -> dict[str, str]:
    """All of a guild's settings."""
    async with db.read() as conn, conn.execute(
        "SELECT key, value FROM guild_settings WHERE guild_id = ? ORDER BY key", (str(guild_id),)
    ) as cursor:
        rows = await cursor.fetchall()
    return {row[0]: row[1] for row in rows}
