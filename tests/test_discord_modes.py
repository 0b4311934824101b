"""Separation modes in the Discord bot: /separate's `mode` option, /mode, and /help, through the real discord.py
client against the fake Discord (tests/support/fake_discord.py). No worker runs: a job's mode is read from its spec
while it waits in the queue."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bot.discord import create_bot, texts
from bot.requests import JobResult, StemFile, UserIdentity
from bot.service import SeparationService
from bot.wording import mode_title
from separation_worker.contract.job_spec import JobSpec
from separation_worker.contract.modes import MODE_NAMES
from separation_worker.contract.progress_bus import JobEvent
from stembot.settings import Settings
from storage import JobStatus, get_job, list_jobs
from tests.service_support import RedisDb, flush_test_redis, service_env
from tests.support.fake_discord import FakeDiscord, Guild, Interaction, Role, Sent, User

REDIS_DB = RedisDb.DISCORD  # the Discord suites'
LINK = "http://127.0.0.1:9/song.mp3"  # never fetched: no worker runs here


@dataclass
class World:
    alice: User  # free
    patron: User  # holds the server's Pro role
    guild: Guild
    pro_role: Role


@pytest.fixture
async def fake():
    fake = await FakeDiscord().start()
    yield fake
    await fake.close()


@pytest.fixture
def world(fake) -> World:
    guild = fake.add_guild("Beat Lab", fake.add_user("owner"))
    pro_role = fake.add_role(guild, "Patreon Gold", position=1)
    alice, patron = fake.add_user("alice"), fake.add_user("patron")
    fake.join(guild, alice)
    fake.join(guild, patron, pro_role)
    return World(alice, patron, guild, pro_role)


@pytest.fixture
async def service(tmp_path, model_dir, fake, world):
    await flush_test_redis(REDIS_DB)
    env = service_env(tmp_path / "data", model_dir, redis_db=REDIS_DB, STEMBOT_MODE_COSTS="stems=2")
    service = await SeparationService.start(Settings.from_env({**env, **fake.settings_env()}))
    await service.set_guild_setting(world.guild.id, "pro_role_id", str(world.pro_role.id))
    yield service
    await service.close()


@pytest.fixture
async def bot(service, fake):
    bot = create_bot(service.settings, service, guild_ready_timeout=0.05, edit_interval=0.05)
    await bot.login(service.settings.discord_bot_token)
    task = asyncio.create_task(bot.connect())
    await asyncio.wait_for(bot.wait_until_ready(), 10)
    yield bot
    await bot.close()
    await asyncio.wait_for(task, 10)


async def reply(fake: FakeDiscord, interaction: Interaction) -> Sent:
    return (await fake.wait_for(lambda: interaction.replies(), 10))[0]


async def ask(fake: FakeDiscord, name: str, user: User, guild: Guild, **options) -> Sent:
    """Run `/name` with options; its reply, which must be ephemeral."""
    message = await reply(fake, await fake.slash(name, user, guild, options=options))
    assert message.ephemeral, message.content
    return message


async def separate(fake: FakeDiscord, service: SeparationService, user: User, guild: Guild, **options):
    """`/separate link:…` as `user`, accepted: the interaction and the queued job's spec."""
    interaction = await fake.slash("separate", user, guild, options={"link": LINK, **options})
    await fake.wait_for(lambda: interaction.deferred, 10)
    jobs = await list_jobs(service.db, *JobStatus)
    assert len(jobs) == 1
    job = await get_job(service.db, jobs[0].id)
    assert job is not None and job.spec_json is not None
    return interaction, JobSpec.from_json(job.spec_json)


def command(fake: FakeDiscord, name: str) -> dict:
    return next(c for c in fake.commands[None] if c["name"] == name)


def mode_option(synced: dict) -> dict:
    return next(o for o in synced["options"] if o["name"] == "mode")


async def test_separate_and_mode_offer_the_modes_as_choices(fake, bot):
    choices = [{"name": mode_title(name), "value": name} for name in MODE_NAMES]
    assert [c["name"] for c in choices] == ["Vocals", "Karaoke", "Full stems", "Clean vocals"]
    separate_command = command(fake, "separate")
    option = mode_option(separate_command)
    assert option["choices"] == choices and not option.get("required")
    assert "default: your /mode" in option["description"]
    assert "mode" in separate_command["description"]
    assert [o["name"] for o in separate_command["options"]] == ["link", "file", "mode"]
    assert mode_option(command(fake, "mode"))["choices"] == choices


