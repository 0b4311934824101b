"""Signed download links and the `stembot web` server, against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from bot.links import link_signature, sign_link, verify
from bot.web import create_app, serve
from stembot.settings import Settings, SettingsError

KEY = "k" * 32
JOB = "job_1-A"
NAME = "My Song (Vocals).mp3"
UNICODE_NAME = "Beyoncé – Déjà Vu (Instrumental) 100% #1 + ß & 日本?.flac"
SECRET = b"TOP SECRET outside the job folder\n"
START = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
EXPIRES = START + timedelta(hours=24)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    job_dir = tmp_path / "data" / "files" / JOB
    job_dir.mkdir(parents=True)
    (job_dir / NAME).write_bytes(bytes(range(256)) * 4)  # 1024 bytes, every offset distinguishable
    (job_dir / UNICODE_NAME).write_bytes(b"fLaC" + bytes(500))
    (job_dir / "result.json").write_text('{"bpm": 128}')
    (job_dir / "secret-link").symlink_to(tmp_path / "data" / "secret.txt")
    (tmp_path / "data" / "files" / "other_job").mkdir()
    # Files a traversal would reach: next to the files dir, at the data root and beside the job folders.
    (tmp_path / "data" / "secret.txt").write_bytes(SECRET)
    (tmp_path / "data" / "files" / "secret.txt").write_bytes(SECRET)
    return tmp_path / "data"


@pytest.fixture
def web_settings(tmp_path: Path, data_dir: Path) -> Settings:
    return Settings(model_dir=tmp_path / "models", data_dir=data_dir, public_url="https://stems.example.com/", secret_key=KEY)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def server(web_settings: Settings, clock: FakeClock):
    server = TestServer(create_app(web_settings, clock=clock), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        yield session


def local(server: TestServer, link: str) -> URL:
    """The signed link's path and query, sent to the test server byte for byte (no client-side re-encoding)."""
    parts = urlsplit(link)
    return URL(f"http://127.0.0.1:{server.port}{parts.path}?{parts.query}", encoded=True)


def link(filename: str = NAME, job_id: str = JOB) -> str:
    return sign_link("https://stems.example.com/", KEY, job_id, filename, EXPIRES)


