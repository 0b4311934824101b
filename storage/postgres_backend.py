"""PostgreSQL, for StemBot spread over machines: the front ends and every worker connect to one server.

Every write transaction first takes one transaction-scoped advisory lock, so writes run one at a time, as on
SQLite: the read-modify-write transactions (the quota's "count charges, then charge", claiming a delivery) stay
race-free without each needing its own locking. Writes are a handful of short statements per job, so one writer
at a time is far from a bottleneck; reads run alongside, each transaction on one snapshot (REPEATABLE READ).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from storage.errors import ConstraintViolation, DatabaseUnavailable
from storage.sql import Result, Statement

WRITE_LOCK = 0x5354454D  # "STEM": the advisory lock key every write transaction holds
SCHEMES = ("postgresql://", "postgres://", "postgresql+asyncpg://")
CONNECT_TIMEOUT_S = 30.0
_ROWS = re.compile(r"^\s*(SELECT|WITH|VALUES)\b|\bRETURNING\b", re.IGNORECASE)


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection, dsn: str) -> None:
        self._conn = conn
        self._dsn = dsn

    @classmethod
    async def connect(cls, url: str) -> PostgresBackend:
        dsn = plain_dsn(url)
        return cls(await _connect(dsn), dsn)

    def describe(self) -> str:
        return redact(self._dsn)

    def execute(self, sql: str, params: Sequence[object] = ()) -> Statement:
        return Statement(lambda: self._run(sql, params))

    async def _run(self, sql: str, params: Sequence[object]) -> Result:
        query = numbered_placeholders(sql)
        try:
            if _ROWS.search(sql):
                rows = await self._conn.fetch(query, *params)
                return Result(rows, len(rows))
            status = await self._conn.execute(query, *params)
        except asyncpg.UniqueViolationError as error:
            raise ConstraintViolation(str(error), foreign_key=False) from error
        except asyncpg.ForeignKeyViolationError as error:
            raise ConstraintViolation(str(error), foreign_key=True) from error
        last = status.rsplit(" ", 1)[-1]  # "UPDATE 3", "INSERT 0 1", "DELETE 0"
        return Result([], int(last) if last.isdigit() else 0)

    async def begin(self, write: bool) -> None:
        if self._conn.is_closed():  # the server restarted, or the network dropped us: start over
            self._conn = await _connect(self._dsn)
        if write:
            await self._conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        else:
            await self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")

    async def commit(self) -> None:
        await self._conn.execute("COMMIT")

    async def rollback_quietly(self) -> None:
        # The connection may be gone (that may be why we roll back) or have no transaction open.
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            if not self._conn.is_closed():
                await self._conn.execute("ROLLBACK")

    async def close(self) -> None:
        with contextlib.suppress(asyncpg.InterfaceError, OSError):
            await self._conn.close(timeout=5)

    async def schema_version(self) -> int:
        # Called inside the migrating write transaction: the advisory lock keeps two processes from racing here.
        await self._conn.execute("CREATE TABLE IF NOT EXISTS stembot_schema (version INTEGER NOT NULL)")
        version = await self._conn.fetchval("SELECT version FROM stembot_schema")
        return int(version or 0)

    async def set_schema_version(self, version: int) -> None:
        await self._conn.execute("DELETE FROM stembot_schema")
        await self._conn.execute("INSERT INTO stembot_schema (version) VALUES ($1)", version)


async def _connect(dsn: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise DatabaseUnavailable(
            f"could not connect to PostgreSQL at {redact(dsn)} (STEMBOT_DATABASE_URL): {error}"
        ) from None


def is_postgres_url(url: str) -> bool:
    return url.startswith(SCHEMES)


def plain_dsn(url: str) -> str:
    """The URL as asyncpg takes it (SQLAlchemy's `postgresql+asyncpg://` spelling accepted too)."""
    return "postgresql://" + url.split("://", 1)[1]


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def numbered_placeholders(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...` (none inside quoted text)."""
    out: list[str] = []
    number = 0
    quote = ""
    for char in sql:
        if quote:
            quote = "" if char == quote else quote
        elif char in ("'", '"'):
            quote = char
        elif char == "?":
            number += 1
            out.append(f"${number}")
            continue
        out.append(char)
    return "".join(out)
