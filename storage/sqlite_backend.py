"""The embedded database: one SQLite file in the data folder that every process on the machine opens.

WAL lets readers run alongside the one writer; the busy timeout makes a second writer wait instead of failing; and
every write transaction starts with BEGIN IMMEDIATE, so it takes the write lock before reading: a read-modify-write
(e.g. "count charges, then charge") can't interleave with another one, and no transaction ever has to upgrade a
read lock (which SQLite answers with an immediate SQLITE_BUSY, without waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiosqlite

from storage.errors import ConstraintViolation
from storage.sql import Result, Statement

DEFAULT_BUSY_TIMEOUT_S = 30.0
MIN_SQLITE = (3, 39, 0)  # RETURNING, IS NOT DISTINCT FROM


class SqliteBackend:
    dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    async def open(cls, path: Path, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> SqliteBackend:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old; StemBot needs 3.39 or newer")
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: sqlite3 must not open transactions behind our back; we issue BEGIN/COMMIT ourselves.
        conn = await aiosqlite.connect(path, timeout=busy_timeout_s, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            await conn.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, and much faster
            await conn.execute("PRAGMA foreign_keys = ON")
            backend = cls(conn, path)
            await retry_while_locked(backend._enable_wal, asyncio.get_running_loop().time() + busy_timeout_s)
        except BaseException:
            await conn.close()
            raise
        return backend

    def describe(self) -> str:
        return str(self.path)

    def execute(self, sql: str, params: Sequence[object] = ()) -> Statement:
        return Statement(lambda: self._run(sql, params))

    async def _run(self, sql: str, params: Sequence[object]) -> Result:
        try:
            cursor = await self._conn.execute(sql, tuple(params))
            try:
                rows = list(await cursor.fetchall())
                count = cursor.rowcount
            finally:
                await cursor.close()
        except sqlite3.IntegrityError as error:
            raise ConstraintViolation(str(error), foreign_key="FOREIGN KEY" in str(error)) from error
        return Result(rows, count if count >= 0 else len(rows))

    async def begin(self, write: bool) -> None:
        await self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    async def commit(self) -> None:
        await self._conn.execute("COMMIT")

    async def rollback_quietly(self) -> None:
        # OperationalError: no transaction was open (BEGIN itself failed, or COMMIT already went through).
        with contextlib.suppress(sqlite3.OperationalError):
            await self._conn.execute("ROLLBACK")

    async def close(self) -> None:
        await self._conn.close()

    async def schema_version(self) -> int:
        version = await self._scalar("PRAGMA user_version")
        return version if isinstance(version, int) else 0

    async def set_schema_version(self, version: int) -> None:
        await self._conn.execute(f"PRAGMA user_version = {int(version)}")

    async def journal_mode(self) -> str:
        return str(await self._scalar("PRAGMA journal_mode"))

    async def _enable_wal(self) -> None:
        mode = await self._scalar("PRAGMA journal_mode = WAL")
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch {self.path} to WAL (journal_mode is {mode})")

    async def _scalar(self, sql: str) -> object:
        async with self._conn.execute(sql) as cursor:
            row = await cursor.fetchone()
        return None if row is None else row[0]


async def retry_while_locked(step: Callable[[], Awaitable[None]], deadline: float) -> None:
    # When several processes open a new database at once, switching it to WAL (and the first reads of a fresh WAL)
    # can fail with "database is locked" right away: SQLite does not call the busy handler there. Retry instead.
    loop = asyncio.get_running_loop()
    delay = 0.005
    while True:
        try:
            await step()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or loop.time() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)