async def raw_get(server: TestServer, target: str) -> tuple[int, bytes]:
    """Send `target` as the request line unchanged, so no client library normalizes the traversal away."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode("latin-1"))
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


# --- links -------------------------------------------------------------------------------------------------------


def test_link_shape_and_verify():
    url = link()
    parts = urlsplit(url)
    assert url.startswith("https://stems.example.com/d/job_1-A/My%20Song%20%28Vocals%29.mp3?e=")
    query = parse_qs(parts.query)
    expires, signature = int(query["e"][0]), query["s"][0]
    assert expires == int(EXPIRES.timestamp())
    assert verify(KEY, JOB, NAME, expires, signature, START)
    assert not verify(KEY, JOB, NAME, expires, signature, EXPIRES)  # expiry is exclusive
    assert not verify("x" * 32, JOB, NAME, expires, signature, START)
    assert not verify(KEY, JOB, NAME, expires + 1, signature, START)
    assert not verify(KEY, "other_job", NAME, expires, signature, START)
    assert not verify(KEY, JOB, "My Song (Vocals).wav", expires, signature, START)
    assert not verify(KEY, JOB, NAME, expires, signature[:-1] + ("A" if signature[-1] != "A" else "B"), START)
    assert not verify(KEY, JOB, NAME, expires, "é" * 43, START)  # non-ASCII must be refused, not raise


def test_sign_link_refuses_unservable_names_and_naive_times():
    for job_id, filename in [("../x", NAME), (JOB, "../x"), (JOB, "a\\b"), (JOB, ".."), (JOB, "a\x00b"), (JOB, "")]:
        with pytest.raises(ValueError):
            sign_link("https://s", KEY, job_id, filename, EXPIRES)
    with pytest.raises(ValueError):
        sign_link("https://s", KEY, JOB, NAME, datetime(2030, 1, 1))
    with pytest.raises(ValueError):
        sign_link("https://s", "", JOB, NAME, EXPIRES)


# --- serving -----------------------------------------------------------------------------------------------------


async def test_download_exact_bytes_and_headers(server, http, data_dir):
    async with http.get(local(server, link())) as response:
        body = await response.read()
        assert response.status == 200
        assert body == (data_dir / "files" / JOB / NAME).read_bytes()
        assert response.headers["Content-Type"] == "audio/mpeg"
        assert response.headers["Content-Length"] == "1024"
        assert response.headers["Cache-Control"] == "private"
        assert response.headers["Accept-Ranges"] == "bytes"
        assert "filename*=UTF-8''My%20Song%20%28Vocals%29.mp3" in response.headers["Content-Disposition"]
        assert response.headers["Content-Disposition"].startswith("attachment;")

    async with http.head(local(server, link())) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == "1024"
        assert response.headers["Content-Type"] == "audio/mpeg"
        assert await response.read() == b""

    async with http.get(local(server, link("result.json"))) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        assert await response.json() == {"bpm": 128}


async def test_unicode_filename_round_trips(server, http, data_dir):
    url = link(UNICODE_NAME)
    assert " " not in url and "(" not in url and "#" not in urlsplit(url).path
    async with http.get(local(server, url)) as response:
        assert response.status == 200
        assert await response.read() == (data_dir / "files" / JOB / UNICODE_NAME).read_bytes()
        assert response.headers["Content-Type"] == "audio/flac"
        assert f"filename*=UTF-8''{quote(UNICODE_NAME, safe='')}" in response.headers["Content-Disposition"]


@pytest.mark.parametrize(
    ("byte_range", "start", "end"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, 1023), ("bytes=-50", 974, 1023), ("bytes=1000-5000", 1000, 1023)],
)
async def test_range_requests(server, http, data_dir, byte_range, start, end):
    content = (data_dir / "files" / JOB / NAME).read_bytes()
    async with http.get(local(server, link()), headers={"Range": byte_range}) as response:
        assert response.status == 206
        assert await response.read() == content[start : end + 1]
        assert response.headers["Content-Range"] == f"bytes {start}-{end}/1024"
        assert response.headers["Content-Length"] == str(end + 1 - start)


@pytest.mark.parametrize("byte_range", ["bytes=1024-", "bytes=5000-6000", "bytes=-0", "bytes=50-10"])
async def test_unsatisfiable_range_is_416(server, http, byte_range):
    async with http.get(local(server, link()), headers={"Range": byte_range}) as response:
        assert response.status == 416
        assert response.headers["Content-Range"] == "bytes */1024"


async def test_multiple_ranges_get_the_whole_file(server, http, data_dir):
    async with http.get(local(server, link()), headers={"Range": "bytes=0-1,5-6"}) as response:
        assert response.status == 200
        assert await response.read() == (data_dir / "files" / JOB / NAME).read_bytes()


async def test_precompressed_neighbour_is_never_served(server, http, data_dir):
    (data_dir / "files" / JOB / (NAME + ".gz")).write_bytes(b"not the file")
    async with http.get(local(server, link()), headers={"Accept-Encoding": "gzip, br"}) as response:
        assert response.status == 200
        assert "Content-Encoding" not in response.headers
        assert await response.read() == (data_dir / "files" / JOB / NAME).read_bytes()


async def test_healthz(server, http):
    async with http.get(server.make_url("/healthz")) as response:
        assert response.status == 200
        assert await response.text() == "ok"


# --- refusals ----------------------------------------------------------------------------------------------------


async def test_expired_link_is_403(server, http, clock):
    clock.now = EXPIRES - timedelta(seconds=1)
    async with http.get(local(server, link())) as response:
        assert response.status == 200
    clock.now = EXPIRES
    async with http.get(local(server, link())) as response:
        assert response.status == 403
        assert await response.text() == "forbidden"


def _tampered(url: str, *, e: str | None = None, s: str | None = None, path: str | None = None) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update({k: v for k, v in {"e": e, "s": s}.items() if v is not None})
    return f"{parts.scheme}://{parts.netloc}{path or parts.path}?e={query['e']}&s={query['s']}"


async def test_tampered_links_are_403(server, http):
    good = link()
    query = parse_qs(urlsplit(good).query)
    expires, signature = query["e"][0], query["s"][0]
    other_job_signature = parse_qs(urlsplit(link(job_id="other_job")).query)["s"][0]
    bad = [
        _tampered(good, s=("A" if signature[0] != "A" else "B") + signature[1:]),
        _tampered(good, s=""),
        _tampered(good, s="%00" * 43),
        _tampered(good, e=str(int(expires) + 3600)),
        _tampered(good, e="-1"),
        _tampered(good, e="1e99"),
        _tampered(good, path=f"/d/{JOB}/result.json"),  # another file of the same job
        _tampered(good, s=other_job_signature),  # another job's signature for the same file name
        _tampered(good, path=urlsplit(good).path.replace(JOB, "other_job")),  # another job, same file name
        f"https://s{urlsplit(good).path}",  # no query at all
    ]
    for url in bad:
        async with http.get(local(server, url)) as response:
            assert response.status == 403, url
            assert await response.text() == "forbidden"


async def test_signed_link_to_missing_file_is_404(server, http):
    async with http.get(local(server, link("Gone (Vocals).mp3"))) as response:
        assert response.status == 404
        assert await response.text() == "not found"
    async with http.get(local(server, link("x.mp3", job_id="no_such_job"))) as response:
        assert response.status == 404
    # Without a valid signature the same missing file is a plain 403: existence is not revealed.
    async with http.get(local(server, _tampered(link("Gone (Vocals).mp3"), s="A" * 43))) as response:
        assert response.status == 403


def _signed_query(job_id: str, filename: str) -> str:
    """A *valid* signature for any names, bypassing sign_link's checks: the server must still refuse."""
    expires = int(EXPIRES.timestamp())
    return f"e={expires}&s={link_signature(KEY, job_id, filename, expires)}"


