"""The results page in a real browser: headless Chromium (the system's), driven by Playwright, against the real app.

Skipped only when no Chromium is installed (`apt-get install chromium chromium-driver`, as scripts/setup.sh does).
Screenshots (desktop and phone) go to $STEMBOT_TEST_ARTIFACTS, else to pytest's tmp dir; their paths are printed.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiohttp import web

from bot.links import sign_page_link
from bot.web import create_app
from stembot.settings import Settings
from tests import test_results_page
from tests.test_results_page import (
    JOB,
    KEY,
    SECONDS,
    TITLE,
    expected_result_files,
    make_job,
)

audio_sources = test_results_page.audio_sources  # the same module-scoped fixture: real files made with ffmpeg

CHROMIUM = os.environ.get("STEMBOT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--mute-audio",
]
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("STEMBOT_TEST_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def site(tmp_path: Path, audio_sources: Path):
    """The real `stembot web` app on a free 127.0.0.1 port, recording each request's Range header and status."""
    data = make_job(tmp_path / "data" / "files", JOB, audio_sources)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    origin = f"http://127.0.0.1:{port}"
    settings = Settings(model_dir=tmp_path, data_dir=tmp_path / "data", public_url=origin, secret_key=KEY)
    seen: list[tuple[str, str | None, int]] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        # On prepare, not in a middleware: a file response only settles on 200 or 206 as it is sent.
        seen.append((request.path, request.headers.get("Range"), response.status))

    app = create_app(settings)  # the real clock: the browser's countdown runs against it
    app.on_response_prepare.append(record)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    expires_at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=24)
    try:
        yield {"url": sign_page_link(origin, KEY, JOB, expires_at), "seen": seen, "data": data,
               "files": tmp_path / "data" / "files" / JOB}
    finally:
        await runner.cleanup()


