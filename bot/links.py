"""Signed, expiring download links: HMAC-SHA256 over (job id, file name, expiry in unix seconds).

A link looks like `{public_url}/d/{job_id}/{percent-encoded file name}?e={expires}&s={signature}`;
`bot.web` serves it until `expires`. Nothing is stored server-side: the signature is the permission.

A job's results page, `{public_url}/r/{job_id}?e={expires}&s={signature}`, is signed the same way under its own
domain string, so a page signature can never pass as a file link's (or the reverse).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
from datetime import datetime
from urllib.parse import quote

_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")  # unpadded URL-safe base64 of 32 bytes
_MAX_FILENAME = 255
# Bumping the version invalidates every link ever issued; it also keeps these MACs apart from any other use of the key.
_DOMAIN = "stembot-download-v1"
_PAGE_DOMAIN = "stembot-page-v1"


def valid_job_id(job_id: str) -> bool:
    return _JOB_ID.fullmatch(job_id) is not None


def valid_filename(filename: str) -> bool:
    """One plain path component: no separators, no `.`/`..`, no control characters or lone surrogates."""
    return (
        0 < len(filename) <= _MAX_FILENAME
        and filename not in (".", "..")
        and "/" not in filename
        and "\\" not in filename
        and not any(unicodedata.category(c) in ("Cc", "Cs") for c in filename)
    )


def link_signature(secret_key: str, job_id: str, filename: str, expires: int) -> str:
    """URL-safe base64 (unpadded) HMAC-SHA256 of the link's job id, expiry and file name."""
    # The job id has no newline and the expiry is digits, so putting the free-form name last keeps the message unambiguous.
    return _mac(secret_key, f"{_DOMAIN}\n{job_id}\n{expires}\n{filename}")


def _mac(secret_key: str, message: str) -> str:
    digest = hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign_link(public_url: str, secret_key: str, job_id: str, filename: str, expires_at: datetime) -> str:
    """The download URL for `<data_dir>/files/<job_id>/<filename>`, valid until `expires_at` (timezone-aware)."""
    if not secret_key:
        raise ValueError("cannot sign download links without a secret key")
    if not valid_job_id(job_id) or not valid_filename(filename):
        raise ValueError(f"not a downloadable job file: {job_id!r}/{filename!r}")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    expires = int(expires_at.timestamp())
    signature = link_signature(secret_key, job_id, filename, expires)
    return f"{public_url.rstrip('/')}/d/{job_id}/{quote(filename, safe='')}?e={expires}&s={signature}"


def verify(secret_key: str, job_id: str, filename: str, expires: int, signature: str, now: datetime) -> bool:
    """True if `signature` was made with `secret_key` for exactly these values and `now` is before `expires`."""
    if not secret_key or not valid_job_id(job_id) or not valid_filename(filename):
        return False
    if _SIGNATURE.fullmatch(signature) is None:  # also keeps compare_digest to ASCII, which it requires for str
        return False
    expected = link_signature(secret_key, job_id, filename, expires)
    return hmac.compare_digest(expected, signature) and now.timestamp() < expires


# --- results pages ---------------------------------------------------------------------------------------------


def page_signature(secret_key: str, job_id: str, expires: int) -> str:
    """URL-safe base64 (unpadded) HMAC-SHA256 of a results page's job id and expiry."""
    return _mac(secret_key, f"{_PAGE_DOMAIN}\n{job_id}\n{expires}")


def sign_page_link(public_url: str, secret_key: str, job_id: str, expires_at: datetime) -> str:
    """The results page URL for the job, valid until `expires_at` (timezone-aware; use the file links' expiry)."""
    if not secret_key:
        raise ValueError("cannot sign results pages without a secret key")
    if not valid_job_id(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    expires = int(expires_at.timestamp())
    return f"{public_url.rstrip('/')}/r/{job_id}?e={expires}&s={page_signature(secret_key, job_id, expires)}"


def page_signature_ok(secret_key: str, job_id: str, expires: int, signature: str) -> bool:
    """True if `signature` is the page signature for exactly this job and expiry (whether or not it has expired).

    The server tells a forged link (403) from an expired genuine one (the "files were deleted" page) with this.
    """
    if not secret_key or not valid_job_id(job_id) or _SIGNATURE.fullmatch(signature) is None:
        return False
    return hmac.compare_digest(page_signature(secret_key, job_id, expires), signature)


def verify_page(secret_key: str, job_id: str, expires: int, signature: str, now: datetime) -> bool:
    """True if the page signature is genuine and `now` is before `expires`."""
    return page_signature_ok(secret_key, job_id, expires, signature) and now.timestamp() < expires
