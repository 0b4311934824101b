"""Delivery under faults, driven from outside: the real bots against the fake Bot API and the fake Discord.

Flood control and gateway errors on uploads, a SIGTERM in the middle of an upload with a restart, Redis
restarted while a job is followed: each time the user gets the whole result, each piece once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bot.delivery import FollowerConfig, RetryPolicy
from bot.telegram import TelegramBot
from stembot.settings import Settings
from tests.conftest import music, stembot_exe, write_audio
from tests.service_support import RedisDb, flush_test_redis, free_port, service_env, start_private_redis, start_worker
from tests.support.fake_discord import FakeDiscord
from tests.support.fake_telegram import FakeTelegram

TOKEN = "123456:TEST-token"
ALICE = 1001
TITLES = ["Night Drive (Vocals)", "Night Drive (Instrumental)"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as fake:
        yield fake


def env_for(tmp_path, model_dir, fake: FakeTelegram, **extra) -> dict[str, str]:
    return service_env(tmp_path / "data", model_dir, redis_db=RedisDb.DELIVERY_TELEGRAM, TELEGRAM_BOT_TOKEN=TOKEN,
                       TELEGRAM_API_BASE_URL=fake.url, **extra)


@pytest.fixture
async def settings(tmp_path, model_dir, fake) -> Settings:
    await flush_test_redis(RedisDb.DELIVERY_TELEGRAM)
    return Settings.from_env(env_for(tmp_path, model_dir, fake))


@pytest.fixture
def song(tmp_path) -> bytes:
    return write_audio(tmp_path / "song.mp3", music(3.0, level=0.4), extra_args=("-metadata", "title=Night Drive")).read_bytes()


def stems_sent(fake: FakeTelegram) -> list[str]:
    return [m.title for m in fake.messages(ALICE) if m.file_bytes]


def summaries(fake: FakeTelegram) -> list[str]:
    return [m.text for m in fake.messages(ALICE) if "BPM" in (m.text or "")]


async def wait_for_summary(fake: FakeTelegram, timeout: float = 120) -> None:
    def finished() -> bool:
        return bool(summaries(fake)) and any(m.edits and m.edits[-1].startswith("✅") for m in fake.messages(ALICE))

    await fake.wait_for(finished, timeout=timeout)


def assert_delivered_once(fake: FakeTelegram) -> None:
    assert stems_sent(fake) == TITLES, fake.describe()
    assert len(summaries(fake)) == 1


# -- flood control and gateway errors ------------------------------------------------------------------------


async def test_telegram_flood_control_then_bad_gateway_delivers_everything_once(fake, settings, quick_engine, song):
    fake.rate_limit("sendAudio", retry_after=2)  # what Telegram answers under load...
    fake.fail_next("sendAudio", "Bad Gateway", 502)  # ...then a passing gateway error
    bot = TelegramBot(settings, edit_interval_s=0.0, poll_timeout_s=1)
    await bot.start()
    worker = await start_worker(settings, quick_engine)
    try:
        fake.send_audio(ALICE, song, filename="song.mp3")
        await fake.wait_for(lambda: fake.calls_of("sendAudio"), timeout=120)
        started = time.monotonic()
        await wait_for_summary(fake)
        took = time.monotonic() - started
    finally:
        await worker.stop()
        await bot.stop()
    assert_delivered_once(fake)
    assert len(fake.calls_of("sendAudio")) == 4  # the 429, the 502, then each stem once
    assert "kept failing" not in summaries(fake)[0]
    assert 4.0 <= took < 9.0, took  # retry_after (2 s) honoured, then a 2 s backoff (the second failure in a row)
    print(f"429 retry_after=2 then 502: stems and summary delivered {took:.1f} s after the first upload try")


async def deliver_with_quick_retries(fake: FakeTelegram, settings, quick_engine, song, until: Callable[[], Awaitable[None]]) -> None:
    """Alice sends the song to a bot whose sends retry 3 times, 0.1 s apart; returns once `until()` is done."""
    quick = FollowerConfig(edit_interval_s=0.0, send=RetryPolicy(attempts=3, base_s=0.1))
    bot = TelegramBot(settings, edit_interval_s=0.0, poll_timeout_s=1, delivery=quick)
    await bot.start()
    worker = await start_worker(settings, quick_engine)
    try:
        fake.send_audio(ALICE, song, filename="song.mp3")
        await until()
    finally:
        await worker.stop()
        await bot.stop()


async def test_telegram_upload_that_keeps_failing_falls_back_to_links(fake, settings, quick_engine, song):
    fake.fail_next("sendAudio", "Bad Gateway", 502, times=3)  # the vocals, every try
    await deliver_with_quick_retries(fake, settings, quick_engine, song, lambda: wait_for_summary(fake))
    assert stems_sent(fake) == TITLES[1:]
    (summary,) = summaries(fake)
    assert "Sending Vocals here kept failing" in summary and ".flac" in summary  # and the links are there


async def test_telegram_chat_moved_to_a_supergroup_gets_its_stems_there(fake, settings, quick_engine, song):
    # The group became a supergroup: Telegram answers the old chat id with migrate_to_chat_id (PTB's
    # ChatMigrated, not a BadRequest); the stems and the summary must follow the chat to its new id.
    new_chat = -1001234567890
    fake.chat(new_chat, "supergroup")
    fake.fail_next("sendAudio", "Bad Request: group chat was upgraded to a supergroup chat", 400,
                   parameters={"migrate_to_chat_id": new_chat})
    def summary_there() -> Awaitable[None]:
        return fake.wait_for(lambda: any("BPM" in (m.text or "") for m in fake.messages(new_chat)), timeout=120)

    await deliver_with_quick_retries(fake, settings, quick_engine, song, summary_there)
    assert [m.title for m in fake.messages(new_chat) if m.file_bytes] == TITLES  # each stem once, in the new chat
    assert not [m for m in fake.messages(ALICE) if m.file_bytes]


# -- SIGTERM during an upload, then a restart ------------------------------------------------------------------


async def stop_with_sigterm(process: asyncio.subprocess.Process, timeout: float = 20) -> tuple[int, str, float]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode or 0, output.decode(errors="replace"), time.monotonic() - started


async def run_bot(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        stembot_exe(), "telegram", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )


@pytest.mark.parametrize("held", [0, 1], ids=["first-stem", "second-stem"])
async def test_telegram_sigterm_during_an_upload_then_restart(fake, settings, quick_engine, song, tmp_path, model_dir, held):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith(("STEMBOT_", "TELEGRAM_"))}
    env.update(env_for(tmp_path, model_dir, fake, STEMBOT_DRAIN_SECONDS=1))
    hold = fake.hold_next("sendAudio", skip=held)  # this upload never completes: the bot is stopped meanwhile
    worker = await start_worker(settings, quick_engine)
    try:
        first = await run_bot(env)
        fake.send_audio(ALICE, song, filename="song.mp3")
        await asyncio.wait_for(hold.reached.wait(), 120)
        code, output, took = await stop_with_sigterm(first)
        assert code == 0, output
        assert took < 8, f"stopping took {took:.1f} s with a 1 s drain"
        hold.release()
        assert stems_sent(fake) == TITLES[:held] and summaries(fake) == []

        second = await run_bot(env)
        try:
            await wait_for_summary(fake, timeout=60)
            await asyncio.sleep(0.5)  # nothing more comes
        finally:
            code, output, _ = await stop_with_sigterm(second)
        assert code == 0, output
    finally:
        await worker.stop()
    assert_delivered_once(fake)  # the held stem sent again, none that went sent twice
    print(f"SIGTERM during upload {held + 1}: stopped in {took:.1f} s; the restart sent the rest, each stem once")


# -- Redis restarted while a job is followed -----------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
async def test_telegram_redis_restarted_while_a_job_is_followed(fake, tmp_path, model_dir, quick_engine, song):
    port = free_port()
    redis = start_private_redis(port)
    settings = Settings.from_env(env_for(tmp_path, model_dir, fake, REDIS_URL=f"redis://127.0.0.1:{port}/0"))
    bot = TelegramBot(settings, edit_interval_s=0.0, poll_timeout_s=1)
    try:
        await bot.start()
        try:
            fake.send_audio(ALICE, song, filename="song.mp3")
            await fake.wait_for(lambda: any(any("In the queue" in e for e in m.edits) for m in fake.messages(ALICE)))
            redis.terminate()
            redis.wait(10)
            await asyncio.sleep(1.0)  # the follower meets the outage
            redis = start_private_redis(port)  # back, and empty: the job's queue entry and events are gone
            worker = await start_worker(settings, quick_engine)  # reconciles the queue from SQLite
            try:
                await wait_for_summary(fake, timeout=120)
            finally:
                await worker.stop()
        finally:
            await bot.stop()
    finally:
        redis.terminate()
        redis.wait(10)
    assert_delivered_once(fake)


# -- Discord: rate limits and gateway errors on uploads --------------------------------------------------------------


async def test_discord_rate_limit_then_server_errors_deliver_everything_once(tmp_path, model_dir, quick_engine, song):
    from bot.discord import create_bot
    from bot.service import SeparationService

    fake = await FakeDiscord().start()
    try:
        await flush_test_redis(RedisDb.DELIVERY_DISCORD)
        env = service_env(tmp_path / "data", model_dir, redis_db=RedisDb.DELIVERY_DISCORD, **fake.settings_env())
        settings = Settings.from_env(env)
        owner, alice = fake.add_user("owner"), fake.add_user("alice")
        guild = fake.add_guild("Beat Lab", owner)
        fake.join(guild, alice)
        fake.fail_next("followup", 429, retry_after=1)  # discord.py waits this out by itself
        fake.fail_next("followup", 502)  # ...and retries this gateway error itself
        fake.fail_next("followup", 503)  # this one it raises: the follower retries it
        async with await SeparationService.start(settings) as service:
            bot = create_bot(settings, service, guild_ready_timeout=0.05, edit_interval=0.25)
            await bot.login(settings.discord_bot_token)
            task = asyncio.create_task(bot.connect())
            worker = await start_worker(settings, quick_engine)
            try:
                await asyncio.wait_for(bot.wait_until_ready(), 10)
                interaction = await fake.slash("separate", alice, guild, options={"file": fake.host("song.mp3", song)})
                await fake.wait_for(lambda: any(m.embeds for m in interaction.followups), 90)
                await asyncio.sleep(0.3)
            finally:
                await worker.stop()
                await bot.close()
                await asyncio.wait_for(task, 10)
    finally:
        await fake.close()
    assert fake.refused == [("followup", 429), ("followup", 502), ("followup", 503)]
    files = [name for m in interaction.followups for name, _ in m.files]
    assert files == ["Night Drive (Vocals).mp3", "Night Drive (Instrumental).mp3"]
    assert len(interaction.followups) == 3 and interaction.followups[-1].embeds  # two stems, then the summary
    assert fake.channel_messages() == []


