"""Start-up checks of the long-running commands: a bad setting stops them in seconds, with one line naming it."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, RedisError

from separation_worker.contract.network_errors import network_cause

from .redaction import scrub
from .settings import SettingsError

REDIS_TIMEOUT_S = 3.0


def require_redis(redis_url: str) -> None:
    """Stop unless Redis answers a PING. (arq alone retries, logs each retry, then raises a bare socket error.)"""
    asyncio.run(_ping(redis_url))


async def _ping(redis_url: str) -> None:
    client = aioredis.from_url(redis_url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S)
    try:
        await client.ping()
    except AuthenticationError:
        raise SettingsError(f"Redis at {redis_address(redis_url)} refused the credentials: check REDIS_URL") from None
    except (RedisError, OSError) as exc:
        raise SettingsError(f"cannot reach Redis at {redis_address(redis_url)} ({network_reason(exc)}): "
                            "check REDIS_URL and that Redis is running") from None
    finally:
        await client.aclose()


def redis_address(redis_url: str) -> str:
    """Where the URL points, without its password."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"


def network_reason(exc: BaseException) -> str:
    """A short cause of a failed connection ("Connection refused", "timed out", a DNS failure), from anywhere
    in the exception's chain; else the exception's own text, scrubbed of secrets."""
    return network_cause(exc) or scrub(str(exc)) or type(exc).__name__
