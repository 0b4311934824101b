"""The Telegram bot end to end: real python-telegram-bot against a fake Bot API, real Redis, a real worker."""

import asyncio
import sqlite3
import subprocess

import pytest

from bot.telegram import TelegramBot
from separation_worker import audio_io
from stembot.settings import Settings
from storage.database import DATABASE_FILENAME
from tests.conftest import music, write_audio
from tests.service_support import RedisDb, flush_test_redis, service_env, start_worker
from tests.support.fake_telegram import FakeTelegram

TOKEN = "123456:TEST-token"
REDIS_DB = RedisDb.TELEGRAM
ALICE, ADMIN = 1001, 42


@pytest.fixture
async def fake():
    async with FakeTelegram(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def settings(tmp_path, model_dir, fake):
    await flush_test_redis(REDIS_DB)
    env = service_env(tmp_path / "data", model_dir, redis_db=REDIS_DB, TELEGRAM_BOT_TOKEN=TOKEN,
                      TELEGRAM_API_BASE_URL=fake.url, TELEGRAM_ADMIN_IDS=str(ADMIN))
    return Settings.from_env(env)


@pytest.fixture
async def bot(settings):
    bot = TelegramBot(settings, edit_interval_s=0.0, poll_timeout_s=1)
    await bot.start()
    yield bot
    await bot.stop()


@pytest.fixture
async def worker(settings, quick_engine):
    running = await start_worker(settings, quick_engine)
    yield running
    await running.stop()


@pytest.fixture
def song(tmp_path) -> bytes:
    tags = ("-metadata", "title=Night Drive", "-metadata", "artist=The Midnight")
    return write_audio(tmp_path / "song.mp3", music(3.0, level=0.4), extra_args=tags).read_bytes()


def audio_messages(fake, chat_id):
    return [m for m in fake.messages(chat_id) if m.audio is not None or m.file_bytes and m.title]


async def wait_for_summary(fake, chat_id, timeout=120):
    """Until the summary is sent and the status message says done."""

    def finished():
        messages = fake.messages(chat_id)
        return any("BPM" in (m.text or "") for m in messages) and any(m.edits[-1].startswith("✅") for m in messages)

    return await fake.wait_for(finished, timeout=timeout)


def write_bytes(tmp_path, data: bytes, name: str):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def decode_bytes(tmp_path, data: bytes, name: str):
    path = tmp_path / name
    path.write_bytes(data)
    return audio_io.decode(path, 600).samples


async def test_audio_in_stems_out(fake, bot, worker, song, tmp_path):
    fake.send_audio(ALICE, song, filename="song.mp3")
    await wait_for_summary(fake, ALICE)
    messages = fake.messages(ALICE)
    status = messages[0]
    assert status.edits[0].startswith("📥")
    assert any("In the queue" in e for e in status.edits)
    order = ["📥", "⏳", "⬇️", "🎛", "🎼", "📦", "📤", "✅"]
    seen = [next(i for i, p in enumerate(order) if e.startswith(p)) for e in status.edits]
    assert seen == sorted(seen) and seen[-1] == len(order) - 1

    audios = [m for m in messages if m.file_bytes]
    # Titled and performed as the song's tags say, like the files themselves
    assert [m.title for m in audios] == ["Night Drive (Vocals)", "Night Drive (Instrumental)"]
    for m in audios:
        assert m.performer == "The Midnight"
        written = audio_io.song_tags(audio_io.probe(write_bytes(tmp_path, m.file_bytes, m.filename)))
        assert written == ("The Midnight", m.title)
        samples = decode_bytes(tmp_path, m.file_bytes, m.filename)
        assert samples.shape[0] == 2 and samples.shape[1] == pytest.approx(3 * 44100, abs=2048)
    summary = next(m for m in messages if "BPM" in (m.text or ""))
    assert "Night Drive" in summary.text and "Lossless downloads" in summary.text and ".flac" in summary.text
    assert "/r/" in summary.text  # the results page


async def test_link_in_stems_out(fake, bot, worker, song, http_server):
    root, base = http_server
    (root / "track.mp3").write_bytes(song)
    fake.send_text(ALICE, f"please separate {base}/track.mp3")
    await wait_for_summary(fake, ALICE)
    assert len([m for m in fake.messages(ALICE) if m.file_bytes]) == 2


async def test_voice_note_and_video_are_accepted(fake, bot, worker, tmp_path):
    """A voice note (Opus in Ogg) and a video each come back as two playable stems and a summary."""
    voice = write_audio(tmp_path / "voice.ogg", music(2.0, seed=1, level=0.4), extra_args=("-c:a", "libopus"))
    video = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10:duration=2", "-f", "lavfi",
                    "-i", "sine=330:duration=2", "-shortest", "-c:v", "mpeg4", "-c:a", "aac", str(video)], check=True)
    bob = 1002  # a second user: a Free user has one song in flight at a time
    fake.send_voice(ALICE, voice.read_bytes(), duration=2)
    fake.send_video(bob, video.read_bytes(), filename="clip.mp4", duration=2)
    for user in (ALICE, bob):
        await wait_for_summary(fake, user)
        stems = [m for m in fake.messages(user) if m.file_bytes]
        assert [m.title.rsplit(" (", 1)[1] for m in stems] == ["Vocals)", "Instrumental)"]
        for m in stems:
            samples = decode_bytes(tmp_path, m.file_bytes, f"{user}-{m.filename}")
            assert samples.shape[0] == 2 and samples.shape[1] == pytest.approx(2 * 44100, abs=4096)
        assert len([m for m in fake.messages(user) if "BPM" in (m.text or "")]) == 1


