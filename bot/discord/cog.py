"""The slash commands: parse the interaction, ask the service, answer. Nothing else lives here."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable
from pathlib import Path
from typing import Literal, TypeVar

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot.requests import JobHandle, LinkSource, Refusal, RefusalCode, UploadSource, UserIdentity
from bot.service import SeparationService
from bot.staging import staged_upload
from bot.wording import mode_title
from separation_worker.contract.modes import MODE_NAMES
from stembot.settings import Settings
from storage import ProReason, safe_filename

from . import members, texts
from .delivery import Deliveries, delivery_info

log = logging.getLogger(__name__)

T = TypeVar("T")

# Discord wants an answer within 3 s. Short work (a link, a small file) answers directly, so that a refusal can
# be a plain ephemeral reply; longer work defers first.
ACK_BUDGET_S = 2.0
DOWNLOAD_CHUNK = 1 << 20
MEDIA_SUFFIXES = tuple(
    ".mp3 .wav .flac .ogg .oga .opus .m4a .aac .wma .aif .aiff .mp4 .m4v .mov .webm .mkv .avi".split()
)
LINK = re.compile(r"https?://[^\s<>]+")
Scope = Literal["server", "everywhere"]  # where a grant holds; "everywhere" is for operators only
# The separation modes as choices: "Full stems" shown, "stems" sent. Which a user may pick the service decides.
MODE_CHOICES = [app_commands.Choice(name=mode_title(name), value=name) for name in MODE_NAMES]


class StemCog(commands.Cog):
    """/separate (and the "Separate stems" message command), /mode, /quota, /link, /help, and /stembot for admins."""

    stembot = app_commands.Group(
        name="stembot",
        description="StemBot settings for this server (admins)",
        allowed_contexts=app_commands.AppCommandContext(guild=True),
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: commands.Bot, service: SeparationService, settings: Settings, deliveries: Deliveries):
        self.bot = bot
        self.service = service
        self.settings = settings
        self.deliveries = deliveries
        self._http: aiohttp.ClientSession | None = None
        # Context menus can't be declared as cog methods in discord.py; this one is added to the tree on load.
        self.separate_menu = app_commands.ContextMenu(
            name="Separate stems",
            callback=self.separate_message,
            allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True),
        )

    async def cog_load(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60))
        self.bot.tree.add_command(self.separate_menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.separate_menu.name, type=self.separate_menu.type)
        await self.deliveries.close()
        if self._http is not None:
            await self._http.close()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Per-user rate limit on every command of this cog (refused politely, at no cost)."""
        refusal = await self.service.allow_command(UserIdentity("discord", str(interaction.user.id)))
        if refusal is not None:
            await _refuse(interaction, refusal.message)
            return False
        return True

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        # Also after a reconnect: resuming is idempotent (one watcher per job, deliveries claimed).
        await self.deliveries.resume()

    # -- separating ----------------------------------------------------------------------------------

    @app_commands.command(name="separate", description=texts.SEPARATE_DESCRIPTION)
    @app_commands.describe(
        link="A YouTube, SoundCloud or TikTok link, or any direct link",
        file="An audio or video file",
        mode="Which stems (default: your /mode, else vocals)",
    )
    @app_commands.choices(mode=MODE_CHOICES)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def separate(
        self,
        interaction: discord.Interaction,
        link: str | None = None,
        file: discord.Attachment | None = None,
        mode: app_commands.Choice[str] | None = None,
    ) -> None:
        if (link is None) == (file is None):
            await _refuse(interaction, texts.ONE_SOURCE)
            return
        await self._start(interaction, attachment=file, url=link, mode=mode.value if mode else None)

    async def separate_message(self, interaction: discord.Interaction, message: discord.Message) -> None:
        attachment = _media_attachment(message)
        url = None if attachment else _first_link(message.content)
        if attachment is None and url is None:
            await _refuse(interaction, texts.NO_AUDIO_IN_MESSAGE)
            return
        await self._start(interaction, attachment=attachment, url=url)  # in the user's default mode

    async def _start(
        self,
        interaction: discord.Interaction,
        attachment: discord.Attachment | None,
        url: str | None,
        mode: str | None = None,
    ) -> None:
        if attachment is not None and attachment.size > self.settings.max_input_bytes:
            await _refuse(interaction, texts.too_large(self.settings.max_input_bytes))
            return
        outcome = await _within_ack(interaction, self._submit(interaction, attachment, url, mode))
        if isinstance(outcome, Refusal):
            await _refuse(interaction, outcome.message)
            return
        acknowledged = interaction.response.is_done() or await _defer(interaction)
        # Without an acknowledged interaction the job still runs; its result then comes as a channel message.
        self.deliveries.follow(outcome.job_id, interaction if acknowledged else None)

    async def _submit(
        self,
        interaction: discord.Interaction,
        attachment: discord.Attachment | None,
        url: str | None,
        mode: str | None,
    ) -> JobHandle | Refusal:
        who = await members.identity(interaction, self.service, self.settings.discord_home_guild_id)
        delivery = delivery_info(interaction)
        if attachment is None:
            return await self.service.submit(who, LinkSource((url or "").strip()), delivery=delivery, mode=mode)
        # Mode, quota, queue and declared size first: a refused song is never downloaded.
        refusal = await self._mode_refusal(who, mode) or await self.service.precheck(who, size=attachment.size)
        if refusal is not None:
            return refusal
        async with staged_upload(self.service.files) as staging:
            path = staging / safe_filename(attachment.filename, "upload")
            try:
                complete = await self._download(attachment.url, path)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                log.warning("attachment download failed (%s)", type(exc).__name__)
                return Refusal(RefusalCode.DOWNLOAD_FAILED, texts.DOWNLOAD_FAILED)
            if not complete:
                return Refusal(RefusalCode.TOO_LARGE, texts.too_large(self.settings.max_input_bytes))
            upload = UploadSource(attachment.filename, path=path, movable=True)
            return await self.service.submit(who, upload, delivery=delivery, mode=mode)

    async def _mode_refusal(self, who: UserIdentity, mode: str | None) -> Refusal | None:
        """A mode the user's tier may not pick, refused before any download (submit checks it again)."""
        if mode is None:
            return None
        options = {option.name: option for option in await self.service.mode_options(who)}
        if mode in options and not options[mode].allowed:
            return Refusal(RefusalCode.PRO_MODE, self.service.wording.pro_mode(mode))
        return None

    async def _download(self, url: str, dest: Path) -> bool:
        """Stream the attachment to `dest` (songs can be large: never whole in memory). False if over the limit."""
        assert self._http is not None
        size = 0
        async with self._http.get(url) as response:
            response.raise_for_status()
            with dest.open("wb") as out:
                async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK):
                    size += len(chunk)
                    if size > self.settings.max_input_bytes:
                        return False
                    await asyncio.to_thread(out.write, chunk)
        return True

    # -- modes ----------------------------------------------------------------------------------------

    @app_commands.command(name="mode", description="Which stems your songs are split into: see or change your default")
    @app_commands.describe(mode="Your new default (leave out to see the modes and your current one)")
    @app_commands.choices(mode=MODE_CHOICES)
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def mode(self, interaction: discord.Interaction, mode: app_commands.Choice[str] | None = None) -> None:
        who = await members.identity(interaction, self.service, self.settings.discord_home_guild_id)
        if mode is None:
            current = await self.service.default_mode(who)
            names = [option.name for option in await self.service.mode_options(who)]
            text = texts.modes(current, [(name, self.service.wording.mode_line(name)) for name in names])
            await interaction.response.send_message(text, ephemeral=True)
            return
        answer = await self.service.set_default_mode(who, mode.value)
        text = answer.message if isinstance(answer, Refusal) else answer
        await interaction.response.send_message(text, ephemeral=True)

    # -- account --------------------------------------------------------------------------------------

    @app_commands.command(name="quota", description="How many songs you have left today")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def quota(self, interaction: discord.Interaction) -> None:
        who = await members.identity(interaction, self.service, self.settings.discord_home_guild_id)
        info = await self.service.quota(who)
        await interaction.response.send_message(texts.quota(info, self.settings.pro_songs_per_day), ephemeral=True)

    @app_commands.command(
        name="link", description="Link your Telegram account (use the code from the Telegram bot's /link)"
    )
    @app_commands.describe(code="The code the Telegram bot gave you")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def link(self, interaction: discord.Interaction, code: str) -> None:
        who = await members.identity(interaction, self.service, self.settings.discord_home_guild_id)
        message = await self.service.redeem_link_code(who, code)
        await interaction.response.send_message(message, ephemeral=True)

    @app_commands.command(name="help", description="What StemBot does, and its limits")
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
    async def help(self, interaction: discord.Interaction) -> None:
        s = self.settings
        embed = texts.help_embed(
            s.free_songs_per_day,
            s.pro_songs_per_day,
            int(s.max_duration_seconds // 60),
            s.max_input_bytes // (1024 * 1024),
            round(s.file_ttl_hours),
            [self.service.wording.mode_line(name) for name in MODE_NAMES if name in s.pro_modes + s.free_modes],
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    # -- admins -----------------------------------------------------------------------------------------
    # Discord hides these from non-admins (default_permissions); the checks re-verify, since server owners
    # can override command permissions.

    @stembot.command(name="pro-role", description="Set the role that gets the Pro plan (e.g. your Patreon tier role)")
    @app_commands.describe(role="Members holding this role get the Pro plan")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def set_pro_role(self, interaction: discord.Interaction, role: discord.Role) -> None:
        if role.is_default():
            await _refuse(interaction, texts.NOT_EVERYONE)
            return
        await self.service.set_guild_setting(role.guild.id, members.PRO_ROLE_KEY, str(role.id))
        await interaction.response.send_message(texts.pro_role_set(role, members.can_manage(role)), ephemeral=True)

    @stembot.command(name="grant", description="Give a member the Pro plan")
    @app_commands.describe(
        member="Who gets Pro",
        days="For how many days (default: until revoked)",
        scope="Where it holds: this server (default), or everywhere (StemBot operators only)",
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def grant(
        self,
        interaction: discord.Interaction,
        member: discord.Member,
        days: app_commands.Range[int, 1, 3650] | None = None,
        scope: Scope = "server",
    ) -> None:
        assert interaction.guild is not None
        if scope == "everywhere":
            if await self._refuse_non_operator(interaction):
                return
            grant = await self.service.grant_pro(_by(interaction), members.member_identity(member), days=days)
            await interaction.response.send_message(texts.granted_everywhere(member, grant.until), ephemeral=True)
            return
        role = await members.pro_role(self.service, interaction.guild)
        # A role can't expire by itself, so a grant for some days is always recorded by StemBot.
        if role is not None and days is None and members.can_manage(role):
            try:
                await member.add_roles(role, reason=f"StemBot: Pro granted by {interaction.user}")
            except discord.Forbidden:
                log.info("adding the Pro role was refused; recording a grant instead")
            else:
                await self.service.pro_status(members.member_identity(member, holds_pro_role=True))
                await interaction.response.send_message(texts.granted_role(member, role), ephemeral=True)
                return
        grant = await self.service.grant_pro(
            _by(interaction), members.member_identity(member), days=days, guild_id=interaction.guild.id
        )
        await interaction.response.send_message(texts.granted_record(member, grant.until), ephemeral=True)

    @stembot.command(name="revoke", description="Take a member's Pro plan away")
    @app_commands.describe(
        member="Whose Pro ends",
        scope="Which grant: this server's (default), or the one for everywhere (StemBot operators only)",
    )
    @app_commands.checks.has_permissions(manage_guild=True)
    async def revoke(self, interaction: discord.Interaction, member: discord.Member, scope: Scope = "server") -> None:
        assert interaction.guild is not None
        if scope == "everywhere":
            if await self._refuse_non_operator(interaction):
                return
            revoked = await self.service.revoke_pro(members.member_identity(member))
            await interaction.response.send_message(texts.revoked_everywhere(member, revoked), ephemeral=True)
            return
        role = await members.pro_role(self.service, interaction.guild)
        holds = removed = False
        if role is not None and member.get_role(role.id) is not None:
            holds = True
            if members.can_manage(role):
                try:
                    await member.remove_roles(role, reason=f"StemBot: Pro revoked by {interaction.user}")
                    removed, holds = True, False
                except discord.Forbidden:
                    log.info("removing the Pro role was refused")
        revoked = await self.service.revoke_pro(members.member_identity(member), guild_id=interaction.guild.id)
        # Also remembers what they hold now (in the home server), so DMs and linked accounts follow at once.
        reason = await self.service.pro_status(members.member_identity(member, holds if role is not None else None))
        text = texts.revoked(member, removed, revoked) + (texts.CANT_REMOVE_ROLE if holds else "")
        if reason in (ProReason.GRANT, ProReason.LINKED_GRANT):  # this server's grant is gone: that one is global
            text += texts.STILL_PRO_EVERYWHERE
        await interaction.response.send_message(text, ephemeral=True)

    async def _refuse_non_operator(self, interaction: discord.Interaction) -> bool:
        """Grants for everywhere are the operators' (DISCORD_OWNER_IDS): refuse anyone else. True if refused."""
        if interaction.user.id in self.settings.discord_owner_ids:
            return False
        await _refuse(interaction, texts.OPERATORS_ONLY)
        return True

    @stembot.command(name="status", description="The queue, and this server's StemBot settings")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def status(self, interaction: discord.Interaction) -> None:
        assert interaction.guild is not None
        queue = await self.service.queue_status()
        role = await members.pro_role(self.service, interaction.guild)
        manageable = role is not None and members.can_manage(role)
        s = self.settings
        embed = texts.status_embed(queue, role, manageable, s.free_songs_per_day, s.pro_songs_per_day)
        await interaction.response.send_message(embed=embed, ephemeral=True)


async def _within_ack(interaction: discord.Interaction, work: Awaitable[T]) -> T:
    """Run `work`; if it outlasts the acknowledgement budget, defer meanwhile."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=ACK_BUDGET_S)
    if not done:
        await _defer(interaction)
    return await task


async def _defer(interaction: discord.Interaction) -> bool:
    try:
        await interaction.response.defer(thinking=True)
        return True
    except discord.HTTPException as exc:  # e.g. the interaction expired meanwhile
        log.warning("could not defer an interaction (HTTP %s)", exc.status)
        return False


async def _refuse(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral reply: only the user sees it. After a (public) defer, the placeholder goes first."""
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True)
        return
    try:
        await interaction.delete_original_response()
    except discord.HTTPException:
        pass
    await interaction.followup.send(text, ephemeral=True)


def _by(interaction: discord.Interaction) -> str:
    return f"discord:{interaction.user.id}"


def _media_attachment(message: discord.Message) -> discord.Attachment | None:
    for attachment in message.attachments:
        kind = (attachment.content_type or "").split(";")[0].strip().lower()
        if kind.startswith(("audio/", "video/")) or attachment.filename.lower().endswith(MEDIA_SUFFIXES):
            return attachment
    return None


def _first_link(content: str) -> str | None:
    match = LINK.search(content or "")
    return match.group(0).rstrip(").,!?'\"") if match else None