async def test_a_pro_members_separate_runs_in_the_mode_picked(fake, world, bot, service):
    interaction, spec = await separate(fake, service, world.patron, world.guild, mode="stems")
    assert spec.mode == "stems"
    assert interaction.callback == {"type": 5}  # accepted: deferred, public
    assert "18 of 20 songs left" in (await ask(fake, "quota", world.patron, world.guild)).content  # stems cost 2


async def test_a_free_user_is_refused_a_pro_mode_privately_at_no_cost(fake, world, bot, service):
    refused = await ask(fake, "separate", world.alice, world.guild, link=LINK, mode="karaoke")
    assert refused.content == service.wording.pro_mode("karaoke")
    assert refused.content.startswith("Karaoke is for Pro members.")
    # A file is refused before it is downloaded.
    upload = fake.host("song.mp3", b"not fetched")
    refused = await ask(fake, "separate", world.alice, world.guild, file=upload, mode="stems")
    assert refused.content.startswith("Full stems is for Pro members.")
    assert await list_jobs(service.db, *JobStatus) == []
    assert "1 of 1 song left" in (await ask(fake, "quota", world.alice, world.guild)).content


async def test_the_default_set_with_mode_is_what_separate_uses(fake, world, bot, service):
    listed = (await ask(fake, "mode", world.patron, world.guild)).content
    assert "separated as **Vocals**" in listed and "▸ **Vocals: vocals + instrumental** (yours)" in listed
    assert "• Full stems: vocals, drums, bass, guitar, piano, other (2 songs, Pro)" in listed

    answer = await ask(fake, "mode", world.patron, world.guild, mode="stems")
    assert answer.content == service.wording.mode_set("stems")
    listed = (await ask(fake, "mode", world.patron, world.guild)).content
    assert "separated as **Full stems**" in listed and "▸ **Full stems:" in listed

    interaction, spec = await separate(fake, service, world.patron, world.guild)  # no mode: the default
    assert spec.mode == "stems" and interaction.callback == {"type": 5}


async def test_a_free_user_may_not_default_to_a_pro_mode(fake, world, bot, service):
    refused = await ask(fake, "mode", world.alice, world.guild, mode="clean-vocals")
    assert refused.content == service.wording.pro_mode("clean-vocals")
    assert await service.default_mode(UserIdentity("discord", str(world.alice.id))) == "vocals"
    _, spec = await separate(fake, service, world.alice, world.guild)
    assert spec.mode == "vocals"


async def test_help_lists_the_modes(fake, world, bot, service):
    text = (await ask(fake, "help", world.alice, world.guild)).text()
    for name in MODE_NAMES:
        assert service.wording.mode_line(name) in text
    assert "/separate … mode:" in text and "`/mode`" in text


def test_progress_names_a_mode_other_than_vocals():
    event = JobEvent("j", "queued", position=2)
    assert texts.progress(event, "song.mp3").startswith("**song.mp3**\n")
    assert texts.progress(event, "song.mp3", "vocals").startswith("**song.mp3**\n")
    assert texts.progress(event, "song.mp3", "karaoke").startswith("**song.mp3** (Karaoke)\n")
    assert texts.uploading("song.mp3", "stems").startswith("**song.mp3** (Full stems)\n")



def test_the_result_card_names_each_modes_stems():
    stems = [StemFile(name, f"{name}.mp3", Path(f"{name}.mp3"), 1, "http://x/" + name, silent=True)
             for name in ("lead_vocals", "instrumental_backing")]
    result = JobResult("j", "Song", 3.0, stems, None, None, None, "", [], datetime.now(timezone.utc))
    fields = {f.name: f.value for f in texts.result_embed(result, stems).fields}
    assert fields["Loudness"] == "Lead Vocals: silent · Instrumental + Backing: silent"
    assert "[Instrumental + Backing](http://x/instrumental_backing)" in fields["Download"]
