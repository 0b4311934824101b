"""The job service end to end: real Redis, real SQLite, an arq worker running tiny random-weight models."""

import asyncio
from datetime import datetime, timedelta

import pytest

from bot.requests import JobHandle, LinkSource, Refusal, RefusalCode, UploadSource, UserIdentity
from bot.service import SeparationService
from separation_worker import audio_io
from separation_worker.contract import queue
from separation_worker.job_runner import TIMED_OUT
from stembot.settings import Settings
from storage import UTC, FakeClock, JobStatus, list_jobs, sweep
from tests.conftest import music, write_audio
from tests.service_support import flush_test_redis, service_env, start_worker

ALICE = UserIdentity("telegram", "1001", "Alice")
BOB = UserIdentity("discord", "2002", "Bob", holds_pro_role=True)


@pytest.fixture
async def service_settings(tmp_path, model_dir):
    await flush_test_redis()
    return Settings.from_env(service_env(tmp_path / "data", model_dir))


@pytest.fixture
async def service(service_settings):
    service = await SeparationService.start(service_settings)
    yield service
    await service.close()


@pytest.fixture
def song_bytes(tmp_path):
    return write_audio(tmp_path / "in.mp3", music(3.0, level=0.4), extra_args=("-metadata", "title=Test Song")).read_bytes()


async def collect(service, job_id, timeout=120):
    events = []

    async def run():
        async for event in service.watch(job_id):
            events.append(event)

    await asyncio.wait_for(run(), timeout)
    return events


async def test_submit_queue_worker_result(service, service_settings, engine, song_bytes):
    handle = await service.submit(ALICE, UploadSource("in.mp3", data=song_bytes), delivery={"chat": 1})
    assert isinstance(handle, JobHandle)
    assert handle.position == 1
    assert handle.quota.remaining == 0 and not handle.quota.pro
    worker = await start_worker(service_settings, engine)
    try:
        events = await collect(service, handle.job_id)
    finally:
        await worker.stop()
    states = [e.state for e in events]
    assert states[0] == "queued" and states[-1] == "done"
    order = ["queued", "downloading", "separating", "analyzing", "encoding", "done"]
    assert [order.index(s) for s in states] == sorted(order.index(s) for s in states)
    fractions = [e.fraction for e in events if e.state == "separating"]
    assert fractions == sorted(fractions) and len(fractions) > 1

    result = await service.result(handle.job_id)
    assert result.title == "Test Song"
    assert {s.name for s in result.stems} == {"vocals", "instrumental"}
    for stem in result.stems:
        assert stem.path.is_file() and stem.size_bytes == stem.path.stat().st_size
        assert audio_io.decode(stem.path, 60).samples.shape == (2, pytest.approx(3 * 44100, abs=64))
        assert stem.url.startswith("http://files.test/d/" + handle.job_id + "/")
        assert stem.filename.endswith(".mp3") and stem.lossless_url and ".flac?" in stem.lossless_url
    assert "BPM" in result.summary
    assert result.page_url.startswith(f"http://files.test/r/{handle.job_id}?e=")
    result_json = service.files.read_manifest(handle.job_id)  # fetched from the bucket, when there is one
    assert service_settings.secret_key not in result_json and "secret" not in result_json.lower()
    original = result.raw["original"]["file"]
    assert original == "Test Song (Original).mp3" and service.files.result_file(handle.job_id, original) is not None
    # The upload is gone once the stems exist.
    assert not any(n.startswith("incoming/") for n in service.files.list_files(handle.job_id))
    assert await service.claim_delivery(handle.job_id) is True
    assert await service.claim_delivery(handle.job_id) is False


