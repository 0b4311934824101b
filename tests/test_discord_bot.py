"""The Discord bot end to end: the real discord.py client against a local fake Discord (REST, gateway, CDN),
a real Redis (database 13), SQLite, and an arq worker running tiny random-weight models."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import itertools
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from bot.discord import StemBot, create_bot
from bot.discord import cog as cog_module
from bot.requests import UserIdentity
from bot.service import SeparationService
from separation_worker import audio_io
from stembot.commands import discord as discord_command
from stembot.settings import Settings, SettingsError
from storage import JobStatus, list_jobs
from tests.conftest import music, write_audio
from tests.service_support import RedisDb, flush_test_redis, service_env, start_worker
from tests.support.fake_discord import MANAGE_GUILD, MANAGE_ROLES, FakeDiscord, Guild, Interaction, Role, Sent, User

REDIS_DB = RedisDb.DISCORD
SR = 44100
STAGES = ("queue", "Getting your audio", "Separating", "Analyzing", "Encoding", "Uploading", "ready")


@dataclass
class World:
    owner: User
    admin: User
    alice: User
    patron: User
    guild: Guild
    channel: int
    pro_role: Role
    admin_role: Role


@pytest.fixture
async def fake():
    fake = await FakeDiscord().start()
    yield fake
    await fake.close()


@pytest.fixture
def world(fake) -> World:
    owner = fake.add_user("owner")
    guild = fake.add_guild("Beat Lab", owner)
    admin_role = fake.add_role(guild, "Mods", MANAGE_GUILD, position=3)
    pro_role = fake.add_role(guild, "Patreon Gold", position=1)
    admin, alice, patron = fake.add_user("admin"), fake.add_user("alice"), fake.add_user("patron")
    fake.join(guild, admin, admin_role)
    fake.join(guild, alice)
    fake.join(guild, patron, pro_role)
    return World(owner, admin, alice, patron, guild, fake.channel_of(guild), pro_role, admin_role)


@dataclass
class Den:
    """A stranger's own server, with the bot added: alice and the patron are members, alice holds its VIP role."""

    stranger: User
    guild: Guild
    vip_role: Role


@pytest.fixture
def den(fake, world) -> Den:
    stranger = fake.add_user("stranger")
    guild = fake.add_guild("Stranger's Den", stranger)
    vip_role = fake.add_role(guild, "VIP", position=1)
    fake.join(guild, world.alice, vip_role)
    fake.join(guild, world.patron)
    fake.join(world.guild, stranger)  # also a plain member of the operator's server
    return Den(stranger, guild, vip_role)


@pytest.fixture
async def bot_settings(tmp_path, model_dir, fake, world) -> Settings:
    await flush_test_redis(REDIS_DB)
    env = service_env(
        tmp_path / "data",
        model_dir,
        redis_db=REDIS_DB,
        DISCORD_HOME_GUILD_ID=world.guild.id,
        DISCORD_OWNER_IDS=f"{world.owner.id}, 42",  # the home server's owner runs StemBot
    )
    return Settings.from_env({**env, **fake.settings_env()})


@pytest.fixture
async def service(bot_settings):
    service = await SeparationService.start(bot_settings)
    yield service
    await service.close()


@pytest.fixture
async def worker(bot_settings, engine):
    running = await start_worker(bot_settings, engine)
    yield running
    await running.stop()


@dataclass
class RunningBot:
    bot: StemBot
    task: asyncio.Task

    async def stop(self) -> None:
        if not self.bot.is_closed():
            await self.bot.close()
        await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def make_bot(bot_settings, service):
    """Start a bot (connected and ready) with test-friendly options; all are stopped at the end."""
    running: list[RunningBot] = []

    async def make(
        settings: Settings | None = None, with_service: SeparationService | None = None, **options
    ) -> RunningBot:
        options.setdefault("guild_ready_timeout", 0.05)
        options.setdefault("edit_interval", 0.25)
        bot = create_bot(settings or bot_settings, with_service or service, **options)
        await bot.login(bot_settings.discord_bot_token)
        started = RunningBot(bot, asyncio.create_task(bot.connect()))
        running.append(started)
        await asyncio.wait_for(bot.wait_until_ready(), 10)
        return started

    yield make
    for started in running:
        await started.stop()


