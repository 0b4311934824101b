"""The short cause of a failed connection, from anywhere in an exception's chain.

Libraries wrap the socket error in their own exceptions with wordier messages (urllib's URLError, a
connection pool's MaxRetryError, redis' ConnectionError); an operator wants "Connection refused".
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator


def network_cause(exc: BaseException) -> str | None:
    """"Connection refused", "timed out", a DNS or TLS failure; None when the chain holds no network error."""
    for error in causes(exc):
        if isinstance(error, socket.gaierror):
            return f"cannot resolve the host name: {error.strerror}"
        if isinstance(error, TimeoutError) or "timeout" in type(error).__name__.lower():
            return "timed out"
        # Before the errno test: an SSLError's errno is an OpenSSL code, not an OS one.
        if isinstance(error, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted: {error.verify_message or error.reason}"
        if isinstance(error, ssl.SSLError):
            return f"TLS failed: {error.reason or type(error).__name__}"
        if isinstance(error, OSError) and error.errno and error.errno > 0:
            return os.strerror(error.errno)
    return None


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what it was raised from or during, then theirs; also urllib's `reason` exceptions."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
        following = current.__cause__ or current.__context__
        if following is not None:
            pending.append(following)
