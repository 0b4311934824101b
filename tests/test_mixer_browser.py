"""The practice mixer in real Chromium (Playwright), against the real app: a 6-stem job and a 2-stem one.

Skipped without Chromium, like tests/test_results_page_browser.py; screenshots go to $STEMBOT_TEST_ARTIFACTS.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web

from bot.links import sign_page_link
from bot.web import create_app
from stembot.settings import Settings
from tests import test_results_page
from tests.test_mixer import SIX, make_stems_job
from tests.test_results_page import JOB, KEY, make_job
from tests.test_results_page_browser import CHROMIUM, CHROMIUM_ARGS, _until, artifacts  # noqa: F401 (fixture)

audio_sources = test_results_page.audio_sources
SIX_JOB = "six_stem_job"
MIX_SECONDS = 8.0
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture
async def site(tmp_path: Path, audio_sources: Path):
    files = tmp_path / "data" / "files"
    make_job(files, JOB, audio_sources)
    make_stems_job(files, SIX_JOB, SIX, seconds=MIX_SECONDS)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    origin = f"http://127.0.0.1:{port}"
    settings = Settings(model_dir=tmp_path, data_dir=tmp_path / "data", public_url=origin, secret_key=KEY)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    expires_at = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=24)
    try:
        yield {job: sign_page_link(origin, KEY, job, expires_at) for job in (JOB, SIX_JOB)}
    finally:
        await runner.cleanup()


async def gains(page) -> dict[str, float]:
    return await page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('[data-mix-stem]')]"
        ".map(r => [r.dataset.mixStem, Number(r.dataset.gain)]))"
    )


async def test_mixer_in_chromium(site, artifacts):  # noqa: F811 (the fixture)
    from playwright import async_api

    errors: list[str] = []
    async with async_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            desktop = await browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True,
                                                color_scheme="dark")
            page = await desktop.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(site[SIX_JOB])
            assert await page.locator("[data-mix-stem]").count() == 6
            assert await gains(page) == dict.fromkeys(SIX, 1.0)

            # Every stem plays, together, through the audio graph (an element's own volume stays at 1).
            await page.get_by_role("button", name="Start mixer").click()
            await _until(page, "document.querySelector('[data-mix-audio=vocals]').currentTime > 0.5")
            state = await page.eval_on_selector_all(
                "audio[data-mix-audio]", "els => els.map(a => [a.paused, a.currentTime, a.volume])")
            assert not any(paused for paused, _, _ in state), state
            times = [t for _, t, _ in state]
            assert max(times) - min(times) < 0.15, times
            assert all(volume == 1 for _, _, volume in state)
            assert await page.evaluate("document.querySelector('audio[data-track]').paused")  # the page's player is quiet

            # Mute, solo (solo wins over mute), volume.
            await page.get_by_role("button", name="Mute drums").click()
            assert (await gains(page))["drums"] == 0 and (await gains(page))["bass"] == 1
            await page.get_by_role("button", name="Vocals alone").click()
            assert await gains(page) == {name: float(name == "vocals") for name in SIX}
            await page.get_by_role("button", name="Bass alone").click()
            assert await gains(page) == {name: float(name in ("vocals", "bass")) for name in SIX}
            for name in ("Vocals alone", "Bass alone"):
                await page.get_by_role("button", name=name).click()
            assert await gains(page) == {name: float(name != "drums") for name in SIX}
            await page.get_by_label("Bass volume").fill("50")
            assert (await gains(page))["bass"] == 0.5

            # Tempo: every stem's playback rate, pitch kept; the key note appears with a shift.
            await page.get_by_label("Tempo", exact=True).fill("75")
            rates = await page.eval_on_selector_all("audio[data-mix-audio]", "els => els.map(a => [a.playbackRate, a.preservesPitch])")
            assert rates == [[0.75, True]] * 6
            await page.get_by_label("Key shift in semitones").fill("3")
            assert await page.locator("[data-key-note]").is_visible()

            # A loop from 1 s to 2.5 s: playback stays inside it.
            seek = page.locator("[data-mix-seek]")
            await seek.fill(str(round(1000 * 1.0 / MIX_SECONDS)))
            await page.get_by_role("button", name="Loop from here").click()
            await seek.fill(str(round(1000 * 2.5 / MIX_SECONDS)))
            await page.get_by_role("button", name="Loop to here").click()
            assert await page.get_attribute("[data-loop-toggle]", "aria-pressed") == "true"
            # The points are where playback was at each click: a moment after each seek, on a busy machine more.
            href = await page.get_attribute("[data-mix-download=mp3]", "href")
            query = {k: v[0] for k, v in parse_qs(urlsplit(href).query).items()}
            start, end = float(query["start"]), float(query["end"])
            assert start == pytest.approx(1.0, abs=0.25) and end == pytest.approx(2.5, abs=0.25)
            seen = []
            for _ in range(30):  # 3 s at 0.75×: more than one pass through the 1.5 s loop
                seen.append(await page.evaluate("document.querySelector('[data-mix-audio=vocals]').currentTime"))
                await page.wait_for_timeout(100)
            assert all(start - 0.1 < t < end + 0.15 for t in seen), (start, end, seen)
            assert any(later < earlier for earlier, later in zip(seen, seen[1:])), seen  # it went round

            # The download carries every setting, and the server renders it.
            assert {k: query[k] for k in ("gain.drums", "gain.bass", "gain.vocals", "tempo", "semitones")} == {
                "gain.drums": "0.00", "gain.bass": "0.50", "gain.vocals": "1.00", "tempo": "0.75", "semitones": "3"}
            assert await page.locator("[data-mix-download=mp3]").inner_text() == "This loop · MP3"
            async with page.expect_download() as info:
                await page.click("[data-mix-download=mp3]")
            download = await info.value
            assert download.suggested_filename == "Night Drive (My Mix).mp3"
            assert Path(await download.path()).stat().st_size > 10_000

            # "Hear it rendered" plays the server's render (with the key shift) and stops the live mixer.
            await page.get_by_role("button", name="Hear it rendered").click()
            await _until(page, "document.querySelector('[data-mix-status]').textContent.startsWith('Rendered in')")
            print(f"\nrendered preview: {await page.inner_text('[data-mix-status]')}")
            assert await page.evaluate("document.querySelector('[data-mix-audio=vocals]').paused")
            await page.evaluate("document.querySelector('[data-mix-preview]').pause()")

            await page.evaluate("window.scrollTo(0, 0)")
            await page.wait_for_timeout(200)
            shot = artifacts / "mixer-desktop-6-stems.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot (mixer, desktop): {shot}")

            # Two stems: two rows, no full mix among them.
            await page.goto(site[JOB])
            rows = await page.eval_on_selector_all("[data-mix-stem]", "els => els.map(r => r.dataset.mixStem)")
            assert rows == ["vocals", "instrumental"]

            # A phone: everything by touch, nothing wider than the screen.
            phone = await browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                              is_mobile=True, has_touch=True, color_scheme="dark")
            small = await phone.new_page()
            small.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            for job, name in ((SIX_JOB, "6-stems"), (JOB, "2-stems")):
                await small.goto(site[job])
                first = await small.eval_on_selector("[data-mix-stem]", "r => r.dataset.mixStem")
                await small.get_by_role("button", name="Start mixer").tap()
                await _until(small, f"document.querySelector('[data-mix-audio={first}]').currentTime > 0.3")
                await small.get_by_role("button", name=f"Mute {first.replace('_', ' ')}").tap()
                assert (await gains(small))[first] == 0
                await small.get_by_label("Tempo", exact=True).fill("125")
                assert await small.eval_on_selector(f"audio[data-mix-audio={first}]", "a => a.playbackRate") == 1.25
                await small.get_by_role("button", name="Stop mixer").tap()
                overflow = await small.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, f"the page scrolls sideways on a phone ({name})"
                box = await small.locator("[data-mute]").first.bounding_box()
                assert box["height"] >= 40 and box["width"] >= 40  # a thumb-sized target
                await small.evaluate("window.scrollTo(0, 0)")
                shot = artifacts / f"mixer-phone-{name}.png"
                await small.screenshot(path=str(shot), full_page=True)
                print(f"screenshot (mixer, phone, {name}): {shot}")
        finally:
            await browser.close()
    assert not errors, errors