@pytest.fixture
def song(tmp_path) -> bytes:
    return write_audio(
        tmp_path / "song.mp3", music(2.5, level=0.4), extra_args=("-metadata", "title=Test Song")
    ).read_bytes()


async def reply(fake: FakeDiscord, interaction: Interaction, timeout: float = 10) -> Sent:
    """The first thing the user was told: the callback's message or the first followup."""
    return (await fake.wait_for(lambda: interaction.replies(), timeout))[0]


async def quota_text(fake: FakeDiscord, user: User, guild: Guild | None) -> str:
    return (await reply(fake, await fake.slash("quota", user, guild))).content


async def plans(fake: FakeDiscord, user: User, *where: Guild | None) -> list[str]:
    """The user's plan ("Pro" or "Free") as /quota tells it in each server (None: a DM)."""
    texts = [await quota_text(fake, user, guild) for guild in where]
    return ["Pro" if "**Pro** plan" in text else "Free" for text in texts]


async def admin(fake: FakeDiscord, subcommand: str, user: User, guild: Guild, **options) -> Sent:
    """Run `/stembot <subcommand>` as `user` in `guild`; the reply, which only they see."""
    message = await reply(fake, await fake.slash("stembot", user, guild, subcommand=subcommand, options=options))
    assert message.ephemeral
    return message


def stage(text: str) -> int:
    return next(i for i, marker in enumerate(STAGES) if marker in text)


def summary_sent(messages: list[Sent]) -> bool:
    return any(m.embeds for m in messages)


async def delivered(fake: FakeDiscord, messages: Callable[[], list[Sent]], timeout: float = 60) -> list[Sent]:
    """Once the summary (the last piece) arrived: every message of the delivery, stems first."""
    await fake.wait_for(lambda: summary_sent(messages()), timeout)
    sent = messages()
    assert sent[-1].embeds and not any(m.embeds for m in sent[:-1]), [m.content for m in sent]
    return sent


def assert_stems(messages: list[Sent], tmp_path: Path, seconds: float = 2.5) -> None:
    """Each stem once, one per message, decodable and as long as the song."""
    stems = [m for m in messages if m.files]
    assert all(len(m.files) == 1 for m in stems)
    files = [f for m in stems for f in m.files]
    names = [name for name, _ in files]
    assert names == ["Test Song (Vocals).mp3", "Test Song (Instrumental).mp3"]
    for name, data in files:
        path = tmp_path / f"uploaded-{name}"
        path.write_bytes(data)
        samples = audio_io.decode(path, 60).samples
        assert samples.shape[0] == 2
        assert abs(samples.shape[1] - seconds * SR) < 0.05 * SR


def assert_summary(embed: dict, result) -> None:
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert embed["title"] == "Test Song"
    assert fields["Length"] == "0:02" or fields["Length"] == "0:03"
    assert fields["Tempo & key"] == result.summary and "BPM" in result.summary
    assert "LUFS" in fields["Loudness"] or "silent" in fields["Loudness"]
    assert "BS-Roformer" in fields["Models"]


async def only_job(service: SeparationService):
    jobs = await list_jobs(service.db, *JobStatus)
    assert len(jobs) == 1
    return jobs[0]


async def wait_for_status(service: SeparationService, job_id: str, status: JobStatus, timeout: float = 60) -> None:
    async def wait() -> None:
        while (await service.job(job_id)).status is not status:
            await asyncio.sleep(0.1)

    await asyncio.wait_for(wait(), timeout)


# -- separating -------------------------------------------------------------------------------------------


