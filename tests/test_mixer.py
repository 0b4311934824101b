"""The practice mixer's server side: `GET /r/{job}/mix.<fmt>` renders the chosen gains, tempo and key with ffmpeg.

Each stem is a sine at its own frequency, so what a mix holds can be read off its spectrum.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.web import create_app
from bot.web_pages import mix
from bot.web_pages.mix import MIX_STEMS, MixBusy, Renderer, mix_sources
from separation_worker.contract.manifest import Manifest
from separation_worker.models.modes import MODES
from separation_worker.pipeline import safe_title
from stembot.settings import Settings
from tests.test_results_page import EXPIRES, KEY, START, FakeClock, Tags, page_path, url

SR = 44100
SECONDS = 3.0
LEVEL = 0.1
# stem -> (frequency, the loudness gain the worker applied to its file): mixing undoes the gain.
SIX = {"vocals": (440, 6.0), "drums": (150, 0.0), "bass": (110, -3.0), "guitar": (330, 2.0), "piano": (523, 0.0),
       "other": (700, 4.0)}
KARAOKE = {"lead_vocals": (440, 0.0), "backing_vocals": (330, 0.0), "instrumental": (110, 0.0),
           "instrumental_backing": (220, 0.0)}
TITLE = "Night Drive"
SIX_JOB, KARAOKE_JOB = "six_stems", "karaoke_job"


def make_stems_job(files_root: Path, job_id: str, stems: dict[str, tuple[float, float]], title: str = TITLE,
                   mode: str = "stems", seconds: float = SECONDS) -> dict:
    """A finished job whose stems are sines (MP3 to play, FLAC to render), each written `gain_db` louder."""
    job_dir = files_root / job_id
    job_dir.mkdir(parents=True)
    base = safe_title(title)
    entries = {}
    for name, (freq, gain_db) in stems.items():
        amplitude = LEVEL * 10 ** (gain_db / 20)
        files = {}
        for fmt, codec in (("mp3", ["-c:a", "libmp3lame", "-b:a", "192k"]), ("flac", ["-c:a", "flac"])):
            path = job_dir / f"{base} ({name}).{fmt}"
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
                            f"aevalsrc={amplitude:.6f}*sin(2*PI*{freq}*t):s={SR}:d={seconds}",
                            "-ac", "2", *codec, str(path)], check=True)
            files[fmt] = {"file": path.name, "size_bytes": path.stat().st_size}
        loudness = {"lufs_before": -20.0, "lufs_after": -20.0 + gain_db, "true_peak_before_dbtp": -3.0,
                    "true_peak_after_dbtp": -3.0 + gain_db, "gain_db": gain_db, "limited": False, "silent": False}
        entries[name] = {**files["mp3"], "files": files, "silent": False, "loudness": loudness}
    data = {
        "title": title, "source": "upload", "duration": seconds, "sample_rate": SR, "format": "mp3", "mode": mode,
        "stems": entries, "models": [], "device": "cpu", "precision": "fp32", "timings": {},
        "bpm": 120.0, "bpm_confidence": 0.9, "key": "C major", "camelot": "8B", "key_confidence": 0.8,
    }
    (job_dir / "result.json").write_text(json.dumps(data), encoding="utf-8")
    return data


@pytest.fixture(scope="module")
def stems_root(tmp_path_factory) -> Path:
    """Made once per module (the routes only read them)."""
    root = tmp_path_factory.mktemp("mixer") / "data"
    make_stems_job(root / "files", SIX_JOB, SIX)
    make_stems_job(root / "files", KARAOKE_JOB, KARAOKE, mode="karaoke")
    return root


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def client(stems_root: Path, clock: FakeClock, tmp_path: Path):
    settings = Settings(model_dir=tmp_path, data_dir=stems_root, public_url="https://stems.example.com", secret_key=KEY)
    async with TestClient(TestServer(create_app(settings, clock=clock), host="127.0.0.1")) as client:
        yield client


def mix_path(job: str = SIX_JOB, fmt: str = "wav", **params: object) -> str:
    query = urlsplit(page_path(job)).query
    extra = "".join(f"&{k.replace('__', '.')}={v}" for k, v in params.items())
    return f"/r/{job}/mix.{fmt}?{query}{extra}"


def only(stem: str) -> dict[str, float]:
    return {f"gain__{name}": float(name == stem) for name in SIX}


async def decoded(response) -> np.ndarray:
    """The response body as mono float samples at SR."""
    body = await response.read()
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", "pipe:0", "-ac", "1", "-ar", str(SR),
                          "-f", "f32le", "pipe:1"], input=body, capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<f4")


def spectrum(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    magnitude = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / SR), magnitude


def dominant(samples: np.ndarray) -> float:
    freqs, magnitude = spectrum(samples)
    return float(freqs[np.argmax(magnitude)])


def share(samples: np.ndarray, freq: float) -> float:
    """How much of the signal's energy lies within ±5 Hz of `freq`."""
    freqs, magnitude = spectrum(samples)
    power = magnitude**2
    return float(power[np.abs(freqs - freq) <= 5].sum() / power.sum())


