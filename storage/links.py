"""Account links: one Discord and one Telegram account of the same person, joined with a one-time code.

The user asks for a code on one platform and sends it to the bot on the other. Codes are short, typed by hand
(no 0/O or 1/I/L), cryptographically random, single-use and short-lived.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from storage.clock import decode_time, encode_time
from storage.database import Database
from storage.errors import LinkCodeError, LinkFailure, StorageError
from storage.models import LinkCode, User
from storage.users import fetch_user, require_user

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8  # 31**8 ≈ 8.5e11 codes: guessing a live one is hopeless at any rate a bot front end allows
DEFAULT_CODE_TTL = timedelta(minutes=15)


async def create_link_code(db: Database, user_id: int, ttl: timedelta = DEFAULT_CODE_TTL) -> LinkCode:
    """A new code for the user, valid for `ttl`; the user's earlier unused codes stop working."""
    now = db.clock.now()
    expires_at = now + ttl
    async with db.write() as conn:
        await require_user(conn, user_id)
        await conn.execute("DELETE FROM link_codes WHERE user_id = ? AND used_at IS NULL", (user_id,))
        for _ in range(5):  # a collision with a stored code is astronomically unlikely; retry anyway
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            # ON CONFLICT, not a caught error: on PostgreSQL an error ends the whole transaction.
            inserted = await conn.execute(
                "INSERT INTO link_codes (code, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (code) DO NOTHING",
                (code, user_id, encode_time(now), encode_time(expires_at)),
            )
            if inserted.rowcount == 1:
                return LinkCode(code=code, user_id=user_id, expires_at=expires_at)
    raise StorageError("could not find a free link code")


async def redeem_link_code(db: Database, code: str, user_id: int) -> User:
    """Link `user_id` with the account that created `code`; returns that account (as now linked).

    Raises LinkCodeError (with a user-facing `message`) for an unknown, used or expired code, or one created on
    the same platform (that code stays valid). Either account's previous link, if any, is replaced.
    """
    wanted = normalize_code(code)
    now = db.clock.now()
    async with db.write() as conn:
        async with conn.execute("SELECT * FROM link_codes WHERE code = ?", (wanted,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise LinkCodeError(LinkFailure.NOT_FOUND)
        if row["used_at"] is not None:
            raise LinkCodeError(LinkFailure.USED)
        if decode_time(row["expires_at"]) <= now:  # type: ignore[operator]
            raise LinkCodeError(LinkFailure.EXPIRED)
        owner = await require_user(conn, row["user_id"])
        redeemer = await require_user(conn, user_id)
        if owner.platform == redeemer.platform:
            raise LinkCodeError(LinkFailure.SAME_PLATFORM)

        await conn.execute(
            "UPDATE link_codes SET used_at = ?, used_by = ? WHERE code = ?", (encode_time(now), user_id, wanted)
        )
        # Break both accounts' old links on the partners' side too, so links always come in pairs.
        await conn.execute(
            "UPDATE users SET linked_user_id = NULL WHERE linked_user_id IN (?, ?)", (owner.id, redeemer.id)
        )
        await conn.execute("UPDATE users SET linked_user_id = ? WHERE id = ?", (redeemer.id, owner.id))
        await conn.execute("UPDATE users SET linked_user_id = ? WHERE id = ?", (owner.id, redeemer.id))
        return await require_user(conn, owner.id)


async def linked_account(db: Database, user_id: int) -> User | None:
    """The account linked to the user, or None."""
    async with db.read() as conn:
        user = await require_user(conn, user_id)
        return None if user.linked_user_id is None else await fetch_user(conn, user.linked_user_id)


async def unlink(db: Database, user_id: int) -> bool:
    """Remove the user's link (on both accounts). True if there was one."""
    async with db.write() as conn:
        user = await require_user(conn, user_id)
        if user.linked_user_id is None:
            return False
        await conn.execute(
            "UPDATE users SET linked_user_id = NULL WHERE id IN (?, ?)", (user.id, user.linked_user_id)
        )
        return True


def normalize_code(code: str) -> str:
    """Codes are forgiving as typed: case, spaces and dashes don't matter."""
    return "".join(ch for ch in code.upper() if ch not in " -\t")