async def test_separate_file_edits_progress_then_sends_stems(fake, world, make_bot, worker, service, song, tmp_path):
    await make_bot()
    attachment = fake.host("song.mp3", song)
    interaction = await fake.slash("separate", world.alice, world.guild, options={"file": attachment})

    followups = await delivered(fake, lambda: interaction.followups)
    assert interaction.callback == {"type": 5}  # deferred, public
    await fake.wait_for(lambda: interaction.edits and "ready" in interaction.edits[-1].content)
    edits = [e.content for e in interaction.edits]
    assert all("song.mp3" in e for e in edits[:-1])
    assert [stage(e) for e in edits] == sorted(stage(e) for e in edits)
    assert all(a != b for a, b in itertools.pairwise(edits))  # only changes are sent
    assert stage(edits[0]) <= STAGES.index("Separating") and "Test Song" in edits[-1]

    job = await only_job(service)
    assert job.status is JobStatus.DONE and job.delivered_at is not None  # claimed: never delivered again
    assert_stems(followups, tmp_path)
    assert_summary(followups[-1].embeds[0], await service.result(job.id))
    assert "Download" not in json.dumps(followups[-1].embeds)  # both stems fit: no links needed
    assert not any(m.ephemeral for m in followups) and fake.channel_messages() == []
    assert job.delivery["channel_id"] == str(world.channel) and job.delivery["upload_limit"] == 10 * 1024 * 1024


async def test_stems_over_the_upload_limit_come_as_links(fake, world, make_bot, worker, service, song):
    await make_bot()
    interaction = await fake.slash(
        "separate", world.alice, world.guild, options={"file": fake.host("song.mp3", song)}, attachment_size_limit=1000
    )
    followups = await delivered(fake, lambda: interaction.followups)
    assert len(followups) == 1 and followups[0].files == []  # nothing fits: the summary alone, with links
    result = await service.result((await only_job(service)).id)
    download = next(f["value"] for f in followups[0].embeds[0]["fields"] if f["name"] == "Download")
    assert all(stem.url in download for stem in result.stems)


async def test_link_outliving_the_token_is_posted_in_the_channel(
    fake, world, make_bot, worker, service, http_server, tmp_path
):
    root, base = http_server
    write_audio(root / "song.wav", music(2.5, seed=3), extra_args=("-metadata", "title=Test Song"))
    await make_bot(token_lifetime=timedelta(0))  # as if the job ran past Discord's 15 minutes
    interaction = await fake.slash("separate", world.alice, world.guild, options={"link": f"{base}/song.wav"})

    messages = await delivered(fake, lambda: fake.channel_messages(world.channel))
    assert interaction.callback == {"type": 5}
    assert interaction.followups == [] and interaction.edits == []  # the token is not used any more
    assert all(m.content.startswith(f"<@{world.alice.id}>") for m in messages)
    for message in messages:  # only the summary pings alice, and nobody a song title might name
        mentions = message.payload["allowed_mentions"]
        pinged = [world.alice.id] if message is messages[-1] else []
        assert mentions["parse"] == [] and [int(u) for u in mentions["users"]] == pinged
    assert_stems(messages, tmp_path)
    assert_summary(messages[-1].embeds[0], await service.result((await only_job(service)).id))


async def test_followup_refused_falls_back_to_the_channel(fake, world, make_bot, worker, service, song):
    await make_bot()
    interaction = await fake.slash("separate", world.alice, world.guild, options={"file": fake.host("song.mp3", song)})
    await fake.wait_for(lambda: interaction.deferred)
    fake.expire(interaction)  # Discord refuses the token (e.g. a clock ran fast)
    messages = await delivered(fake, lambda: fake.channel_messages(world.channel))
    assert len(messages) == 3 and interaction.followups == []


async def test_failed_job_is_an_ephemeral_notice_and_refunded(fake, world, make_bot, worker, service, http_server):
    root, base = http_server
    (root / "page.html").write_text("<html>no media here</html>")
    await make_bot()
    interaction = await fake.slash("separate", world.alice, world.guild, options={"link": f"{base}/page.html"})
    notice = (await fake.wait_for(lambda: interaction.followups, 60))[0]
    assert notice.ephemeral and "couldn't separate" in notice.content
    assert interaction.deleted  # the public progress message is gone
    assert "1 of 1 song left" in await quota_text(fake, world.alice, world.guild)


async def test_failure_after_the_token_goes_by_dm_when_the_channel_is_gone(
    fake, world, make_bot, worker, service, http_server
):
    root, base = http_server
    (root / "page.html").write_text("<html>no media here</html>")
    await make_bot(token_lifetime=timedelta(0))
    interaction = await fake.slash("separate", world.alice, world.guild, options={"link": f"{base}/page.html"})
    await fake.wait_for(lambda: interaction.deferred)
    fake.delete_channel(world.guild, world.channel)
    dm = (await fake.wait_for(lambda: fake.dms(world.alice), 60))[0]
    assert dm.content.startswith(f"<@{world.alice.id}>") and "couldn't separate" in dm.content


