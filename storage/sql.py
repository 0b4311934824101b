"""What the storage functions see of a database connection, whichever server is behind it.

Statements are written once, with `?` placeholders, in the SQL that SQLite and PostgreSQL share (ON CONFLICT,
RETURNING, IS NULL; no INSERT OR IGNORE, no `IS ?`). Every statement's rows are read at once: results are small,
and it makes both backends look alike (SQLite's cursors and asyncpg's records behave differently when left open).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Row(Protocol):
    """One result row: by column name or position (sqlite3.Row and asyncpg.Record both are)."""

    def __getitem__(self, key: str | int) -> Any: ...


@dataclass(frozen=True)
class Result:
    rows: Sequence[Row]
    rowcount: int  # rows the statement changed (an UPDATE's or DELETE's), or returned

    async def fetchone(self) -> Row | None:
        return self.rows[0] if self.rows else None

    async def fetchall(self) -> list[Row]:
        return list(self.rows)


class Statement:
    """A statement under way: `await conn.execute(...)` or `async with conn.execute(...) as result`."""

    def __init__(self, run: Callable[[], Awaitable[Result]]) -> None:
        self._run = run

    def __await__(self) -> Generator[Any, None, Result]:
        return self._run().__await__()

    async def __aenter__(self) -> Result:
        return await self._run()

    async def __aexit__(self, *exc: object) -> None:
        return None


class Connection(Protocol):
    """The connection inside a transaction (`Database.read()` / `Database.write()`)."""

    def execute(self, sql: str, params: Sequence[object] = ()) -> Statement: ...
