"""The SQLite connection: WAL, busy timeout, migrations on open, and transaction helpers.

Several processes (bots, workers, web) open the same file. WAL lets readers run alongside the one writer; the busy
timeout makes a second writer wait instead of failing; and every write transaction starts with BEGIN IMMEDIATE, so
it takes the write lock before reading: a read-modify-write (e.g. "count charges, then charge") can't interleave
with another one, and no transaction ever has to upgrade a read lock (which SQLite answers with an immediate
SQLITE_BUSY, without waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType

import aiosqlite

from storage.clock import Clock, SystemClock
from storage.errors import SchemaTooNew
from storage.migrations import MIGRATIONS

DEFAULT_BUSY_TIMEOUT_S = 30.0
DATABASE_FILENAME = "stembot.sqlite3"  # under Settings.data_dir, next to the file store
MIN_SQLITE = (3, 35, 0)  # RETURNING


class Database:
    """One connection to the StemBot database. Open with `await Database.open(path)`; close with `close()`.

    Safe to share between the tasks of one event loop: an asyncio lock serializes its transactions (one sqlite
    connection can only hold one transaction at a time). For parallelism across processes, open one per process.
    """

    def __init__(self, conn: aiosqlite.Connection, path: Path, clock: Clock) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path
        self.clock = clock

    @classmethod
    async def in_data_dir(cls, data_dir: str | Path, clock: Clock | None = None) -> Database:
        """Open the database every StemBot process shares: `<data_dir>/stembot.sqlite3` (Settings.data_dir)."""
        return await cls.open(Path(data_dir) / DATABASE_FILENAME, clock=clock)

    @classmethod
    async def open(
        cls, path: str | Path, clock: Clock | None = None, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S
    ) -> Database:
        """Open (creating it and its folder if needed) the database at `path`, switch to WAL and migrate."""
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old; StemBot needs 3.35 or newer")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: sqlite3 must not open transactions behind our back; we issue BEGIN/COMMIT ourselves.
        conn = await aiosqlite.connect(path, timeout=busy_timeout_s, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            await conn.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, and much faster
            await conn.execute("PRAGMA foreign_keys = ON")
            db = cls(conn, path, clock or SystemClock())
            deadline = asyncio.get_running_loop().time() + busy_timeout_s
            await _retry_while_locked(db._enable_wal, deadline)
            await _retry_while_locked(db._migrate, deadline)
        except BaseException:
            await conn.close()
            raise
        return db

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (BEGIN IMMEDIATE): committed on success, rolled back on any exception."""
        async with self._transaction("BEGIN IMMEDIATE") as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """A read transaction: its statements all see the same snapshot. Don't write in it."""
        async with self._transaction("BEGIN") as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self, begin: str) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            try:
                await self._conn.execute(begin)
                yield self._conn
                await self._conn.execute("COMMIT")
            except BaseException:
                # Also on cancellation: a statement whose await was cancelled still runs on aiosqlite's thread,
                # and this ROLLBACK is queued behind it, so no transaction is ever left open on the connection.
                await self._rollback_quietly()
                raise

    async def _rollback_quietly(self) -> None:
        # OperationalError: no transaction was open (BEGIN itself failed, or COMMIT already went through).
        with contextlib.suppress(sqlite3.OperationalError):
            await self._conn.execute("ROLLBACK")

    async def schema_version(self) -> int:
        async with self.read() as conn:
            return await _fetch_int(conn, "PRAGMA user_version")

    async def journal_mode(self) -> str:
        async with self._lock:
            return str(await _fetch_value(self._conn, "PRAGMA journal_mode"))

    async def _enable_wal(self) -> None:
        async with self._lock:
            mode = await _fetch_value(self._conn, "PRAGMA journal_mode = WAL")
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch {self.path} to WAL (journal_mode is {mode})")

    async def _migrate(self) -> None:
        # user_version is read inside the write transaction: when two processes start together, the second waits
        # for the first and then sees the migrations already applied.
        async with self.write() as conn:
            version = await _fetch_int(conn, "PRAGMA user_version")
            if version > len(MIGRATIONS):
                raise SchemaTooNew(
                    f"{self.path} has schema version {version}; this StemBot knows up to {len(MIGRATIONS)}. "
                    "Upgrade StemBot."
                )
            for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {number}")


async def _retry_while_locked(step: Callable[[], Awaitable[None]], deadline: float) -> None:
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


async def _fetch_int(conn: aiosqlite.Connection, sql: str) -> int:
    value = await _fetch_value(conn, sql)
    assert isinstance(value, int), (sql, value)
    return value


async def _fetch_value(conn: aiosqlite.Connection, sql: str, params: tuple[object, ...] = ()) -> object:
    async with conn.execute(sql, params) as cursor:
        row = await cursor.fetchone()
    return None if row is None else row[0]