async def test_restart_loses_nothing(fake, world, make_bot, bot_settings, engine, service, song, tmp_path):
    # A job finishes while the bot is down: the next bot posts it in the channel on start-up.
    first = await make_bot()
    interaction = await fake.slash("separate", world.alice, world.guild, options={"file": fake.host("song.mp3", song)})
    await fake.wait_for(lambda: interaction.deferred)
    job = await only_job(service)
    await first.stop()
    worker = await start_worker(bot_settings, engine)
    try:
        await wait_for_status(service, job.id, JobStatus.DONE)
    finally:
        await worker.stop()
    second = await make_bot()
    messages = await delivered(fake, lambda: fake.channel_messages(world.channel), 30)
    assert messages[-1].content.startswith(f"<@{world.alice.id}>")
    assert_stems(messages, tmp_path)
    assert interaction.followups == []

    # A job still queued when the bot restarts: the new bot follows it and delivers it when it is done.
    later = await fake.slash("separate", world.patron, world.guild, options={"file": fake.host("song.mp3", song)})
    await fake.wait_for(lambda: later.deferred)
    await second.stop()
    await make_bot()
    worker = await start_worker(bot_settings, engine)
    try:
        await fake.wait_for(lambda: len(fake.channel_messages(world.channel)) == 6, 60)
    finally:
        await worker.stop()
    assert fake.channel_messages(world.channel)[5].content.startswith(f"<@{world.patron.id}>")
    await asyncio.sleep(0.3)
    assert len(fake.channel_messages()) == 6  # each result exactly once: two stems and a summary each
    assert await service.undelivered_jobs() == []


# -- refusals ---------------------------------------------------------------------------------------------


async def test_bad_inputs_are_ephemeral_and_cost_nothing(fake, world, make_bot, service, song, bot_settings):
    await make_bot()
    text_file = fake.host("notes.txt", b"definitely not audio\n" * 200, content_type="text/plain")
    huge = dataclasses.replace(fake.host("huge.wav", b"RIFF"), size=bot_settings.max_input_bytes + 1)
    cases = [
        ({"file": text_file}, ""),
        ({"file": huge}, "larger than"),
        ({"link": "ftp://example.com/song.mp3"}, "link"),
        ({"link": "just some words"}, "link"),
        ({}, "either"),
        ({"link": "http://127.0.0.1:9/x.mp3", "file": fake.host("song.mp3", song)}, "either"),
    ]
    for options, expected in cases:
        interaction = await fake.slash("separate", world.alice, world.guild, options=options)
        message = await reply(fake, interaction)
        assert message.ephemeral and message.content and expected in message.content, (options, message.content)
    assert await list_jobs(service.db, *JobStatus) == []

    accepted = await fake.slash("separate", world.alice, world.guild, options={"file": fake.host("song.mp3", song)})
    await fake.wait_for(lambda: accepted.deferred)
    refused = await fake.slash("separate", world.alice, world.guild, options={"link": "http://127.0.0.1:9/x.mp3"})
    message = await reply(fake, refused)
    assert message.ephemeral and "frees up" in message.content
    assert len(await list_jobs(service.db, *JobStatus)) == 1
    assert "0 of 1 song left" in await quota_text(fake, world.alice, world.guild)


async def test_slow_submission_defers_first_then_refuses_privately(fake, world, make_bot, service, monkeypatch):
    monkeypatch.setattr(cog_module, "ACK_BUDGET_S", 0.0)  # as if downloading the file took more than 2 s
    await make_bot()
    text_file = fake.host("notes.txt", b"definitely not audio\n" * 200, content_type="text/plain")
    interaction = await fake.slash("separate", world.alice, world.guild, options={"file": text_file})
    notice = (await fake.wait_for(lambda: interaction.followups))[0]
    assert interaction.callback == {"type": 5}
    assert interaction.deleted and notice.ephemeral  # the public placeholder went; only alice sees why
    assert await list_jobs(service.db, *JobStatus) == []


