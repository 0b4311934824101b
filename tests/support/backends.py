"""The suite's database and object store: SQLite and local files by default; PostgreSQL and S3 when the run sets
STEMBOT_DATABASE_URL=postgresql://… and STEMBOT_STORAGE_URL=s3://bucket/prefix (CI runs both).

Each test gets its own: a fresh PostgreSQL database (dropped afterwards) and its own prefix in the bucket. With no
STEMBOT_S3_ENDPOINT_URL the suite runs a real S3 endpoint itself (moto's server, over HTTP on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace

import asyncpg

from storage.postgres_backend import is_postgres_url, plain_dsn

ENV_NAMES = ("STEMBOT_DATABASE_URL", "STEMBOT_STORAGE_URL", "STEMBOT_S3_ENDPOINT_URL")
# The machine's PostgreSQL, for the tests that run on both databases whatever the run's default (.ci/run sets it).
DEFAULT_POSTGRES = os.environ.get("STEMBOT_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Backends:
    database_url: str = ""  # "": the SQLite file in the data folder
    storage_url: str = ""  # "": the local file store in the data folder
    s3_endpoint_url: str = ""
    s3_env: tuple[tuple[str, str], ...] = ()  # credentials for the suite's own endpoint

    @property
    def postgres(self) -> bool:
        return is_postgres_url(self.database_url)

    @property
    def s3(self) -> bool:
        return self.storage_url.startswith("s3://")

    def env(self) -> dict[str, str]:
        """The variables a process (or Settings.from_env) needs to use these backends; empty for the defaults."""
        values = dict(zip(ENV_NAMES, (self.database_url, self.storage_url, self.s3_endpoint_url), strict=True))
        return {**{k: v for k, v in values.items() if v}, **dict(self.s3_env)}


def backend_env() -> dict[str, str]:
    """This test's backend variables as the `backends` fixture set them, for an environment built from scratch."""
    names = (*ENV_NAMES, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    return {name: os.environ[name] for name in names if os.environ.get(name)}


@contextmanager
def suite_backends(environ: dict[str, str] | None = None) -> Iterator[Backends]:
    """The run's backends, from the environment; starts the S3 endpoint when the run names a bucket but none."""
    env = os.environ if environ is None else environ
    base = Backends(*(env.get(name, "") for name in ENV_NAMES))
    with ExitStack() as stack:
        if base.s3 and not base.s3_endpoint_url:
            from tests.support.s3_server import s3_credentials_env, s3_server

            endpoint = stack.enter_context(s3_server())
            base = replace(base, s3_endpoint_url=endpoint, s3_env=tuple(s3_credentials_env().items()))
        if base.s3:
            _ensure_bucket(base)
        yield base


@contextmanager
def isolated_backends(base: Backends) -> Iterator[Backends]:
    """Fresh backends for one test: its own PostgreSQL database, its own prefix in the bucket."""
    tag = uuid.uuid4().hex[:12]
    mine = base
    if base.s3:
        mine = replace(mine, storage_url=f"{base.storage_url.rstrip('/')}/t-{tag}")
    if not base.postgres:
        yield mine
        return
    name = f"stembot_t_{tag}"
    _run(_admin(base.database_url, f'CREATE DATABASE "{name}"'))
    try:
        yield replace(mine, database_url=_with_database(base.database_url, name))
    finally:
        _run(_admin(base.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _with_database(url: str, name: str) -> str:
    head, _, query = plain_dsn(url).partition("?")
    scheme, _, rest = head.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{name}" + (f"?{query}" if query else "")


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(plain_dsn(url), timeout=30)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run(coro) -> None:
    # Fixtures may be set up while a test's event loop runs in this thread: use a thread of our own.
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as error:  # noqa: BLE001 (handed back to the caller)
            errors.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _ensure_bucket(base: Backends) -> None:
    from storage.objects import ObjectStore, parse_storage_url

    saved = {k: os.environ.get(k) for k, _ in base.s3_env}
    os.environ.update(dict(base.s3_env))
    try:
        location = parse_storage_url(base.storage_url, default_dir=None)  # type: ignore[arg-type]
        ObjectStore.from_location(location, endpoint_url=base.s3_endpoint_url).ensure_bucket()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
