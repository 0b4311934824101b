"""The database every StemBot process shares: one connection per process, transactions, migrations on open.

Two servers stand behind it (STEMBOT_DATABASE_URL): an SQLite file in the data folder (the embedded default, for
one machine) or PostgreSQL (for workers and front ends on several machines). Both give the storage functions the
same things: `read()` sees one snapshot, `write()` runs alone among writers, committed on success and rolled back
on any exception, so a read-modify-write can't interleave with another one in any process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Protocol

from storage.clock import Clock, SystemClock
from storage.errors import SchemaTooNew
from storage.migrations import MIGRATIONS, statement_for
from storage.postgres_backend import PostgresBackend, is_postgres_url
from storage.sql import Connection
from storage.sqlite_backend import DEFAULT_BUSY_TIMEOUT_S, SqliteBackend, retry_while_locked

DATABASE_FILENAME = "stembot.sqlite3"  # under Settings.data_dir, next to the file store


class Backend(Connection, Protocol):
    dialect: str  # "sqlite" | "postgresql": which variant of a migration statement runs

    def describe(self) -> str: ...
    async def begin(self, write: bool) -> None: ...
    async def commit(self) -> None: ...
    async def rollback_quietly(self) -> None: ...
    async def close(self) -> None: ...
    async def schema_version(self) -> int: ...
    async def set_schema_version(self, version: int) -> None: ...


class Database:
    """One connection to the StemBot database. Open with `await Database.connect(url, data_dir)` (or `open(path)`
    for an SQLite file); close with `close()`.

    Safe to share between the tasks of one event loop: an asyncio lock serializes its transactions (one connection
    can only hold one transaction at a time). For parallelism across processes, open one per process.
    """

    def __init__(self, backend: Backend, clock: Clock) -> None:
        self._backend = backend
        self._lock = asyncio.Lock()
        self.clock = clock

    @property
    def dialect(self) -> str:
        return self._backend.dialect

    @property
    def path(self) -> Path | None:
        """The SQLite file (None on PostgreSQL)."""
        return self._backend.path if isinstance(self._backend, SqliteBackend) else None

    def describe(self) -> str:
        """Where the database is, for messages and logs (a file, or a server URL without its password)."""
        return self._backend.describe()

    @classmethod
    async def connect(cls, url: str, data_dir: str | Path, clock: Clock | None = None) -> Database:
        """The database STEMBOT_DATABASE_URL names: `postgresql://…`, `sqlite:///<file>`, or (empty) the SQLite
        file in the data folder."""
        if is_postgres_url(url):
            return await cls._migrated(await PostgresBackend.connect(url), clock)
        return await cls.open(sqlite_path(url, data_dir), clock=clock)

    @classmethod
    async def for_settings(cls, settings: _HasDatabase, clock: Clock | None = None) -> Database:
        return await cls.connect(settings.database_url, settings.data_dir, clock=clock)

    @classmethod
    async def in_data_dir(cls, data_dir: str | Path, clock: Clock | None = None) -> Database:
        """The embedded database: `<data_dir>/stembot.sqlite3` (Settings.data_dir)."""
        return await cls.open(Path(data_dir) / DATABASE_FILENAME, clock=clock)

    @classmethod
    async def open(
        cls, path: str | Path, clock: Clock | None = None, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S
    ) -> Database:
        """Open (creating it and its folder if needed) the SQLite database at `path`, switch to WAL and migrate."""
        backend = await SqliteBackend.open(Path(path), busy_timeout_s)
        db = cls(backend, clock or SystemClock())
        try:
            await retry_while_locked(db._migrate, asyncio.get_running_loop().time() + busy_timeout_s)
        except BaseException:
            await backend.close()
            raise
        return db

    @classmethod
    async def _migrated(cls, backend: Backend, clock: Clock | None) -> Database:
        db = cls(backend, clock or SystemClock())
        try:
            await db._migrate()
        except BaseException:
            await backend.close()
            raise
        return db

    async def close(self) -> None:
        async with self._lock:
            await self._backend.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Connection]:
        """A write transaction, alone among writers: committed on success, rolled back on any exception."""
        async with self._transaction(write=True) as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Connection]:
        """A read transaction: its statements all see the same snapshot. Don't write in it."""
        async with self._transaction(write=False) as conn:
            yield conn

    @asynccontextmanager
    async def _transaction(self, write: bool) -> AsyncIterator[Connection]:
        async with self._lock:
            try:
                await self._backend.begin(write)
                yield self._backend
                await self._backend.commit()
            except BaseException:
                # Also on cancellation: a statement whose await was cancelled still runs (on aiosqlite's thread,
                # or the server), and this ROLLBACK is queued behind it, so no transaction is left open.
                await self._backend.rollback_quietly()
                raise

    async def schema_version(self) -> int:
        async with self.read():
            return await self._backend.schema_version()

    async def journal_mode(self) -> str:
        """SQLite's journal mode ("wal")."""
        assert isinstance(self._backend, SqliteBackend), "journal_mode is SQLite's"
        async with self._lock:
            return await self._backend.journal_mode()

    async def _migrate(self) -> None:
        # The version is read inside the write transaction: when two processes start together, the second waits
        # for the first and then sees the migrations already applied.
        async with self.write() as conn:
            version = await self._backend.schema_version()
            if version > len(MIGRATIONS):
                raise SchemaTooNew(
                    f"{self.describe()} has schema version {version}; this StemBot knows up to {len(MIGRATIONS)}. "
                    "Upgrade StemBot."
                )
            for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    sql = statement_for(statement, self.dialect)
                    if sql:
                        await conn.execute(sql)
                await self._backend.set_schema_version(number)


class _HasDatabase(Protocol):  # Settings, read-only
    @property
    def database_url(self) -> str: ...
    @property
    def data_dir(self) -> Path: ...


def sqlite_path(url: str, data_dir: str | Path) -> Path:
    """The SQLite file a STEMBOT_DATABASE_URL names: `sqlite:///relative.db`, `sqlite:////absolute.db`, or (empty
    URL or `sqlite://`) `<data_dir>/stembot.sqlite3`."""
    if not url or url in ("sqlite://", "sqlite:///"):
        return Path(data_dir) / DATABASE_FILENAME
    if not url.startswith("sqlite:///"):
        raise ValueError(f"STEMBOT_DATABASE_URL must start with sqlite:/// or postgresql://, not {url.split(':')[0]}:")
    return Path(url[len("sqlite:///"):]).expanduser()