async def test_separate_stems_message_command(fake, world, make_bot, service, song):
    await make_bot()
    no_audio = fake.message(world.alice, world.channel, "hello there")
    interaction = await fake.message_command("Separate stems", world.alice, no_audio, world.guild)
    assert (await reply(fake, interaction)).ephemeral

    with_song = fake.message(world.patron, world.channel, "new track!", [fake.host("track.mp3", song)])
    interaction = await fake.message_command("Separate stems", world.alice, with_song, world.guild)
    await fake.wait_for(lambda: interaction.deferred and interaction.edits)
    assert "track.mp3" in interaction.edits[0].content and "queue" in interaction.edits[0].content
    job = await only_job(service)
    assert job.source == "track.mp3" and job.delivery["user_id"] == str(world.alice.id)


# -- Pro, quota, admins ----------------------------------------------------------------------------------


async def test_pro_role_holders_get_the_pro_quota(fake, world, make_bot, service):
    await make_bot()
    assert "**Free** plan: 1 of 1 song left" in await quota_text(fake, world.patron, world.guild)  # no role set yet

    set_role = await fake.slash(
        "stembot", world.admin, world.guild, subcommand="pro-role", options={"role": world.pro_role}
    )
    assert (await reply(fake, set_role)).ephemeral
    assert await service.guild_setting(world.guild.id, "pro_role_id") == str(world.pro_role.id)

    assert "**Pro** plan: 20 of 20 songs left" in await quota_text(fake, world.patron, world.guild)
    assert "**Free** plan: 1 of 1 song left" in await quota_text(fake, world.alice, world.guild)
    # In DMs: the member's roles in the home guild (DISCORD_HOME_GUILD_ID) count.
    assert "**Pro** plan" in await quota_text(fake, world.patron, None)
    assert "**Free** plan" in await quota_text(fake, world.alice, None)


async def test_admin_commands_are_refused_for_non_admins(fake, world, make_bot, service):
    await make_bot()
    stembot = next(c for c in fake.commands[None] if c["name"] == "stembot")
    assert int(stembot["default_member_permissions"]) == MANAGE_GUILD and stembot["contexts"] == [0]
    for subcommand, options in [
        ("status", {}),
        ("pro-role", {"role": world.pro_role}),
        ("grant", {"member": world.alice}),
        ("revoke", {"member": world.patron}),
    ]:
        interaction = await fake.slash("stembot", world.alice, world.guild, subcommand=subcommand, options=options)
        message = await reply(fake, interaction)
        assert message.ephemeral and "admins" in message.content
    assert fake.role_changes == [] and await service.guild_setting(world.guild.id, "pro_role_id") is None
    assert not (await service.quota(UserIdentity("discord", str(world.alice.id)))).pro

    status = await fake.slash("stembot", world.admin, world.guild, subcommand="status")
    message = await reply(fake, status)
    assert message.ephemeral and "waiting" in message.text() and "not set" in message.text()


@pytest.mark.parametrize("manage_roles", [True, False], ids=["bot-manages-roles", "grant-recorded"])
async def test_grant_and_revoke(fake, world, make_bot, service, manage_roles):
    bot_role = next(r for r in world.guild.roles.values() if r.name == "StemBot")
    if manage_roles:
        bot_role.permissions |= MANAGE_ROLES
    await make_bot()
    await reply(
        fake,
        await fake.slash("stembot", world.admin, world.guild, subcommand="pro-role", options={"role": world.pro_role}),
    )

    granted = await reply(
        fake, await fake.slash("stembot", world.admin, world.guild, subcommand="grant", options={"member": world.alice})
    )
    assert granted.ephemeral
    if manage_roles:
        assert fake.role_changes == [("PUT", world.guild.id, world.alice.id, world.pro_role.id)]
        assert world.pro_role.id in world.guild.members[world.alice.id]
    else:
        assert fake.role_changes == [] and "recorded" in granted.content
    assert "**Pro** plan" in await quota_text(fake, world.alice, world.guild)

    revoked = await reply(
        fake,
        await fake.slash("stembot", world.admin, world.guild, subcommand="revoke", options={"member": world.alice}),
    )
    assert revoked.ephemeral and "Removed" in revoked.content
    if manage_roles:
        assert fake.role_changes[-1] == ("DELETE", world.guild.id, world.alice.id, world.pro_role.id)
    assert "**Free** plan" in await quota_text(fake, world.alice, world.guild)
    assert "**Free** plan" in await quota_text(fake, world.alice, None)

    timed = await reply(
        fake,
        await fake.slash(
            "stembot", world.admin, world.guild, subcommand="grant", options={"member": world.alice, "days": 7}
        ),
    )
    assert "recorded" in timed.content  # a role can't expire by itself, so timed grants are always recorded
    assert "**Pro** plan" in await quota_text(fake, world.alice, None)


