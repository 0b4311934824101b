"""A real S3 endpoint over HTTP for tests: moto's standalone server on 127.0.0.1, on a free port.

Talking HTTP to it (rather than patching boto3 in-process) exercises what a MinIO or R2 deployment would: the
endpoint URL, path-style addressing, signing, multipart uploads and presigned URLs fetched without credentials.
"""

from __future__ import annotations

import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer

_READY_TIMEOUT_S = 10.0


def s3_credentials_env() -> dict[str, str]:
    """The environment boto3 needs to talk to the test server (moto accepts any credentials)."""
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def s3_server() -> Iterator[str]:
    """Run a moto S3 server for the duration; yields its endpoint URL ("http://127.0.0.1:<port>")."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    # Werkzeug logs every request at INFO; the tests' output is no place for them.
    werkzeug_log = logging.getLogger("werkzeug")
    old_level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_answering(url)
        yield url
    finally:
        server.stop()
        werkzeug_log.setLevel(old_level)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_answering(url: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to 127.0.0.1, whatever the env
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while True:
        try:
            opener.open(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer will do: it is serving
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the moto S3 server at {url} did not answer within {_READY_TIMEOUT_S} s") from None
            time.sleep(0.05)
