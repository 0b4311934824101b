"""Modes on Telegram: the picker under a waiting song's status, /mode, and a Pro song in full stems end to end;
real python-telegram-bot against the fake Bot API, real Redis and SQLite, a real worker with tiny models."""

import pytest

from bot.requests import UserIdentity
from bot.telegram import TelegramBot
from separation_worker.contract.job_spec import JobSpec
from stembot.settings import Settings
from storage import JobStatus, get_job, list_jobs
from tests.conftest import music, write_audio
from tests.service_support import RedisDb, flush_test_redis, service_env, start_worker
from tests.support.fake_telegram import FakeTelegram

TOKEN = "123456:TEST-token"
REDIS_DB = RedisDb.TELEGRAM
PRO, FREE = 2001, 2002


@pytest.fixture
async def fake():
    async with FakeTelegram(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def settings(tmp_path, model_dir, fake):
    await flush_test_redis(REDIS_DB)
    env = service_env(tmp_path / "data", model_dir, redis_db=REDIS_DB, TELEGRAM_BOT_TOKEN=TOKEN,
                      TELEGRAM_API_BASE_URL=fake.url, STEMBOT_MODE_COSTS="stems=2")
    return Settings.from_env(env)


@pytest.fixture
async def bot(settings):
    bot = TelegramBot(settings, edit_interval_s=0.0, poll_timeout_s=1)
    await bot.start()
    await bot.service.grant_pro("test", UserIdentity("telegram", str(PRO)))
    yield bot
    await bot.stop()


@pytest.fixture
def song(tmp_path) -> bytes:
    return write_audio(tmp_path / "song.mp3", music(3.0, level=0.4), extra_args=("-metadata", "title=Night Drive")
                       ).read_bytes()


async def queued_status(fake, chat_id):
    """The status message once it shows the queue with its picker."""
    def picker_shown():
        status = fake.messages(chat_id)[0] if fake.messages(chat_id) else None
        return status if status is not None and status.buttons else None

    return await fake.wait_for(picker_shown, timeout=30)


async def mode_of_only_job(bot) -> str:
    (job,) = await list_jobs(bot.service.db, *JobStatus)
    return JobSpec.from_json((await get_job(bot.service.db, job.id)).spec_json).mode


async def press(fake, chat_id, status, label):
    button = next(b for b in status.buttons if b["text"].endswith(label) or label in b["text"])
    _, query = fake.send_callback_query(chat_id, status, button["callback_data"])
    return await fake.wait_for(lambda: fake.callback_answers.get(query["id"]), timeout=30)


async def test_a_pro_song_switched_to_full_stems_while_waiting_comes_back_in_six_stems(fake, bot, settings, quick_engine,
                                                                                        song):
    fake.send_audio(PRO, song, filename="song.mp3")
    status = await queued_status(fake, PRO)
    assert [b["text"] for b in status.buttons] == ["✓ Vocals", "Karaoke", "Full stems ×2", "Clean vocals"]
    answer = await press(fake, PRO, status, "Full stems ×2")
    assert answer.get("text") == "This song: Full stems." and not answer.get("show_alert")
    await fake.wait_for(lambda: "✓ Full stems ×2" in [b["text"] for b in status.buttons], timeout=10)
    assert await mode_of_only_job(bot) == "stems"
    quota = await bot.service.quota(UserIdentity("telegram", str(PRO)))
    assert quota.used == 2

    worker = await start_worker(settings, quick_engine)
    try:
        await fake.wait_for(lambda: status.edits[-1].startswith("✅"), timeout=180)
    finally:
        await worker.stop()
    titles = [m.title for m in fake.messages(PRO) if m.file_bytes]
    assert titles == [f"Night Drive ({s})" for s in ("Vocals", "Drums", "Bass", "Guitar", "Piano", "Other")]
    summary = next(m for m in fake.messages(PRO)[1:] if "BPM" in (m.text or ""))
    assert "Drums" in summary.text and "Piano" in summary.text
    assert status.reply_markup is None  # the picker went once the worker took the song


async def test_a_free_user_sees_pro_modes_marked_and_is_told_why_not(fake, bot, song):
    fake.send_audio(FREE, song, filename="song.mp3")
    status = await queued_status(fake, FREE)
    assert "Karaoke ⭐" in [b["text"] for b in status.buttons]
    answer = await press(fake, FREE, status, "Karaoke ⭐")
    assert answer.get("show_alert") is True and answer["text"].startswith("Karaoke is for Pro members.")
    assert await mode_of_only_job(bot) == "vocals"
    assert [b["text"] for b in status.buttons][0] == "✓ Vocals"


async def test_mode_command_sets_the_default_the_picker_starts_from(fake, bot, song):
    fake.send_text(FREE, "/mode stems")
    refused = await fake.wait_for(lambda: next((m for m in fake.messages(FREE) if "Pro" in (m.text or "")), None),
                                  timeout=30)
    assert refused.text.startswith("Full stems is for Pro members.")
    fake.send_text(PRO, "/mode")
    listing = await fake.wait_for(lambda: next((m for m in fake.messages(PRO) if "Modes" in (m.text or "")), None),
                                  timeout=30)
    assert "✅ vocals" in listing.visible_text and "karaoke" in listing.visible_text
    fake.send_text(PRO, "/mode karaoke")
    await fake.wait_for(lambda: any("From now on" in (m.text or "") for m in fake.messages(PRO)), timeout=30)
    fake.send_audio(PRO, song, filename="song.mp3")
    status = await fake.wait_for(
        lambda: next((m for m in fake.messages(PRO) if any(b["text"] == "✓ Karaoke" for b in m.buttons)), None),
        timeout=30)
    assert status.buttons
    assert await mode_of_only_job(bot) == "karaoke"