# --- what the mixer offers -------------------------------------------------------------------------------------------


def test_mix_stems_are_the_modes_mixes():
    assert MIX_STEMS == {name for mode in MODES.values() for name, _ in mode.mixes}


def test_mixable_stems_are_the_partition_with_their_balance(stems_root):
    six = Manifest.from_json((stems_root / "files" / SIX_JOB / "result.json").read_text())
    sources = mix_sources(six)
    assert [s.name for s in sources] == list(SIX)
    assert all(s.render_file.endswith(".flac") and s.play_file.endswith(".mp3") for s in sources)
    assert sources[0].balance == pytest.approx(10 ** (-6 / 20))
    karaoke = Manifest.from_json((stems_root / "files" / KARAOKE_JOB / "result.json").read_text())
    assert [s.name for s in mix_sources(karaoke)] == list(MODES["karaoke"].parts)


async def test_page_has_a_mixer_row_per_partition_stem(client):
    for job, names, mode in ((SIX_JOB, list(SIX), "Full stems"),
                             (KARAOKE_JOB, ["lead_vocals", "backing_vocals", "instrumental"], "Karaoke")):
        page = Tags(await (await client.get(url(page_path(job)))).text())
        assert mode in page.plain_text()  # the page names the mode
        rows = page.find("div", "data-mix-stem")
        assert [r["data-mix-stem"] for r in rows] == names
        assert [a["data-mix-audio"] for a in page.find("audio", "data-mix-audio")] == names
        link = page.find("a", "data-mix-download")[0]["href"]
        assert link.startswith(f"/r/{job}/mix.mp3?e=")


# --- the render ---------------------------------------------------------------------------------------------------------