# -- Pro is scoped: a server's admins act for their server, operators for everywhere ------------------------


async def test_a_strangers_own_server_grants_pro_there_only(fake, world, den, make_bot, service):
    await make_bot()
    # Anyone can add the bot to a server of their own and grant themselves open-ended Pro: it holds there only.
    granted = await admin(fake, "grant", den.stranger, den.guild, member=den.stranger)
    assert "Pro in this server" in granted.content
    assert await plans(fake, den.stranger, den.guild, world.guild, None) == ["Pro", "Free", "Free"]

    refused = await admin(fake, "grant", den.stranger, den.guild, member=den.stranger, scope="everywhere")
    assert "operators" in refused.content
    # Nor may the operator's own server admins, unless they are operators (DISCORD_OWNER_IDS).
    refused = await admin(fake, "grant", world.admin, world.guild, member=world.alice, scope="everywhere")
    assert "operators" in refused.content
    assert await plans(fake, den.stranger, world.guild, None) == ["Free", "Free"]
    assert await plans(fake, world.alice, world.guild, den.guild, None) == ["Free"] * 3
    assert await service.pro_status(UserIdentity("telegram", "1")) is None


async def test_only_operators_grant_and_revoke_everywhere(fake, world, den, make_bot):
    await make_bot()
    granted = await admin(fake, "grant", world.owner, world.guild, member=world.alice, scope="everywhere")
    assert "everywhere" in granted.content
    assert await plans(fake, world.alice, world.guild, den.guild, None) == ["Pro"] * 3

    # The stranger's server can't take away what the operators gave.
    kept = await admin(fake, "revoke", den.stranger, den.guild, member=world.alice)
    assert "no Pro role or grant in this server" in kept.content and "only the operators" in kept.content
    refused = await admin(fake, "revoke", den.stranger, den.guild, member=world.alice, scope="everywhere")
    assert "operators" in refused.content
    assert await plans(fake, world.alice, world.guild, den.guild, None) == ["Pro"] * 3

    ended = await admin(fake, "revoke", world.owner, world.guild, member=world.alice, scope="everywhere")
    assert "Ended" in ended.content
    assert await plans(fake, world.alice, world.guild, den.guild, None) == ["Free"] * 3
    again = await admin(fake, "revoke", world.owner, world.guild, member=world.alice, scope="everywhere")
    assert "had no Pro grant for everywhere" in again.content


async def test_server_admins_revoke_only_their_servers_grants(fake, world, den, make_bot):
    await make_bot()
    await admin(fake, "grant", world.admin, world.guild, member=world.alice, days=7)  # the home server's
    await admin(fake, "grant", den.stranger, den.guild, member=world.alice)
    assert await plans(fake, world.alice, world.guild, den.guild, None) == ["Pro"] * 3

    revoked = await admin(fake, "revoke", den.stranger, den.guild, member=world.alice)
    assert "Removed this server's StemBot grant" in revoked.content and "operators" not in revoked.content
    # The home server's grant stays, and reaches DMs as the home server's Pro does.
    assert await plans(fake, world.alice, den.guild, world.guild, None) == ["Free", "Pro", "Pro"]


