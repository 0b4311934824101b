"""Users: one row per (platform, platform user id), created on first contact."""

from __future__ import annotations

from storage.clock import encode_time
from storage.database import Database
from storage.errors import NotFound
from storage.models import User, validate_platform
from storage.sql import Connection


async def get_or_create_user(
    db: Database, platform: str, platform_user_id: str | int, display_name: str | None = None
) -> User:
    """The user for this platform account, created if new; records it as seen now (and its new display name)."""
    validate_platform(platform)
    now = encode_time(db.clock.now())
    async with db.write() as conn, conn.execute(
        """
            INSERT INTO users (platform, platform_user_id, display_name, created_at, last_seen_at)
            VALUES (?, ?, COALESCE(?, ''), ?, ?)
            ON CONFLICT (platform, platform_user_id) DO UPDATE SET
                display_name = COALESCE(?, users.display_name),
                last_seen_at = excluded.last_seen_at
            RETURNING *
            """,
        (platform, str(platform_user_id), display_name, now, now, display_name),
    ) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return User.from_row(row)


async def get_user(db: Database, user_id: int) -> User | None:
    async with db.read() as conn:
        return await fetch_user(conn, user_id)


async def find_user(db: Database, platform: str, platform_user_id: str | int) -> User | None:
    """The user for this platform account, or None if it never contacted the bot."""
    async with db.read() as conn, conn.execute(
        "SELECT * FROM users WHERE platform = ? AND platform_user_id = ?", (platform, str(platform_user_id))
    ) as cursor:
        row = await cursor.fetchone()
    return None if row is None else User.from_row(row)


async def fetch_user(conn: Connection, user_id: int) -> User | None:
    """Within an open transaction: the user, or None."""
    async with conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)) as cursor:
        row = await cursor.fetchone()
    return None if row is None else User.from_row(row)


async def require_user(conn: Connection, user_id: int) -> User:
    """Within an open transaction: the user, or NotFound."""
    user = await fetch_user(conn, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


async def set_default_mode(db: Database, user_id: int, mode: str | None) -> None:
    """The mode the user's songs get unless they pick one (None: the service's default). Names are not checked
    here: the service knows the modes."""
    async with db.write() as conn:
        cursor = await conn.execute("UPDATE users SET default_mode = ? WHERE id = ?", (mode, user_id))
    if cursor.rowcount != 1:
        raise NotFound(f"no user with id {user_id}")