async def test_muting_all_but_one_stem_gives_that_stem_at_its_own_level(client):
    response = await client.get(url(mix_path(**only("bass"))))
    assert response.status == 200, await response.text()
    samples = await decoded(response)
    assert abs(len(samples) / SR - SECONDS) < 0.05
    assert dominant(samples) == pytest.approx(110, abs=2)
    assert share(samples, 110) > 0.99
    # The file was written 3 dB quieter than the song had it; the mix undoes that.
    assert np.abs(samples[SR // 2 : -SR // 2]).max() == pytest.approx(LEVEL, rel=0.05)


async def test_unity_gains_sum_every_stem_once(client):
    samples = await decoded(await client.get(url(mix_path())))
    for name, (freq, _) in SIX.items():
        assert share(samples, freq) == pytest.approx(1 / 6, abs=0.03), name
    half = await decoded(await client.get(url(mix_path(gain__vocals=0.5))))
    ratio = share(half, 440) / share(half, 150)
    assert ratio == pytest.approx(0.25, rel=0.1)  # half the amplitude is a quarter of the power


@pytest.mark.parametrize("rubberband", [True, False], ids=["rubberband", "asetrate-atempo"])
async def test_tempo_keeps_the_pitch_and_semitones_move_it(client, monkeypatch, rubberband):
    if rubberband and not mix.has_rubberband():
        pytest.skip("this ffmpeg has no rubberband filter")
    monkeypatch.setattr(mix, "_RUBBERBAND", rubberband)
    slow = await decoded(await client.get(url(mix_path(tempo=0.5, **only("vocals")))))
    assert len(slow) / SR == pytest.approx(2 * SECONDS, rel=0.02)
    assert dominant(slow) == pytest.approx(440, rel=0.01)
    octave = await decoded(await client.get(url(mix_path(semitones=12, **only("vocals")))))
    assert len(octave) / SR == pytest.approx(SECONDS, rel=0.02)
    assert dominant(octave) == pytest.approx(880, rel=0.01)
    both = await decoded(await client.get(url(mix_path(tempo=1.25, semitones=-5, **only("guitar")))))
    assert len(both) / SR == pytest.approx(SECONDS / 1.25, rel=0.02)
    assert dominant(both) == pytest.approx(330 * 2 ** (-5 / 12), rel=0.01)


async def test_a_region_and_the_download_name(client):
    response = await client.get(url(mix_path(fmt="mp3", start=0.5, end=2.0)))
    assert response.status == 200
    assert response.headers["Content-Type"] == "audio/mpeg"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="Night Drive (My Mix).mp3"')
    assert response.headers["Cache-Control"] == "private, no-store"
    samples = await decoded(response)
    assert len(samples) / SR == pytest.approx(1.5, abs=0.06)  # MP3 adds a frame or so of padding


# --- refusals --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "message"), [
    (mix_path(fmt="ogg"), "Unknown format 'ogg'"),
    (mix_path(gain__nope=1), "no stem 'nope'"),
    (mix_path(KARAOKE_JOB, gain__instrumental_backing=0), "'instrumental_backing' is a sum of other stems"),
    (mix_path(gain__vocals=2.5), "gain.vocals must be between 0 and 2"),
    (mix_path(gain__vocals="-0"), None),  # fine: -0 is 0
    (mix_path(gain__vocals="nan"), "between 0 and 2"),
    (mix_path(gain__vocals="loud"), "gain.vocals must be a number"),
    (mix_path(tempo=2), "tempo must be between 0.5 and 1.5"),
    (mix_path(tempo="0x1"), "tempo must be a number"),
    (mix_path(semitones=1.5), "semitones must be a whole number between -12 and 12"),
    (mix_path(semitones=13), "between -12 and 12"),
    (mix_path(start=2, end=1), "start < end"),
    (mix_path(end=99), "end must be between 0 and 3"),
    (mix_path(volume=1), "Unknown parameter 'volume'"),
    (mix_path(tempo=1) + "&tempo=1.2", "'tempo' is given more than once"),
    (mix_path(**{f"gain__{name}": 0 for name in SIX}), "Every stem is muted"),
])
async def test_bad_parameters_get_a_400_that_says_why(client, path, message):
    response = await client.get(url(path))
    if message is None:
        assert response.status == 200
        return
    assert response.status == 400
    assert message in await response.text()
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]


async def test_an_expired_or_forged_mix_link_is_the_pages(client, clock):
    forged = mix_path().replace("&s=", "&s=A", 1)
    assert (await client.get(url(forged))).status == 403
    clock.now = EXPIRES
    for path in (mix_path(), mix_path(tempo=9)):  # expiry wins over bad parameters
        response = await client.get(url(path))
        assert response.status == 410
        assert "These files were deleted" in await response.text()
    clock.now = EXPIRES - timedelta(seconds=1)
    assert (await client.get(url(mix_path(**only("drums"))))).status == 200


# --- the renderer --------------------------------------------------------------------------------------------------------


async def test_renders_are_capped_and_a_cancelled_one_stops_ffmpeg(tmp_path):
    renderer = Renderer(parallel=1, queued=1)
    marker = tmp_path / "pid"
    slow = ["sh", "-c", f"echo $$ > {marker}; exec sleep 5"]
    first = asyncio.create_task(renderer.render(slow))
    await asyncio.sleep(0.2)
    second = asyncio.create_task(renderer.render(["true"]))  # waits for the slot
    await asyncio.sleep(0.05)
    with pytest.raises(MixBusy):
        await renderer.render(["true"])  # one running, one waiting: full
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    pid = int(marker.read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert await asyncio.wait_for(second, 2) is True
    assert await renderer.render(["false"]) is False
