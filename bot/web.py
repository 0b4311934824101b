"""`stembot web`: serves job result files from the file store (`FileStore`) at signed, expiring links.

Routes: `GET|HEAD /d/{job_id}/{filename}?e=<expires>&s=<signature>` (with Range support), `GET /healthz`, and
`GET /metrics` (Prometheus) only with `Authorization: Bearer <STEMBOT_METRICS_TOKEN>`: 401 without it, and not
served at all (404) when no token is set. `STEMBOT_METRICS_PORT` adds a listener serving just `/metrics` (no token)
and `/healthz`, for a private network.
Refusals say nothing: 403 for a malformed, forged or expired link (checked before touching the disk), 404 when a
correctly signed link names no file.

The results page (`/r/{job_id}?e=&s=`, its zip, waveforms, practice-mixer renders and `/static/` assets) is
`bot.web_pages`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone

import redis.asyncio as aioredis
from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger, AbstractStreamWriter
from redis.exceptions import RedisError

from bot.links import verify
from bot.web_pages import ResultsPages
from bot.web_pages.fs import attachment as _attachment
from separation_worker.contract import metrics
from stembot.settings import Settings, SettingsError
from storage.files import FileStore

log = logging.getLogger(__name__)

REDIS = web.AppKey("redis", aioredis.Redis)

Clock = Callable[[], datetime]

CONTENT_TYPES = {
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".wav": "audio/wav",
    ".json": "application/json",
}
_EXPIRES = re.compile(r"\d{1,12}")
_ZERO_SUFFIX_RANGE = re.compile(r"bytes=-0+", re.IGNORECASE)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _refuse(status: int) -> web.Response:
    return web.Response(status=status, text="forbidden" if status == 403 else "not found")


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _prometheus(request: web.Request) -> web.Response:
    try:
        values = await metrics.snapshot(request.app[REDIS])
    except RedisError:
        return web.Response(status=503, text="redis unavailable\n")
    return web.Response(text=metrics.prometheus_text(values), content_type="text/plain", charset="utf-8")


def _token_required(token: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """/metrics behind `Authorization: Bearer <token>`, compared in constant time."""
    expected = token.encode("utf-8")

    async def guarded(request: web.Request) -> web.Response:
        scheme, _, credentials = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        given = credentials.strip().encode("utf-8", "surrogateescape")
        # compare_digest always runs, so a wrong scheme takes no less time than a wrong token.
        if not hmac.compare_digest(given, expected) or scheme.lower() != "bearer":
            return web.Response(status=401, text="unauthorized\n", headers={hdrs.WWW_AUTHENTICATE: "Bearer"})
        return await _prometheus(request)

    return guarded


def _redis_client(settings: Settings):
    async def redis_client(app: web.Application) -> AsyncIterator[None]:
        app[REDIS] = aioredis.from_url(settings.redis_url)
        yield
        await app[REDIS].aclose()

    return redis_client


class _FileResponse(web.FileResponse):
    """aiohttp's FileResponse (Range, HEAD, sendfile) with three differences, all decided on the request headers."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        headers = request.headers.copy()
        # Always the file itself, never a `<name>.gz`/`.br` neighbour that FileResponse would otherwise pick.
        headers.popall(hdrs.ACCEPT_ENCODING, None)
        byte_range = headers.get(hdrs.RANGE, "")
        if "," in byte_range:
            # Multiple ranges (which FileResponse answers 416): RFC 9110 lets a server ignore Range, so send it all.
            headers.popall(hdrs.RANGE)
        elif _ZERO_SUFFIX_RANGE.fullmatch(byte_range):
            # `bytes=-0` is unsatisfiable (RFC 9110 §14.1.1) but FileResponse sends the whole file as 206;
            # an inverted range takes it down its own 416 path, Content-Range included.
            headers[hdrs.RANGE] = "bytes=1-0"
        return await super().prepare(request.clone(headers=headers))


class AccessLogger(AbstractAccessLogger):
    """Logs the path but never the query string: it carries the link's signature."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %s %.3fs',
            request.remote, request.method, request.path, response.status, response.content_length or "-", time,
        )


def create_app(settings: Settings, clock: Clock | None = None) -> web.Application:
    """The download server; `clock` (returning an aware UTC datetime) decides expiry, for tests."""
    settings.require("secret_key", "public_url")
    secret_key = settings.secret_key
    files = FileStore.for_settings(settings)  # the only authority on where a job's files are
    now = clock or _utc_now

    async def download(request: web.Request) -> web.StreamResponse:
        job_id, filename = request.match_info["job_id"], request.match_info["filename"]
        expires, signature = request.query.get("e", ""), request.query.get("s", "")
        # Signature first: a bad link must not learn whether the file exists.
        if not _EXPIRES.fullmatch(expires) or not verify(secret_key, job_id, filename, int(expires), signature, now()):
            return _refuse(403)
        path = await asyncio.to_thread(files.result_file, job_id, filename)
        if path is None:
            return _refuse(404)
        return _FileResponse(path, headers={
            hdrs.CONTENT_TYPE: CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream"),
            hdrs.CONTENT_DISPOSITION: _attachment(filename),
            hdrs.CACHE_CONTROL: "private",
            "X-Content-Type-Options": "nosniff",
        })

    app = web.Application()
    app.cleanup_ctx.append(_redis_client(settings))
    app.router.add_get("/d/{job_id}/{filename}", download)
    app.router.add_get("/healthz", _healthz)
    if settings.metrics_token:  # public port: never open; without a token only STEMBOT_METRICS_PORT serves it
        app.router.add_get("/metrics", _token_required(settings.metrics_token))
    ResultsPages(secret_key, files, settings.file_ttl_hours, now).register(app)
    return app


def create_metrics_app(settings: Settings) -> web.Application:
    """The STEMBOT_METRICS_PORT listener's app: `/metrics` with no token, and `/healthz`; nothing else."""
    app = web.Application()
    app.cleanup_ctx.append(_redis_client(settings))
    app.router.add_get("/metrics", _prometheus)
    app.router.add_get("/healthz", _healthz)
    return app


def _with_metrics_port(app: web.Application, settings: Settings, host: str) -> web.Application:
    """With STEMBOT_METRICS_PORT set, `app` also runs the metrics listener while it runs (same host)."""
    port = settings.metrics_port
    if port is None:
        return app

    @contextlib.asynccontextmanager
    async def metrics_listener(_: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(create_metrics_app(settings), access_log_class=AccessLogger)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise SettingsError(f"STEMBOT_METRICS_PORT: cannot listen on {host}:{port} ({reason}): "
                                    "choose another port, or unset it") from None
            log.info("serving metrics on %s:%d", host, port)
            yield
        finally:
            await runner.cleanup()

    app.cleanup_ctx.append(metrics_listener)
    return app


async def serve(settings: Settings, host: str = "0.0.0.0", port: int = 8080) -> None:
    """Serve until cancelled, for callers that already run an event loop."""
    app = _with_metrics_port(create_app(settings), settings, host)
    runner = web.AppRunner(app, access_log_class=AccessLogger)
    try:
        await runner.setup()  # starts the metrics listener, if any
        await web.TCPSite(runner, host, port).start()
        log.info("serving download links on %s:%d", host, port)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(settings: Settings, host: str = "0.0.0.0", port: int = 8080) -> None:
    """Blocking entry point for `stembot web`: serves until SIGINT/SIGTERM, then shuts down cleanly."""
    app = _with_metrics_port(create_app(settings), settings, host)
    web.run_app(app, host=host, port=port, access_log_class=AccessLogger)