async def test_free_quota_refusal_costs_nothing(service, song_bytes):
    first = await service.submit(ALICE, UploadSource("in.mp3", data=song_bytes))
    assert isinstance(first, JobHandle)
    second = await service.submit(ALICE, UploadSource("in.mp3", data=song_bytes))
    assert isinstance(second, Refusal) and second.code == "quota"
    assert second.next_free_at is not None and "frees up" in second.message
    assert len(await list_jobs(service.db, *JobStatus)) == 1
    quota = await service.quota(ALICE)
    assert (quota.used, quota.limit, quota.remaining) == (1, 1, 0)


async def test_pro_role_gets_the_pro_limit(service, song_bytes):
    for _ in range(3):
        assert isinstance(await service.submit(BOB, UploadSource("in.mp3", data=song_bytes)), JobHandle)
    quota = await service.quota(BOB)
    assert quota.pro and quota.limit == 20 and quota.used == 3


@pytest.mark.parametrize(
    "source, code",
    [
        (UploadSource("notes.txt", data=b"hello, not audio" * 100), "not_audio"),
        (UploadSource("empty.mp3", data=b""), "not_audio"),
        (LinkSource("ftp://example.com/song.mp3"), "bad_link"),
        (LinkSource("not a link"), "bad_link"),
    ],
)
async def test_bad_input_is_refused_for_free(service, source, code):
    refusal = await service.submit(ALICE, source)
    assert isinstance(refusal, Refusal) and refusal.code == code and refusal.message
    assert (await service.quota(ALICE)).used == 0
    assert await list_jobs(service.db, *JobStatus) == []
    assert not service.files.root.exists() or not any(service.files.root.iterdir())


async def test_too_long_upload_is_refused(tmp_path, model_dir, song_bytes):
    await flush_test_redis()
    settings = Settings.from_env(service_env(tmp_path / "data", model_dir, STEMBOT_MAX_DURATION_SECONDS=2))
    async with await SeparationService.start(settings) as service:
        refusal = await service.submit(ALICE, UploadSource("in.mp3", data=song_bytes))
        assert isinstance(refusal, Refusal) and refusal.code == "too_long"


async def test_private_links_refused_in_production(tmp_path, model_dir):
    await flush_test_redis()
    settings = Settings.from_env(service_env(tmp_path / "data", model_dir, STEMBOT_ALLOW_PRIVATE_URLS="false"))
    async with await SeparationService.start(settings) as service:
        for url in ("http://127.0.0.1:6379/", "http://169.254.169.254/latest/meta-data", "http://[::1]/x.mp3"):
            refusal = await service.submit(ALICE, LinkSource(url))
            assert isinstance(refusal, Refusal) and refusal.code == "private_link", url


async def test_failed_link_is_refunded(service, service_settings, engine, http_server):
    root, base = http_server
    (root / "page.html").write_text("<html>no media</html>")
    handle = await service.submit(ALICE, LinkSource(f"{base}/page.html"))
    worker = await start_worker(service_settings, engine)
    try:
        events = await collect(service, handle.job_id)
    finally:
        await worker.stop()
    assert events[-1].state == "failed" and events[-1].message
    assert (await service.quota(ALICE)).used == 0  # refunded
    assert not service.files.job_dir(handle.job_id).exists()


async def test_cancel_refunds_and_dequeues(service, song_bytes):
    handle = await service.submit(ALICE, UploadSource("in.mp3", data=song_bytes))
    cancelled = await service.cancel(ALICE)
    assert cancelled is not None and cancelled.id == handle.job_id
    assert await queue.position(service.redis, handle.job_id) is None
    assert (await service.quota(ALICE)).used == 0
    assert await service.cancel(ALICE) is None
    events = await collect(service, handle.job_id)
    assert events[-1].state == "cancelled"


async def test_redis_losing_the_queue_loses_no_job(service, service_settings, engine, song_bytes):
    handle = await service.submit(ALICE, UploadSource("in.mp3", data=song_bytes))
    await service.redis.flushdb()  # Redis restarted empty
    assert not await queue.is_known(service.redis, handle.job_id)
    restarted = await SeparationService.start(service_settings)  # start-up reconciles
    try:
        assert await queue.is_known(restarted.redis, handle.job_id)
        worker = await start_worker(service_settings, engine)
        try:
            events = await collect(restarted, handle.job_id)
        finally:
            await worker.stop()
        assert events[-1].state == "done"
    finally:
        await restarted.close()