async def test_results_page_in_chromium(site, artifacts):
    # A dev dependency, imported here: machines without a browser need neither.
    from playwright import async_api

    errors: list[str] = []
    async with async_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            desktop = await browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page = await desktop.new_page()
            # CSP violations and script errors surface as console errors.
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            # Media elements cancel their own loads once they have what they need (net::ERR_ABORTED): not a failure.
            page.on("requestfailed", lambda r: errors.append(f"{r.failure}: {r.url}") if "ABORTED" not in (r.failure or "") else None)
            await page.goto(site["url"])
            assert await page.title() == f"{TITLE} · StemBot"
            await _players_loaded(page)
            durations = await page.eval_on_selector_all("audio[data-track]", "els => els.map(a => a.duration)")
            assert len(durations) == 3 and all(abs(d - SECONDS) < 0.2 for d in durations), durations

            # Seeking through the UI's slider, on the full mix.
            assert await _active(page) == "original"
            await page.locator("[data-seek]").fill("500")
            await _until(page, "!document.querySelector('audio[data-track=original]').seeking")
            assert abs(await _time(page, "original") - SECONDS / 2) < 0.05
            await page.wait_for_timeout(200)
            assert abs(await _time(page, "original") - SECONDS / 2) < 0.05  # it sticks
            assert any(p.startswith(f"/d/{JOB}/") and r and s == 206 for p, r, s in site["seen"]), site["seen"]

            # Solo / mix keeps the position, paused...
            await page.get_by_role("button", name="Vocals", exact=True).click()
            assert await _active(page) == "vocals"
            assert abs(await _time(page, "vocals") - SECONDS / 2) < 0.05
            await page.get_by_role("button", name="Solo vocals").click()  # solo again: back to the mix
            assert await _active(page) == "original"
            assert abs(await _time(page, "original") - SECONDS / 2) < 0.05
            # ...and playing: the new source picks up where the old one was.
            await page.get_by_role("button", name="Play").click()
            await _until(page, "document.querySelector('audio[data-track=original]').currentTime > 3.3")
            await page.keyboard.press("s")  # back to the last soloed stem
            assert await _active(page) == "vocals"
            state = await page.evaluate(
                "[...document.querySelectorAll('audio[data-track]')].map(a => [a.dataset.track, a.paused, a.currentTime])"
            )
            position = {k: (paused, t) for k, paused, t in state}
            assert not position["vocals"][0] and position["original"][0] and position["instrumental"][0], state
            assert position["vocals"][1] >= position["original"][1] - 0.05, state
            await page.get_by_role("button", name="Pause").click()

            # Downloads: one stem, then everything.
            name = site["data"]["stems"]["vocals"]["files"]["flac"]["file"]
            async with page.expect_download() as info:
                await page.click("[data-download=vocals-flac]")
            download = await info.value
            assert download.suggested_filename == name
            assert Path(await download.path()).read_bytes() == (site["files"] / name).read_bytes()
            async with page.expect_download() as info:
                await page.click("[data-download=all]")
            with zipfile.ZipFile(io.BytesIO(Path(await (await info.value).path()).read_bytes())) as archive:
                assert set(archive.namelist()) == expected_result_files(site["data"])

            # Screenshots mid-song with the vocals soloed, on a desktop (dark and light)...
            await page.get_by_role("button", name="Vocals", exact=True).click()
            await page.locator("[data-seek]").fill("380")
            await page.evaluate("window.scrollTo(0, 0)")
            await page.mouse.move(0, 0)
            for scheme in ("dark", "light"):
                await page.emulate_media(color_scheme=scheme)
                await page.wait_for_timeout(300)  # let the cards' colour transitions finish
                shot = artifacts / f"results-desktop-{scheme}.png"
                await page.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot (desktop, {scheme}): {shot}")

            # ...and on a phone.
            phone = await browser.new_context(
                viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True,
                color_scheme="dark",
            )
            small = await phone.new_page()
            small.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await small.goto(site["url"])
            await _players_loaded(small)
            wave = small.locator("[data-wave=vocals]")  # a tap half-way along a waveform: that track, from there
            await wave.tap(position={"x": (await wave.bounding_box())["width"] / 2, "y": 30})
            await _until(small, "document.querySelector('[data-player]').dataset.active === 'vocals'")
            assert abs(await _time(small, "vocals") - SECONDS / 2) < 0.1
            await small.get_by_role("button", name="Instrumental", exact=True).tap()
            await small.locator("[data-seek]").fill("620")
            overflow = await small.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, "the page scrolls sideways on a phone"
            shot = artifacts / "results-phone.png"
            await small.screenshot(path=str(shot), full_page=True)
            print(f"screenshot (phone): {shot}")

            # With scripts off, every track still plays in the browser's own player.
            plain = await (await browser.new_context(java_script_enabled=False)).new_page()
            await plain.goto(site["url"])
            assert await plain.locator("audio[data-track]").count() == 3
            assert all([await a.is_visible() for a in await plain.locator("audio[data-track]").all()])
            assert not await plain.locator("[data-transport]").is_visible()
        finally:
            await browser.close()
    assert not errors, errors
    external = [p for p, _, _ in site["seen"] if not p.startswith(("/r/", "/d/", "/static/"))]
    assert not external, external


async def _until(page, expression: str, timeout_s: float = 10.0) -> None:
    """Poll `expression` until true. (`wait_for_function` evaluates strings with eval, which the page's CSP forbids.)"""
    for _ in range(int(timeout_s / 0.05)):
        if await page.evaluate(expression):
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {expression}")


async def _players_loaded(page) -> None:
    await _until(
        page,
        "[...document.querySelectorAll('audio[data-track]')].every(a => a.readyState >= 1 && a.duration > 0)"
        " && document.querySelector('[data-player]').dataset.waveforms === 'ready'",
    )


async def _active(page) -> str:
    return await page.eval_on_selector("[data-player]", "el => el.dataset.active")


async def _time(page, track: str) -> float:
    return await page.eval_on_selector(f"audio[data-track={track}]", "a => a.currentTime")