async def test_quota_exhaustion_and_quota_command(fake, bot, song):
    fake.send_audio(ALICE, song)
    await fake.wait_for(lambda: any(any("In the queue" in e for e in m.edits) for m in fake.messages(ALICE)))
    fake.send_audio(ALICE, song)
    await fake.wait_for(lambda: any(any("used your 1 song" in e for e in m.edits) for m in fake.messages(ALICE)))
    fake.send_text(ALICE, "/quota")
    reply = await fake.wait_for(lambda: next((m for m in fake.messages(ALICE) if "left today" in (m.text or "")), None))
    assert "0 of 1" in reply.text and "frees up" in reply.text


async def test_cancel(fake, bot, song):
    fake.send_audio(ALICE, song)
    await fake.wait_for(lambda: any(any("In the queue" in e for e in m.edits) for m in fake.messages(ALICE)))
    fake.send_text(ALICE, "/cancel")
    await fake.wait_for(lambda: any("Cancelled" in (m.text or "") for m in fake.messages(ALICE)))
    fake.send_text(ALICE, "/quota")
    reply = await fake.wait_for(lambda: next((m for m in fake.messages(ALICE) if "left today" in (m.text or "")), None))
    assert "1 of 1" in reply.text


async def test_link_command_gives_a_code(fake, bot):
    fake.send_text(ALICE, "/link")
    reply = await fake.wait_for(lambda: next((m for m in fake.messages(ALICE) if "link code" in (m.text or "")), None))
    assert "/link code:" in reply.text


async def test_grant_by_admin_and_refused_for_others(fake, bot):
    fake.send_text(ALICE, f"/grant {ALICE} 30")
    await fake.wait_for(lambda: any("Only StemBot admins" in (m.text or "") for m in fake.messages(ALICE)))
    fake.send_text(ADMIN, f"/grant {ALICE} 30")
    await fake.wait_for(lambda: any(f"User {ALICE} is Pro" in (m.text or "") for m in fake.messages(ADMIN)))
    fake.send_text(ALICE, "/quota")
    reply = await fake.wait_for(lambda: next((m for m in fake.messages(ALICE) if "left today" in (m.text or "")), None))
    assert "Pro" in reply.text and "of 20" in reply.text
    fake.send_text(ADMIN, f"/revoke {ALICE}")
    await fake.wait_for(lambda: any("revoked" in (m.text or "") for m in fake.messages(ADMIN)))


@pytest.mark.parametrize("kind", ["text-document", "oversize", "playlist"])
async def test_bad_inputs_cost_nothing(fake, bot, worker, kind, http_server):
    root, base = http_server
    if kind == "text-document":
        fake.send_document(ALICE, b"just text" * 100, filename="notes.txt", mime_type="text/plain")
        expected = "doesn't look like audio"
    elif kind == "oversize":
        fake.send_audio(ALICE, b"\0" * (21 * 1024 * 1024), filename="huge.mp3")
        expected = "bigger than the 20 MB"
    else:
        for name in ("a.mp3", "b.mp3"):
            write_audio(root / name, music(1.0))
        (root / "album.html").write_text('<html><audio src="a.mp3"></audio><audio src="b.mp3"></audio></html>')
        fake.send_text(ALICE, f"{base}/album.html")
        expected = "playlist"

    def said(text):
        return any(text in (m.text or "") or any(text in e for e in m.edits) for m in fake.messages(ALICE))

    await fake.wait_for(lambda: said(expected), timeout=60)
    fake.send_text(ALICE, "/quota")
    reply = await fake.wait_for(lambda: next((m for m in fake.messages(ALICE) if "left today" in (m.text or "")), None))
    assert "1 of 1" in reply.text  # nothing charged


async def test_groups_only_when_addressed(fake, bot, song):
    group = -500
    fake.send_audio(ALICE, song, chat_id=group)  # not addressed to the bot
    fake.send_text(ALICE, "/help", chat_id=group, chat_type="group")
    await fake.wait_for(lambda: any("StemBot" in (m.text or "") for m in fake.messages(group)))
    assert not any("Got it" in (m.text or "") or m.edits and "Got it" in m.edits[0] for m in fake.messages(group))


async def test_restart_while_a_job_runs(fake, settings, quick_engine, song):
    first = TelegramBot(settings, edit_interval_s=0.0, poll_timeout_s=1)
    await first.start()
    fake.send_audio(ALICE, song)
    await fake.wait_for(lambda: any(any("In the queue" in e for e in m.edits) for m in fake.messages(ALICE)))
    await first.stop()  # the bot goes down; the job is queued
    worker = await start_worker(settings, quick_engine)
    try:
        await asyncio.sleep(0.5)
        second = TelegramBot(settings, edit_interval_s=0.0, poll_timeout_s=1)
        await second.start()
        try:
            await wait_for_summary(fake, ALICE)
        finally:
            await second.stop()
    finally:
        await worker.stop()
    assert len([m for m in fake.messages(ALICE) if m.file_bytes]) == 2  # delivered once


