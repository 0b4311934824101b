"""What the `/d/` download links and the results pages share (paths come from `FileStore`, not from here)."""

from __future__ import annotations

from urllib.parse import quote


def attachment(filename: str) -> str:
    """A Content-Disposition that saves the response as `filename`."""
    # RFC 6266: modern clients take the exact UTF-8 `filename*`, old ones an ASCII approximation.
    fallback = "".join(c if c.isascii() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