async def test_restart_between_finish_and_delivery(service_settings, engine, song_bytes):
    first = await SeparationService.start(service_settings)
    handle = await first.submit(ALICE, UploadSource("in.mp3", data=song_bytes))
    await first.close()  # the bot goes down while the job runs
    worker = await start_worker(service_settings, engine)
    second = await SeparationService.start(service_settings)
    try:
        events = await collect(second, handle.job_id)
        assert events[-1].state == "done"
        undelivered = await second.undelivered_jobs()
        assert [j.id for j in undelivered] == [handle.job_id]
        assert await second.claim_delivery(handle.job_id)
        assert await second.undelivered_jobs() == []
    finally:
        await worker.stop()
        await second.close()


async def test_links_expire_with_the_files(tmp_path, model_dir, engine, song_bytes):
    await flush_test_redis()
    settings = Settings.from_env(service_env(tmp_path / "data", model_dir))
    clock = FakeClock(datetime.now(UTC))  # the worker's own clock is the real one
    service = await SeparationService.start(settings, clock=clock)
    try:
        handle = await service.submit(ALICE, UploadSource("in.mp3", data=song_bytes))
        worker = await start_worker(settings, engine)
        try:
            await collect(service, handle.job_id)
        finally:
            await worker.stop()
        result = await service.result(handle.job_id)
        assert result.expires_at == (await service.job(handle.job_id)).finished_at + timedelta(hours=24)
        clock.advance(timedelta(hours=23))
        await sweep(service.db, service.files, timedelta(hours=24), clock)
        assert all(s.path.exists() for s in result.stems)
        clock.advance(timedelta(hours=2))
        report = await sweep(service.db, service.files, timedelta(hours=24), clock)
        assert handle.job_id in report.expired_jobs
        assert not any(s.path.exists() for s in result.stems)
        assert (await service.job(handle.job_id)).status.value == "expired"
        assert await service.result(handle.job_id) is None
    finally:
        await service.close()


async def test_twenty_concurrent_submissions_by_one_free_user(service_settings, song_bytes):
    """Several service instances (as several bot processes would be) race on one user's quota."""
    services = [await SeparationService.start(service_settings) for _ in range(4)]
    try:
        outcomes = await asyncio.gather(
            *(services[i % 4].submit(ALICE, UploadSource("in.mp3", data=song_bytes)) for i in range(20))
        )
    finally:
        for s in services:
            await s.close()
    accepted = [o for o in outcomes if isinstance(o, JobHandle)]
    assert len(accepted) == 1
    assert all(o.code in {RefusalCode.QUOTA, RefusalCode.BUSY_USER} for o in outcomes if isinstance(o, Refusal))


async def test_grants_links_and_guild_settings(service, song_bytes):
    carol_tg = UserIdentity("telegram", "3003", "Carol")
    carol_dc = UserIdentity("discord", "4004", "Carol#1", holds_pro_role=False)
    assert await service.pro_status(carol_tg) is None
    grant = await service.grant_pro("telegram:1", carol_tg, days=7)
    assert grant.until is not None
    assert (await service.quota(carol_tg)).limit == 20
    assert await service.revoke_pro(carol_tg) is True
    assert (await service.quota(carol_tg)).limit == 1

    code = await service.link_code(carol_tg)
    message = await service.redeem_link_code(carol_dc, code.code.lower())
    assert "Linked" in message
    assert "Linked" not in await service.redeem_link_code(carol_dc, code.code)  # single use
    await service.grant_pro("discord:admin", carol_dc)
    assert (await service.quota(carol_tg)).pro  # Pro on Discord counts on Telegram

    await service.set_guild_setting(77, "pro_role_id", "555")
    assert await service.guild_setting(77, "pro_role_id") == "555"
    assert await service.queue_status() == {"waiting": 0, "running": 0}