@pytest.mark.parametrize(
    "target",
    [
        "/d/job_1-A/..%2F..%2Fsecret.txt",
        "/d/job_1-A/..%2Fsecret.txt",
        "/d/job_1-A/..%2F..%2Fetc%2Fpasswd",
        "/d/..%2Fjob_1-A/x",
        "/d/..%2Ffiles/secret.txt",
        "/d/job_1-A/%2e%2e/secret.txt",
        "/d/job_1-A/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/d/job_1-A/../../secret.txt",
        "/d/job_1-A/..%5C..%5Csecret.txt",
        "/d/job_1-A/..\\..\\secret.txt",
        "/d/job_1-A/%2Fetc%2Fpasswd",
        "/d/job_1-A/secret.txt%00.mp3",
        "/d/job_1-A/%2e%2e",
        "/d/job_1-A/secret-link",  # a symlink inside the job folder pointing outside it
        "/d/%2e%2e/secret.txt",
    ],
)
async def test_traversal_never_escapes_the_job_folder(server, target):
    # Each target is tried unsigned, and with a valid signature for exactly the names the server will decode.
    parts = target.split("/")
    job_id, filename = unquote(parts[2]), unquote("/".join(parts[3:]))
    for query in ("e=1&s=x", _signed_query(job_id, filename)):
        status, body = await raw_get(server, f"{target}?{query}")
        assert status in (400, 403, 404), (target, status)
        assert b"SECRET" not in body and b"root:" not in body
        assert b"secret" not in body.lower() and str(Path.cwd()).encode() not in body


async def test_serve_logs_requests_without_signatures(web_settings, http, caplog):
    # The real entry point, on a free port: access lines must carry the path but never the query string.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    signed = sign_link("https://s", KEY, JOB, NAME, datetime.now(timezone.utc) + timedelta(hours=1))  # real clock here
    url = URL(f"http://127.0.0.1:{port}{urlsplit(signed).path}?{urlsplit(signed).query}", encoded=True)
    signature = url.query["s"]
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        task = asyncio.create_task(serve(web_settings, "127.0.0.1", port))
        try:
            for _ in range(500):  # wait for the listener; a connection refusal is immediate
                try:
                    async with http.get(url) as response:
                        assert response.status == 200
                        break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.01)
            else:
                pytest.fail("serve() never started listening")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert '"GET /d/job_1-A/My Song (Vocals).mp3" 200' in logged
    assert signature not in logged and "s=" not in logged and KEY not in logged


# --- settings ----------------------------------------------------------------------------------------------------


def test_create_app_requires_secret_key(tmp_path):
    for key in ("", "short"):
        settings = Settings(model_dir=tmp_path, data_dir=tmp_path, public_url="https://s", secret_key=key)
        with pytest.raises(SettingsError, match="STEMBOT_SECRET_KEY"):
            create_app(settings)
    with pytest.raises(SettingsError, match="STEMBOT_PUBLIC_URL"):
        create_app(Settings(model_dir=tmp_path, data_dir=tmp_path, public_url="", secret_key=KEY))
