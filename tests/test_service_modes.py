"""Modes through the service: which tier may pick which, what each costs, a user's default, and changing the mode
of a song still waiting; real Redis and SQLite, and an arq worker with tiny models for the end-to-end case."""

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from bot.requests import JobHandle, ModeChange, Refusal, RefusalCode, UploadSource, UserIdentity
from bot.service import SeparationService
from separation_worker import audio_io
from separation_worker.contract.job_spec import JobSpec
from stembot.settings import Settings
from storage import get_job, quota_status, start_job
from tests.conftest import music, write_audio
from tests.service_support import flush_test_redis, service_env, start_worker

FREE = UserIdentity("telegram", "3001", "Fay")
PRO = UserIdentity("discord", "3002", "Pia", holds_pro_role=True)


@pytest.fixture
async def service_settings(tmp_path, model_dir):
    await flush_test_redis()
    env = service_env(tmp_path / "data", model_dir, STEMBOT_MODE_COSTS="stems=2", STEMBOT_PRO_SONGS_PER_DAY="3",
                      STEMBOT_MAX_WAITING_PRO="3")
    return Settings.from_env(env)


@pytest.fixture
async def service(service_settings):
    service = await SeparationService.start(service_settings)
    yield service
    await service.close()


@pytest.fixture
def song_path(tmp_path):
    return write_audio(tmp_path / "in.wav", music(3.0, level=0.3))


@pytest.fixture
def song(song_path):
    return song_path.read_bytes()


async def used(service, who) -> int:
    user = await service.accounts.user(who)
    pro, limit = await service.accounts.limit(user.id, who)
    return (await quota_status(service.db, user.id, limit)).used


async def spec_of(service, job_id) -> JobSpec:
    job = await get_job(service.db, job_id)
    return JobSpec.from_json(job.spec_json)


async def test_a_free_user_is_offered_pro_modes_but_refused_them_at_no_cost(service, song):
    options = {o.name: o for o in await service.mode_options(FREE)}
    assert list(options) == ["vocals", "karaoke", "stems", "clean-vocals"]
    assert options["vocals"].allowed and not options["karaoke"].allowed and options["stems"].songs == 2
    refusal = await service.submit(FREE, UploadSource("in.wav", data=song), mode="karaoke")
    assert isinstance(refusal, Refusal) and refusal.code is RefusalCode.PRO_MODE
    assert refusal.message.startswith("Karaoke is for Pro members.")
    unknown = await service.submit(FREE, UploadSource("in.wav", data=song), mode="choir")
    assert isinstance(unknown, Refusal) and unknown.code is RefusalCode.UNKNOWN_MODE and "karaoke" in unknown.message
    assert await used(service, FREE) == 0
    handle = await service.submit(FREE, UploadSource("in.wav", data=song))
    assert isinstance(handle, JobHandle) and handle.mode == "vocals" and handle.songs == 1
    assert (await spec_of(service, handle.job_id)).mode == "vocals"


async def test_a_heavy_mode_costs_its_songs_and_runs_end_to_end(service, service_settings, engine, song, song_path):
    handle = await service.submit(PRO, UploadSource("in.wav", data=song), mode="stems")
    assert isinstance(handle, JobHandle) and handle.songs == 2 and handle.quota.used == 2
    worker = await start_worker(service_settings, engine)
    try:
        async def done():
            async for event in service.watch(handle.job_id):
                if event.state in ("done", "failed"):
                    return event

        event = await asyncio.wait_for(done(), 180)
    finally:
        await worker.stop()
    assert event.state == "done"
    result = await service.result(handle.job_id)
    assert result.manifest.mode == "stems"
    assert [s.name for s in result.stems] == ["vocals", "drums", "bass", "guitar", "piano", "other"]
    # Each stem is also kept raw (unnormalized, 24-bit FLAC): together they null against the song.
    outputs = service.files.job_dir(handle.job_id)
    raws = [audio_io.decode(outputs / stem.raw.file, 60).samples for stem in result.manifest.stems]
    assert all(stem.raw.file.endswith(" (Raw).flac") for stem in result.manifest.stems)
    assert np.abs(sum(raws) - audio_io.decode(song_path, 60).samples).max() < 1e-4
    # 3 a day: a second stems song (2 more) no longer fits, and the refusal says so in those terms.
    refusal = await service.submit(PRO, UploadSource("in.wav", data=song), mode="stems")
    assert isinstance(refusal, Refusal) and refusal.code is RefusalCode.QUOTA
    assert refusal.message.startswith("Full stems costs 2 songs and you have 1 song left today.")


async def test_a_waiting_songs_mode_changes_with_its_charge(service, song):
    handle = await service.submit(PRO, UploadSource("in.wav", data=song))
    assert isinstance(handle, JobHandle) and handle.quota.used == 1
    change = await service.change_mode(PRO, handle.job_id, "stems")
    assert isinstance(change, ModeChange) and change.songs == 2 and change.quota.used == 2
    assert (await spec_of(service, handle.job_id)).mode == "stems"
    assert (await spec_of(service, handle.job_id)).upload_name == "in.wav"  # the rest of the spec as it was
    # Another song of 1: then stems for the second would need 2 + 2 > 3, and is refused without a change.
    second = await service.submit(PRO, UploadSource("in.wav", data=song))
    assert isinstance(second, JobHandle) and second.quota.used == 3
    refused = await service.change_mode(PRO, second.job_id, "stems")
    assert isinstance(refused, Refusal) and refused.code is RefusalCode.QUOTA
    assert (await spec_of(service, second.job_id)).mode == "vocals" and await used(service, PRO) == 3
    # Back to vocals costs less again: always allowed.
    back = await service.change_mode(PRO, handle.job_id, "vocals")
    assert isinstance(back, ModeChange) and back.quota.used == 2
    # Someone else's song, or one a worker has started, stays as it is.
    stranger = await service.change_mode(replace(PRO, user_id="9999"), handle.job_id, "karaoke")
    assert isinstance(stranger, Refusal) and stranger.message == service.wording.NOT_YOUR_SONG
    await start_job(service.db, handle.job_id)
    late = await service.change_mode(PRO, handle.job_id, "karaoke")
    assert isinstance(late, Refusal) and late.code is RefusalCode.TOO_LATE
    assert (await spec_of(service, handle.job_id)).mode == "vocals"


async def test_a_users_default_mode_and_a_lapsed_pro(service, song):
    assert await service.default_mode(PRO) == "vocals"
    said = await service.set_default_mode(PRO, "Karaoke")
    assert said == service.wording.mode_set("karaoke") and await service.default_mode(PRO) == "karaoke"
    handle = await service.submit(PRO, UploadSource("in.wav", data=song))
    assert isinstance(handle, JobHandle) and handle.mode == "karaoke"
    # Without the Pro role the default falls back to what the free tier allows.
    lapsed = replace(PRO, holds_pro_role=False)
    assert await service.default_mode(lapsed) == "vocals"
    refusal = await service.set_default_mode(FREE, "stems")
    assert isinstance(refusal, Refusal) and refusal.code is RefusalCode.PRO_MODE


async def test_the_precheck_counts_the_default_modes_cost(service, song):
    """Before a front end downloads an upload: a default mode costing more than what is left is refused then."""
    await service.set_default_mode(PRO, "stems")
    for _ in range(2):
        assert isinstance(await service.submit(PRO, UploadSource("in.wav", data=song), mode="vocals"), JobHandle)
    refusal = await service.precheck(PRO)
    assert isinstance(refusal, Refusal) and refusal.code is RefusalCode.QUOTA and "Full stems costs 2" in refusal.message
    assert await service.precheck(FREE) is None