async def test_abuse_limits(tmp_path, model_dir, song_bytes):
    await flush_test_redis()
    settings = Settings.from_env(service_env(tmp_path / "data", model_dir, STEMBOT_MAX_DURATION_FREE_SECONDS=2,
                                             STEMBOT_MAX_WAITING_PRO=2, STEMBOT_COMMANDS_PER_MINUTE=3, STEMBOT_MAX_QUEUE=3))
    async with await SeparationService.start(settings) as service:
        too_long = await service.submit(ALICE, UploadSource("in.mp3", data=song_bytes))  # 3 s > Free's 2 s
        assert isinstance(too_long, Refusal) and too_long.code == "too_long" and "Pro" in too_long.message
        assert isinstance(await service.submit(BOB, UploadSource("in.mp3", data=song_bytes)), JobHandle)  # Pro: 20 min
        assert isinstance(await service.submit(BOB, UploadSource("in.mp3", data=song_bytes)), JobHandle)
        busy = await service.submit(BOB, UploadSource("in.mp3", data=song_bytes))
        assert isinstance(busy, Refusal) and busy.code == "busy_user"
        carol = UserIdentity("discord", "7", holds_pro_role=True)
        assert isinstance(await service.submit(carol, UploadSource("in.mp3", data=song_bytes)), JobHandle)
        full = await service.submit(UserIdentity("discord", "8", holds_pro_role=True), UploadSource("in.mp3", data=song_bytes))
        assert isinstance(full, Refusal) and full.code == "queue_full" and "min" in full.message
        assert [await service.allow_command(ALICE) for _ in range(4)][-1].code == "rate_limited"
        assert (await service.quota(ALICE)).used == 0


async def test_free_tier_length_limit_applies_to_links_too(tmp_path, model_dir, engine, http_server):
    root, base = http_server
    write_audio(root / "three-seconds.mp3", music(3.0))
    await flush_test_redis()
    settings = Settings.from_env(service_env(tmp_path / "data", model_dir, STEMBOT_MAX_DURATION_FREE_SECONDS=2))
    async with await SeparationService.start(settings) as service:
        handle = await service.submit(ALICE, LinkSource(f"{base}/three-seconds.mp3"), delivery={"chat": 1})
        worker = await start_worker(settings, engine)
        try:
            events = await collect(service, handle.job_id)
        finally:
            await worker.stop()
        assert events[-1].state == "failed" and "limit is 0:02" in events[-1].message
        assert (await service.quota(ALICE)).used == 0


async def test_users_cannot_cancel_each_others_jobs(service, song_bytes):
    handle = await service.submit(ALICE, UploadSource("in.mp3", data=song_bytes))
    assert await service.cancel(BOB) is None
    assert (await service.job(handle.job_id)).status.value == "queued"


async def test_job_time_limit_scales_and_fails_cleanly(tmp_path, model_dir, engine, song_bytes):
    await flush_test_redis()
    settings = Settings.from_env(service_env(tmp_path / "data", model_dir, STEMBOT_JOB_TIMEOUT_BASE_S=1,
                                             STEMBOT_JOB_TIMEOUT_FACTOR=0, STEMBOT_MAX_ATTEMPTS=1))
    async with await SeparationService.start(settings) as service:
        handle = await service.submit(ALICE, UploadSource("in.mp3", data=song_bytes))
        worker = await start_worker(settings, engine)
        try:
            events = await collect(service, handle.job_id)
        finally:
            await worker.stop()
        assert events[-1].state == "failed" and events[-1].message == TIMED_OUT
        assert (await service.quota(ALICE)).used == 0
        assert not service.files.job_dir(handle.job_id).exists()
