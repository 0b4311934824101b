"""The results page routes of `stembot web`.

`GET /r/{job_id}?e=<expires>&s=<sig>`              the page (HTML)
`GET /r/{job_id}/all.zip?e=<expires>&s=<sig>`      every result file of the job, as one zip
`GET /r/{job_id}/peaks.json?e=<expires>&s=<sig>`   waveform data for the page's players
`GET /r/{job_id}/mix.<fmt>?e=&s=&gain.<stem>=…`    the practice mixer's mix, rendered by ffmpeg (`mix.py`)
`GET /static/{name}?v=<version>`                   the page's CSS, JS and icon

All the `/r/` routes take the page's signature (`bot.links.sign_page_link`). A malformed or forged link gets a
403 page that names nothing; a genuine link past its expiry, or one whose files the janitor already deleted, gets
the "files were deleted" page (410), which doesn't name the song either. Inside the page, files are linked with
the ordinary per-file links (`/d/...`) signed with the same expiry, so they stop working at the same moment.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

from bot.links import page_signature_ok, sign_link, valid_job_id
from bot.web_pages import archive
from bot.web_pages.assets import StaticAssets, template_environment
from bot.web_pages.fs import attachment
from bot.web_pages.mix import (
    MIX_STEMS,
    TEXT,
    MixBusy,
    MixError,
    MixRequest,
    Renderer,
    has_rubberband,
    mix_command,
    mix_sources,
)
from bot.web_pages.peaks import PeaksCache
from bot.web_pages.view import build_view, read_manifest, result_files, size_text
from bot.wording import hours_text
from separation_worker.contract.manifest import Manifest
from storage.files import FileStore, safe_filename

Clock = Callable[[], datetime]

_EXPIRES = re.compile(r"\d{1,12}")
STATIC_ROUTE = "/static/{name}"
# Everything the page needs comes from this server; nothing may frame it or learn where it was opened from.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class ResultsPages:
    def __init__(self, secret_key: str, files: FileStore, ttl_hours: float, now: Clock) -> None:
        self.secret_key = secret_key
        self.files = files  # every path into the store comes from it
        self.ttl_hours = ttl_hours
        self.now = now
        self.assets = StaticAssets()
        self.templates = template_environment(self.assets)
        self.peaks = PeaksCache()
        self.renderer = Renderer()

    def register(self, app: web.Application) -> None:
        app.router.add_get("/r/{job_id}", self.page)
        app.router.add_get("/r/{job_id}/all.zip", self.zip)
        app.router.add_get("/r/{job_id}/peaks.json", self.waveforms)
        app.router.add_get("/r/{job_id}/mix.{fmt}", self.mix)
        app.router.add_get(STATIC_ROUTE, self.assets.handle)

    # -- handlers ----------------------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        checked = await self._open(request)
        if isinstance(checked, web.Response):
            return checked
        job_id, expires_at, manifest = checked
        view = build_view(manifest, self._file_link(job_id, expires_at))
        now = self.now()
        query = f"e={int(expires_at.timestamp())}&s={request.query['s']}"  # the verified pair, nothing else
        return self._html(200, "results.html", {
            "view": view,
            "expires_iso": expires_at.isoformat().replace("+00:00", "Z"),
            "expires_ms": int(expires_at.timestamp() * 1000),
            "now_ms": int(now.timestamp() * 1000),
            "expires_text": expires_at.strftime("%b %-d, %H:%M UTC"),
            "remaining_text": remaining_text(expires_at - now),
            "zip_url": f"/r/{job_id}/all.zip?{query}",
            "zip_size": size_text(view.zip_size),
            "peaks_url": f"/r/{job_id}/peaks.json?{query}",
            "mix_url": f"/r/{job_id}/mix.mp3?{query}",
        })

    async def zip(self, request: web.Request) -> web.StreamResponse:
        checked = await self._open(request)
        if isinstance(checked, web.Response):
            return checked
        job_id, _, manifest = checked
        entries = await asyncio.to_thread(self._zip_entries, job_id, manifest)
        length = await asyncio.to_thread(archive.zip_size, entries)
        name = safe_filename(f"{manifest.title or 'StemBot'} (Stems).zip", "stems.zip")
        response = web.StreamResponse(headers={
            **SECURITY_HEADERS,
            hdrs.CONTENT_TYPE: "application/zip",
            hdrs.CONTENT_DISPOSITION: attachment(name),
            hdrs.CACHE_CONTROL: "private, no-store",
        })
        if length is not None:
            response.content_length = length
        await response.prepare(request)
        if request.method != hdrs.METH_HEAD:
            await archive.write_zip(entries, _writer(response))
        await response.write_eof()
        return response

    async def waveforms(self, request: web.Request) -> web.Response:
        checked = await self._open(request)
        if isinstance(checked, web.Response):
            return checked
        job_id, expires_at, manifest = checked
        view = build_view(manifest, lambda name: "")
        paths = [await asyncio.to_thread(self.files.result_file, job_id, t.play_filename) for t in view.tracks]
        found = [(t.key, p) for t, p in zip(view.tracks, paths) if p is not None]
        peaks = await asyncio.gather(*(self.peaks.get(path) for _, path in found))
        max_age = max(0, min(86400, int((expires_at - self.now()).total_seconds())))
        return web.json_response(
            {"tracks": {key: p.to_json() for (key, _), p in zip(found, peaks)}},
            headers={**SECURITY_HEADERS, hdrs.CACHE_CONTROL: f"private, max-age={max_age}"},
        )

    async def mix(self, request: web.Request) -> web.StreamResponse:
        checked = await self._open(request)  # the page's token first: expired is "deleted", whatever else it asks
        if isinstance(checked, web.Response):
            return checked
        job_id, _, manifest = checked
        sources = mix_sources(manifest)
        try:
            wanted = MixRequest.from_query(
                request.match_info["fmt"], request.query, [key for key, _ in request.query.items()], [s.name for s in sources],
                [s.name for s in manifest.stems if s.name in MIX_STEMS], manifest.duration,
            )
        except MixError as exc:
            return self._plain(400, str(exc))
        paths = await asyncio.to_thread(lambda: [self.files.result_file(job_id, s.render_file) for s in sources])
        if any(path is None for path in paths):
            return self._gone()  # the janitor is deleting the job's files
        inputs = [(path, s.balance * wanted.gains[s.name]) for s, path in zip(sources, paths)
                  if path is not None and wanted.gains[s.name] > 0]
        rubberband = await asyncio.to_thread(has_rubberband)
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="stembot-mix-"))
        output = folder / f"mix.{wanted.fmt}"
        argv = mix_command(wanted, inputs, output, manifest.sample_rate or 44100, manifest.duration, rubberband)
        try:
            rendered = await self.renderer.render(argv)
        except MixBusy:
            rendered = None
        finally:
            if not output.is_file():
                await asyncio.to_thread(shutil.rmtree, folder, True)
        if rendered is None:
            return self._plain(503, TEXT["busy"], {hdrs.RETRY_AFTER: "30"})
        if not rendered:
            return self._plain(500, TEXT["failed"])
        name = safe_filename(f"{manifest.title or 'StemBot'} (My Mix).{wanted.fmt}", f"mix.{wanted.fmt}")
        return _RenderedFile(output, headers={
            **SECURITY_HEADERS,
            hdrs.CONTENT_TYPE: wanted.content_type,
            hdrs.CONTENT_DISPOSITION: attachment(name),
            hdrs.CACHE_CONTROL: "private, no-store",
        })

    # -- helpers -----------------------------------------------------------------------------------------------

    async def _open(self, request: web.Request) -> tuple[str, datetime, Manifest] | web.Response:
        """The job id, expiry and manifest of a genuine, live link; else the page to answer with."""
        job_id = request.match_info["job_id"]
        expires, signature = request.query.get("e", ""), request.query.get("s", "")
        # The signature first: a forged link must not learn whether the job exists or has expired.
        if not valid_job_id(job_id) or not _EXPIRES.fullmatch(expires):
            return self._forbidden()
        if not page_signature_ok(self.secret_key, job_id, int(expires), signature):
            return self._forbidden()
        expires_at = datetime.fromtimestamp(int(expires), timezone.utc)
        if self.now() >= expires_at:
            return self._gone()
        manifest = await asyncio.to_thread(read_manifest, self.files, job_id)
        if manifest is None:  # the janitor was there first (or the job never finished)
            return self._gone()
        return job_id, expires_at, manifest

    def _file_link(self, job_id: str, expires_at: datetime) -> Callable[[str], str]:
        # Root-relative ("/d/..."): the page's media and downloads stay on whichever origin served the page.
        return lambda filename: sign_link("", self.secret_key, job_id, filename, expires_at)

    def _zip_entries(self, job_id: str, manifest: Manifest) -> list[archive.Entry]:
        paths = {name: self.files.result_file(job_id, name) for name in result_files(manifest)}
        return archive.entries_for({name: path for name, path in paths.items() if path is not None})

    def _forbidden(self) -> web.Response:
        return self._html(403, "forbidden.html", {})

    def _gone(self) -> web.Response:
        return self._html(410, "gone.html", {"ttl_text": hours_text(self.ttl_hours)})

    def _plain(self, status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(status=status, text=text + "\n", headers={
            **SECURITY_HEADERS, hdrs.CACHE_CONTROL: "no-store", **(headers or {}),
        })

    def _html(self, status: int, template: str, context: dict[str, Any]) -> web.Response:
        body = self.templates.get_template(template).render(**context)
        return web.Response(status=status, text=body, content_type="text/html", charset="utf-8", headers={
            **SECURITY_HEADERS,
            hdrs.CACHE_CONTROL: "no-store",  # a signed page; and it must not outlive its files in any cache
        })


class _RenderedFile(web.FileResponse):
    """A rendered mix (Range requests work, so a player can seek in it); its temporary folder goes once it was sent."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            return await super().prepare(request)
        finally:
            await asyncio.to_thread(shutil.rmtree, Path(self._path).parent, True)


def _writer(response: web.StreamResponse) -> Callable[[bytes], Any]:
    async def write(data: bytes) -> None:
        if data:
            await response.write(data)

    return write


def remaining_text(left: timedelta) -> str:
    """'23 h 59 min', '5 min', 'less than a minute' for a timedelta."""
    minutes = int(left.total_seconds() // 60)
    if minutes < 1:
        return "less than a minute"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
