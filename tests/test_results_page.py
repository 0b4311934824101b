"""The results page of `stembot web` (`/r/{job_id}`): real files made with ffmpeg, served by the real app."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import zipfile
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from bot.links import (
    link_signature,
    page_signature,
    sign_link,
    sign_page_link,
    verify,
    verify_page,
)
from bot.web import create_app
from separation_worker.pipeline import safe_title
from stembot.settings import Settings

KEY = "k" * 32
JOB = "job_42-Z"
OTHER_JOB = "other_job"
TITLE = 'Déjà Vu <Live> & "Friends"'
TITLE_WORDS = ("Déjà", "Vu", "Live", "Friends")  # none of these may appear once the files are gone
START = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
EXPIRES = START + timedelta(hours=24)
SECONDS = 6.0
# Shapes that make the waveforms tell the tracks apart (and look like something in the browser screenshots).
VOICE = "0.5*sin(2*PI*440*t)*abs(sin(2*PI*0.4*t))"
BAND = "0.35*sin(2*PI*110*t)*(0.55+0.45*sin(2*PI*2*t))+0.05*sin(2*PI*3520*t)*lt(mod(t,0.5),0.05)"
SOURCES = {  # name -> (aevalsrc expression, codec arguments)
    "vocals.mp3": (VOICE, ["-c:a", "libmp3lame", "-b:a", "320k"]),
    "vocals.flac": (VOICE, ["-c:a", "flac"]),
    "instrumental.mp3": (BAND, ["-c:a", "libmp3lame", "-b:a", "320k"]),
    "instrumental.flac": (BAND, ["-c:a", "flac"]),
    "instrumental.wav": (BAND, ["-c:a", "pcm_s16le"]),
    "original.mp3": (f"{VOICE}+{BAND}", ["-c:a", "libmp3lame", "-b:a", "320k"]),
}


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# --- building a finished job on disk ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audio_sources(tmp_path_factory) -> Path:
    """Real MP3 320 / FLAC / WAV files, made once per module with ffmpeg."""
    folder = tmp_path_factory.mktemp("audio")
    for name, (expr, codec) in SOURCES.items():
        expr = expr.replace(",", "\\,")  # a bare comma would end the filter's arguments
        subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"aevalsrc={expr}|{expr}:s=44100:d={SECONDS}",
             *codec, str(folder / name)],
            check=True,
        )
    return folder


def make_job(files_root: Path, job_id: str, sources: Path, title: str = TITLE) -> dict:
    """A finished job's folder as the worker leaves it (plus leftovers the zip must skip); returns its result.json."""
    job_dir = files_root / job_id
    job_dir.mkdir(parents=True)
    stem_name = safe_title(title)

    def put(source: str, name: str) -> dict:
        shutil.copyfile(sources / source, job_dir / name)
        return {"file": name, "size_bytes": (job_dir / name).stat().st_size}

    def stem(key: str, label: str, formats: tuple[str, ...], lufs: float, raw: bool = False) -> dict:
        files = {fmt: put(f"{key}.{fmt}", f"{stem_name} ({label}).{fmt}") for fmt in formats}
        loudness = {"lufs_before": -20.0, "lufs_after": lufs, "true_peak_before_dbtp": -3.0,
                    "true_peak_after_dbtp": -1.5, "gain_db": 6.0, "limited": False, "silent": False}
        copy = {"raw": put(f"{key}.flac", f"{stem_name} ({label}) (Raw).flac")} if raw else {}
        return {**files["mp3"], "files": files, "silent": False, "loudness": loudness, **copy}

    data = {
        "title": title, "source": "upload", "duration": SECONDS, "sample_rate": 44100, "format": "mp3",
        "stems": {
            "vocals": stem("vocals", "Vocals", ("mp3", "flac"), -14.0, raw=True),
            "instrumental": stem("instrumental", "Instrumental", ("mp3", "flac", "wav"), -14.02),
        },
        "models": [], "device": "cpu", "precision": "fp32", "timings": {},
        "original": put("original.mp3", f"{stem_name} (Original).mp3"),
        "bpm": 128.0, "bpm_confidence": 0.9, "key": "A minor", "camelot": "8A", "key_confidence": 0.8,
    }
    (job_dir / "result.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (job_dir / "incoming").mkdir()
    (job_dir / "incoming" / "upload.mp3").write_bytes(b"the user's upload")
    (job_dir / ".tmp-half-written.mp3").write_bytes(b"partial")
    return data


def expected_result_files(data: dict) -> set[str]:
    names = {f["file"] for s in data["stems"].values() for f in s["files"].values()}
    return names | {data["original"]["file"], "result.json"}


@pytest.fixture
def data_dir(tmp_path: Path, audio_sources: Path) -> Path:
    make_job(tmp_path / "data" / "files", JOB, audio_sources)
    make_job(tmp_path / "data" / "files", OTHER_JOB, audio_sources, title="Someone Else's Song")
    return tmp_path / "data"


@pytest.fixture
def job_data(data_dir: Path) -> dict:
    return json.loads((data_dir / "files" / JOB / "result.json").read_text(encoding="utf-8"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def client(data_dir: Path, clock: FakeClock, tmp_path: Path):
    settings = Settings(model_dir=tmp_path, data_dir=data_dir, public_url="https://stems.example.com", secret_key=KEY)
    async with TestClient(TestServer(create_app(settings, clock=clock), host="127.0.0.1")) as client:
        yield client


def page_path(job_id: str = JOB, expires_at: datetime = EXPIRES) -> str:
    parts = urlsplit(sign_page_link("https://stems.example.com", KEY, job_id, expires_at))
    return f"{parts.path}?{parts.query}"


def url(path: str) -> URL:
    return URL(path, encoded=True)  # as the browser sends it: no client-side re-encoding


class Tags(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, attr: str | None = None) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and (attr is None or attr in a)]

    def plain_text(self) -> str:
        return re.sub(r"\s+", " ", " ".join(self.text))


# --- links -----------------------------------------------------------------------------------------------------


def test_page_link_shape_and_verify():
    link = sign_page_link("https://stems.example.com/", KEY, JOB, EXPIRES)
    parts = urlsplit(link)
    assert link.startswith(f"https://stems.example.com/r/{JOB}?e=")
    query = parse_qs(parts.query)
    expires, signature = int(query["e"][0]), query["s"][0]
    assert expires == int(EXPIRES.timestamp())
    assert verify_page(KEY, JOB, expires, signature, START)
    assert not verify_page(KEY, JOB, expires, signature, EXPIRES)  # expiry is exclusive
    assert not verify_page("x" * 32, JOB, expires, signature, START)
    assert not verify_page(KEY, JOB, expires + 1, signature, START)
    assert not verify_page(KEY, OTHER_JOB, expires, signature, START)
    assert not verify_page(KEY, JOB, expires, "é" * 43, START)
    # A distinct signing context: a page signature is no file link's, not even for an empty file name.
    assert signature != link_signature(KEY, JOB, "", expires)
    assert not verify(KEY, JOB, "result.json", expires, signature, START)
    assert page_signature(KEY, JOB, expires) == signature
    for bad in [lambda: sign_page_link("https://s", KEY, "../x", EXPIRES),
                lambda: sign_page_link("https://s", KEY, JOB, datetime(2030, 1, 1)),
                lambda: sign_page_link("https://s", "", JOB, EXPIRES)]:
        with pytest.raises(ValueError):
            bad()


# --- the page ------------------------------------------------------------------------------------------------------


async def test_page_shows_the_song_players_and_downloads(client, data_dir, job_data):
    response = await client.get(url(page_path()))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    html = await response.text()
    page = Tags(html)
    text = page.plain_text()
    assert TITLE in text and "Déjà Vu &lt;Live&gt; &amp; &#34;Friends&#34;" in html  # autoescaped
    assert "<Live>" not in html
    assert "0:06" in text and "128 BPM · A minor (8A)" in text
    assert "Deleted in" in text and "24 h 0 min" in text and "Jan 2, 12:00 UTC" in text

    audios = {a["data-track"]: a for a in page.find("audio", "data-track")}
    assert list(audios) == ["original", "vocals", "instrumental"]
    assert {a["data-select"] for a in page.find("button", "data-select")} == set(audios)
    assert {a["data-solo"] for a in page.find("button", "data-solo")} == set(audios)
    assert all(button.get("aria-label") or button.get("data-select") for button in page.find("button"))
    assert page.find("button", "data-play")[0]["aria-label"] == "Play"

    # Every download link (and every player source) is a valid per-file link with the page's expiry.
    downloads = {a["data-download"]: a["href"] for a in page.find("a", "data-download")}
    assert set(downloads) == {"original-mp3", "vocals-mp3", "vocals-flac", "vocals-raw", "instrumental-mp3",
                              "instrumental-flac", "instrumental-wav", "all"}
    assert unquote(downloads["vocals-raw"]).split("?")[0].endswith("(Vocals) (Raw).flac")
    files = {d: href for d, href in downloads.items() if d != "all"} | {f"play-{k}": a["src"] for k, a in audios.items()}
    served = set()
    for href in files.values():
        parts = urlsplit(href)
        assert not parts.scheme and not parts.netloc and parts.path.startswith(f"/d/{JOB}/")
        query = parse_qs(parts.query)
        filename = unquote(parts.path.rsplit("/", 1)[1])
        assert int(query["e"][0]) == int(EXPIRES.timestamp())
        assert verify(KEY, JOB, filename, int(query["e"][0]), query["s"][0], START)
        download = await client.get(url(href))
        assert download.status == 200
        assert await download.read() == (data_dir / "files" / JOB / filename).read_bytes()
        served.add(filename)
    # Every result file, and the raw copy (which the zip leaves out: it would double it).
    assert served == expected_result_files(job_data) - {"result.json"} | {job_data["stems"]["vocals"]["raw"]["file"]}
    assert audios["vocals"]["src"].startswith(f"/d/{JOB}/D%C3%A9j%C3%A0%20Vu%20Live") and ".mp3?" in audios["vocals"]["src"]
    assert downloads["all"] == f"/r/{JOB}/all.zip?{urlsplit(page_path()).query}"


async def test_page_is_served_until_expiry_then_says_the_files_were_deleted(client, clock):
    clock.now = EXPIRES - timedelta(seconds=1)
    response = await client.get(url(page_path()))
    assert response.status == 200 and "less than a minute" in await response.text()
    clock.now = EXPIRES
    for path in (page_path(), f"/r/{JOB}/all.zip?{urlsplit(page_path()).query}", f"/r/{JOB}/peaks.json?{urlsplit(page_path()).query}"):
        response = await client.get(url(path))
        assert response.status == 410
        body = await response.text()
        assert "These files were deleted" in body and "24 hours" in body
        assert_no_trace(body)
        assert "Content-Security-Policy" in response.headers


async def test_job_whose_files_were_deleted_gets_the_deleted_page(client, data_dir):
    (data_dir / "files" / JOB / "result.json").unlink()  # the janitor, half-way through
    response = await client.get(url(page_path()))
    assert response.status == 410
    assert_no_trace(await response.text())
    shutil.rmtree(data_dir / "files" / JOB)  # and done
    for path in (page_path(), f"/r/{JOB}/all.zip?{urlsplit(page_path()).query}"):
        response = await client.get(url(path))
        assert response.status == 410
        assert_no_trace(await response.text())


def assert_no_trace(body: str) -> None:
    for word in TITLE_WORDS + (JOB, "Original", "Vocals", ".mp3", "BPM"):
        assert word not in body, word


def _tamper(path: str, *, e: str | None = None, s: str | None = None, job: str | None = None, suffix: str = "") -> str:
    parts = urlsplit(path)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update({k: v for k, v in {"e": e, "s": s}.items() if v is not None})
    return f"/r/{job or JOB}{suffix}?e={query['e']}&s={query['s']}"


async def test_tampered_or_forged_links_get_a_403_that_reveals_nothing(client, clock):
    good = page_path()
    query = parse_qs(urlsplit(good).query)
    expires, signature = query["e"][0], query["s"][0]
    file_link_signature = link_signature(KEY, JOB, "", int(expires))
    bad = [
        _tamper(good, s=("A" if signature[0] != "A" else "B") + signature[1:]),
        _tamper(good, s=""),
        _tamper(good, s="%00" * 43),
        _tamper(good, e=str(int(expires) + 3600)),  # a longer life
        _tamper(good, e=str(int(expires) - 86400)),  # a past expiry: forged, so 403 rather than "deleted"
        _tamper(good, e="-1"),
        _tamper(good, e="1e99"),
        _tamper(good, job=OTHER_JOB),  # this page's signature on another job
        _tamper(good, s=file_link_signature),  # a file link's signature (empty name) is no page signature
        _tamper(good, job="..%2Ffiles"),
        f"/r/{JOB}",
        _tamper(good, s="B" * 43, suffix="/all.zip"),
        _tamper(good, job=OTHER_JOB, suffix="/all.zip"),
        _tamper(good, job=OTHER_JOB, suffix="/peaks.json"),
    ]
    for path in bad:
        response = await client.get(url(path))
        assert response.status == 403, path
        body = await response.text()
        assert "This link isn't valid" in body
        assert_no_trace(body)
        assert OTHER_JOB not in body and "Someone" not in body
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    clock.now = EXPIRES + timedelta(days=3)  # forged stays forged after expiry
    response = await client.get(url(_tamper(good, s="B" * 43)))
    assert response.status == 403


# --- download all ------------------------------------------------------------------------------------------------


async def test_zip_holds_exactly_the_jobs_result_files(client, data_dir, job_data):
    zip_path = f"/r/{JOB}/all.zip?{urlsplit(page_path()).query}"
    response = await client.get(url(zip_path))
    assert response.status == 200
    body = await response.read()
    assert response.headers["Content-Type"] == "application/zip"
    assert response.headers["Content-Length"] == str(len(body))  # the size announced before it was built
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "Stems%29.zip" in disposition
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        assert set(archive.namelist()) == expected_result_files(job_data)
        assert len(archive.namelist()) == len(expected_result_files(job_data))
        for info in archive.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            assert archive.read(info) == (data_dir / "files" / JOB / info.filename).read_bytes()
    head = await client.head(url(zip_path))
    assert head.status == 200 and head.headers["Content-Length"] == str(len(body))
    assert await head.read() == b""


# --- waveforms, assets, headers --------------------------------------------------------------------------------------


async def test_waveform_peaks(client):
    response = await client.get(url(f"/r/{JOB}/peaks.json?{urlsplit(page_path()).query}"))
    assert response.status == 200
    assert response.headers["Cache-Control"].startswith("private, max-age=")
    tracks = (await response.json())["tracks"]
    assert set(tracks) == {"original", "vocals", "instrumental"}
    for levels in tracks.values():
        assert 100 <= len(levels["peak"]) == len(levels["rms"]) <= 1000
        assert all(0 <= r <= p <= 100 for p, r in zip(levels["peak"], levels["rms"]))
        assert max(levels["peak"]) > 20
    # The vocals' slow swell (0.4 Hz) shows: quiet at its start, loud a second later.
    vocals = tracks["vocals"]["peak"]
    assert max(vocals[:10]) < 15 < max(vocals[len(vocals) // 6 : len(vocals) // 3])


async def test_static_assets_are_versioned_and_cacheable(client):
    page = Tags(await (await client.get(url(page_path()))).text())
    assets = [a["href"] for a in page.find("link", "href")] + [a["src"] for a in page.find("script", "src")]
    assert len(assets) == 4 and all(re.fullmatch(r"/static/[a-z.]+\?v=[0-9a-f]{16}", a) for a in assets)
    for asset in assets:
        response = await client.get(url(asset))
        assert response.status == 200
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        etag = response.headers["ETag"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        again = await client.get(url(asset), headers={"If-None-Match": etag})
        assert again.status == 304 and await again.read() == b""
        unversioned = await client.get(url(asset.split("?")[0]))
        assert unversioned.headers["Cache-Control"] == "public, max-age=300" and unversioned.headers["ETag"] == etag
    types = {a.split("?")[0].rsplit("/", 1)[1]: (await client.get(url(a))).headers["Content-Type"] for a in assets}
    assert types == {"results.css": "text/css; charset=utf-8", "noscript.css": "text/css; charset=utf-8",
                     "results.js": "text/javascript; charset=utf-8", "icon.png": "image/png"}
    for missing in ("/static/nope.js", "/static/..%2Fweb.py", "/static/%2e%2e%2f%2e%2e%2fpyproject.toml"):
        assert (await client.get(url(missing))).status == 404


async def test_security_headers_and_csp(client):
    response = await client.get(url(page_path()))
    csp = response.headers["Content-Security-Policy"]
    assert csp.startswith("default-src 'self'")
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "*" not in csp
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    html = await response.text()
    # Nothing the CSP would block: no inline scripts, event handlers or style attributes.
    page = Tags(html)
    assert all(attrs.get("src") for attrs in page.find("script"))
    assert not re.search(r"<[^>]*\s(on[a-z]+|style)\s*=", html, re.IGNORECASE)


async def test_nothing_is_fetched_from_anywhere_else(client):
    response = await client.get(url(page_path()))
    html = await response.text()
    page = Tags(html)
    texts = {"page": html}
    for tag, attr in (("link", "href"), ("script", "src"), ("img", "src"), ("a", "href"), ("audio", "src")):
        for attrs in page.find(tag, attr):
            assert attrs[attr].startswith("/") and not attrs[attr].startswith("//"), attrs[attr]
            if attrs[attr].startswith("/static/"):
                asset = await client.get(url(attrs[attr]))
                if asset.headers["Content-Type"].startswith("text/"):
                    texts[attrs[attr]] = await asset.text()
    assert len(texts) == 4  # the page, its CSS (with and without scripts) and its JS
    origin = str(client.make_url("/")).rstrip("/")
    for name, text in texts.items():
        for found in re.findall(r"https?://[^\s\"'<>)]*", text):
            assert found.startswith(origin), (name, found)
        assert "@import" not in text and "url(" not in text  # CSS pulls in no fonts or images


async def test_download_routes_still_behave(client, data_dir):
    name = f"{safe_title(TITLE)} (Vocals).mp3"
    parts = urlsplit(sign_link("https://stems.example.com", KEY, JOB, name, EXPIRES))
    response = await client.get(url(f"{parts.path}?{parts.query}"), headers={"Range": "bytes=0-99"})
    assert response.status == 206 and await response.read() == (data_dir / "files" / JOB / name).read_bytes()[:100]
    forged = await client.get(url(f"{parts.path}?e={parts.query.split('&')[0][2:]}&s={'A' * 43}"))
    assert forged.status == 403 and await forged.text() == "forbidden"