async def test_a_pro_role_counts_only_in_the_server_that_set_it(fake, world, den, make_bot, service):
    await make_bot()
    await admin(fake, "pro-role", world.admin, world.guild, role=world.pro_role)  # the operator's Patreon role
    await admin(fake, "pro-role", den.stranger, den.guild, role=den.vip_role)  # a role the stranger hands out
    code = await service.link_code(UserIdentity("telegram", "777", "Tg Alice"))
    await reply(fake, await fake.slash("link", world.alice, None, options={"code": code.code}))

    # alice holds the stranger's VIP role: Pro in his server, nowhere else. Seen there last, it still doesn't
    # reach her linked Telegram account (only the home server's role is remembered for elsewhere).
    assert await plans(fake, world.alice, den.guild) == ["Pro"]
    assert not (await service.quota(UserIdentity("telegram", "777"))).pro
    assert await plans(fake, world.alice, world.guild, None) == ["Free", "Free"]
    # The patron holds the home server's role: Pro there and, through DISCORD_HOME_GUILD_ID, in DMs; the
    # stranger's server counts only its own role.
    assert await plans(fake, world.patron, world.guild, None, den.guild) == ["Pro", "Pro", "Free"]


async def test_without_a_home_server_no_role_counts_in_dms(fake, world, make_bot, bot_settings):
    settings = bot_settings.replace(discord_home_guild_id=None)
    async with await SeparationService.start(settings) as service:
        bot = await make_bot(settings, with_service=service)
        try:
            await admin(fake, "pro-role", world.admin, world.guild, role=world.pro_role)
            assert await plans(fake, world.patron, world.guild, None) == ["Pro", "Free"]
        finally:
            await bot.stop()


async def test_commands_sync_to_the_configured_guild(fake, world, make_bot, bot_settings):
    await make_bot(settings=bot_settings.replace(discord_guild_id=world.guild.id))
    names = {c["name"] for c in fake.commands[world.guild.id]}
    assert names == {"separate", "Separate stems", "mode", "quota", "link", "help", "stembot"}
    interaction = await fake.slash("help", world.alice, world.guild)
    assert interaction.payload["data"]["guild_id"] == str(world.guild.id)
    assert (await reply(fake, interaction)).ephemeral


async def test_link_help_and_the_telegram_code(fake, world, den, make_bot, service):
    await make_bot()
    code = await service.link_code(UserIdentity("telegram", "777", "Tg Alice"))
    message = await reply(fake, await fake.slash("link", world.alice, None, options={"code": code.code}))
    assert message.ephemeral and "Linked" in message.content
    await service.grant_pro("telegram:admin", UserIdentity("telegram", "777"))  # Telegram's /grant: everywhere
    assert await plans(fake, world.alice, world.guild, den.guild, None) == ["Pro"] * 3  # it counts here too

    help_message = await reply(fake, await fake.slash("help", world.alice, world.guild))
    assert help_message.ephemeral and "/separate" in help_message.text()


# -- the command --------------------------------------------------------------------------------------------


async def test_stembot_discord_runs_until_sigterm(fake, world, bot_settings, tmp_path):
    """The CLI entry point: settings from the environment, the bot up, a clean stop on SIGTERM."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(service_env(tmp_path / "data", bot_settings.model_dir, redis_db=REDIS_DB, **fake.settings_env()))
    code = (
        "import sys; from stembot.commands import discord; from stembot.settings import Settings; "
        "sys.exit(discord.run(None, Settings.from_env()))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        await fake.wait_for(lambda: fake.identifies, 30)
        help_message = await reply(fake, await fake.slash("help", world.alice, world.guild))
        assert help_message.ephemeral and "StemBot" in help_message.text()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, output.decode()
    assert fake.token.encode() not in output


def test_stembot_discord_subcommand(tmp_path):
    parser = argparse.ArgumentParser()
    discord_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["discord"])
    settings = Settings.from_env({"STEMBOT_DATA_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match="DISCORD_BOT_TOKEN"):
        args.handler(args, settings)


def test_discord_owner_ids_setting(tmp_path):
    env = {"STEMBOT_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(env).discord_owner_ids == ()
    assert Settings.from_env({**env, "DISCORD_OWNER_IDS": "12, 34"}).discord_owner_ids == (12, 34)
    with pytest.raises(SettingsError, match="DISCORD_OWNER_IDS"):
        Settings.from_env({**env, "DISCORD_OWNER_IDS": "@me"})