async def test_a_job_with_unreadable_delivery_data_stops_neither_start_up_nor_delivery(fake, settings, quick_engine, song):
    first = TelegramBot(settings, edit_interval_s=0.0, poll_timeout_s=1)
    await first.start()
    fake.send_audio(ALICE, song)
    await fake.wait_for(lambda: any(any("In the queue" in e for e in m.edits) for m in fake.messages(ALICE)))
    await first.stop()
    # A finished job whose stored destination is damaged: the restarted bot's sweep meets it first thing.
    with sqlite3.connect(settings.data_dir / DATABASE_FILENAME) as db:
        db.execute("CREATE TEMP TABLE copy AS SELECT * FROM jobs")
        db.execute("UPDATE copy SET id = 'damaged-' || id, status = 'done', finished_at = created_at, "
                   "delivery = '{\"platform\": \"telegram\", \"chat_id\": \"not a chat\"}'")
        db.execute("INSERT INTO jobs SELECT * FROM copy")
    worker = await start_worker(settings, quick_engine)
    try:
        second = TelegramBot(settings, edit_interval_s=0.0, poll_timeout_s=1)
        await second.start()
        try:
            await wait_for_summary(fake, ALICE)  # the good job is still delivered
        finally:
            await second.stop()
    finally:
        await worker.stop()
    assert len([m for m in fake.messages(ALICE) if m.file_bytes]) == 2


async def test_tokens_never_reach_the_logs(fake, settings, song, caplog):
    import logging

    caplog.set_level(logging.DEBUG)  # everything, httpx's request lines included
    bot = TelegramBot(settings, edit_interval_s=0.0, poll_timeout_s=1)
    await bot.start()
    try:
        fake.send_audio(ALICE, song)
        fake.send_text(ALICE, "/quota")
        await fake.wait_for(lambda: any("left today" in (m.text or "") for m in fake.messages(ALICE)))
    finally:
        await bot.stop()
    text = caplog.text
    assert "getUpdates" in text or "getMe" in text  # the request lines were logged...
    for secret in (TOKEN, TOKEN.replace(":", "%3A"), settings.secret_key):
        assert secret not in text  # ...without the secrets


async def test_throttled_status_always_shows_the_latest_text():
    from bot.delivery import ThrottledStatus

    edits = []

    async def edit(text):
        edits.append(text)

    status = ThrottledStatus(edit, interval_s=0.2)
    for text in ("a", "b", "c"):  # a burst: "a" now, "b" is skipped, "c" after the interval
        await status.show(text)
    assert edits == ["a"]
    await asyncio.sleep(0.3)
    assert edits == ["a", "c"]
    await status.show("c")
    status.cancel()
    assert edits == ["a", "c"]


async def test_command_menu_is_set_at_start_and_matches_the_handlers(fake, bot):
    """setMyCommands at start: everyone's menu, and the admin commands in each admin's own chat; the menu offers
    exactly the commands the bot answers (/start, sent by Telegram's Start button, is answered but not listed)."""
    from telegram.ext import CommandHandler

    from bot.telegram.app import ADMIN_COMMANDS, COMMANDS

    calls = fake.calls_of("setMyCommands")
    everyone = [{"command": c.command, "description": c.description} for c in COMMANDS]
    assert calls[0]["commands"] == everyone and not calls[0].get("scope")
    assert [c.command for c in COMMANDS] == ["help", "quota", "mode", "pro", "link", "cancel"]
    admins = next(c for c in calls if c.get("scope"))
    assert admins["scope"] == {"type": "chat", "chat_id": ADMIN} and [c["command"] for c in admins["commands"]] == [
        c.command for c in ADMIN_COMMANDS] == ["help", "quota", "mode", "pro", "link", "cancel", "grant", "revoke"]
    answered = {name for group in bot.app.handlers.values() for h in group if isinstance(h, CommandHandler)
                for name in h.commands}
    assert answered == {c.command for c in ADMIN_COMMANDS} | {"start"}
    start = fake.calls.index(next(c for c in fake.calls if c.method == "setMyCommands"))
    assert [c.method for c in fake.calls[:start]] == ["getMe"]  # set before polling began


async def test_stems_of_an_untagged_song_have_no_performer(fake, bot, worker, tmp_path):
    """No artist known: Telegram is given none (it shows the title alone), rather than "StemBot"."""
    fake.send_audio(ALICE, write_audio(tmp_path / "demo.mp3", music(2.0, level=0.4)).read_bytes(), filename="demo.mp3")
    await wait_for_summary(fake, ALICE)
    sent = [c for c in fake.calls if c.method == "sendAudio"]
    assert [c.params["title"] for c in sent] == ["demo (Vocals)", "demo (Instrumental)"]
    assert all("performer" not in c.params for c in sent)
