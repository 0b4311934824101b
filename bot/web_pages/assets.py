"""Templates and static assets, both shipped inside the `bot` package and served by `stembot web` itself.

Assets are read once at start-up and served from memory under versioned URLs (`/static/app.js?v=<hash>`): a
request with the current version may be cached for a year, any other gets a short max-age; all carry an ETag.
Only files found in the folder at start-up can be served, so no request path ever reaches the file system.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2
from aiohttp import hdrs, web

PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
STATIC_DIR = PACKAGE_DIR / "static"
STATIC_PREFIX = "/static/"

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".png": "image/png",
    ".woff2": "font/woff2",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "public, max-age=300"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    version: str  # first 16 hex digits of the SHA-256 of the body

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


class StaticAssets:
    def __init__(self, folder: Path = STATIC_DIR) -> None:
        self._assets: dict[str, Asset] = {}
        for path in sorted(folder.iterdir()):
            if path.is_file() and _NAME.fullmatch(path.name) and path.suffix in _TYPES:
                body = path.read_bytes()
                self._assets[path.name] = Asset(body, _TYPES[path.suffix], hashlib.sha256(body).hexdigest()[:16])

    def url(self, name: str) -> str:
        """The versioned URL of an asset (templates call this as `static(name)`); unknown names fail loudly."""
        return f"{STATIC_PREFIX}{name}?v={self._assets[name].version}"

    def names(self) -> list[str]:
        return list(self._assets)

    async def handle(self, request: web.Request) -> web.Response:
        asset = self._assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound()
        headers = {
            hdrs.CACHE_CONTROL: IMMUTABLE if request.query.get("v") == asset.version else REVALIDATE,
            hdrs.ETAG: asset.etag,
            "X-Content-Type-Options": "nosniff",
        }
        if asset.etag in request.headers.get(hdrs.IF_NONE_MATCH, ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, headers={**headers, hdrs.CONTENT_TYPE: asset.content_type})


def template_environment(assets: StaticAssets) -> jinja2.Environment:
    """Jinja2 with autoescaping on for every template (titles come from users' files and links)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = assets.url
    return env
