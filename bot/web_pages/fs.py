"""Job file lookups shared by the `/d/` download links and the results pages."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote


def locate(files_root: Path, job_id: str, filename: str) -> Path | None:
    """The regular file `files_root/job_id/filename`, or None; whatever it resolves to must be in that folder."""
    try:
        root = files_root.resolve(strict=True)
        job_dir = (root / job_id).resolve(strict=True)
        path = (job_dir / filename).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop
        return None
    # The names were validated already; this also refuses symlinks that lead elsewhere.
    if job_dir.parent != root or path.parent != job_dir or not path.is_file():
        return None
    return path


def attachment(filename: str) -> str:
    """A Content-Disposition that saves the response as `filename`."""
    # RFC 6266: modern clients take the exact UTF-8 `filename*`, old ones an ASCII approximation.
    fallback = "".join(c if c.isascii() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
