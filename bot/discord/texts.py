"""Everything the Discord bot says: short, friendly, and free of accidental markdown or mentions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import discord

from bot import progress_text
from bot.requests import JobResult, QuotaInfo, StemFile
from bot.wording import mode_title
from separation_worker.contract import messages
from separation_worker.contract.manifest import stem_label
from separation_worker.contract.messages import format_duration
from separation_worker.contract.modes import DEFAULT_MODE
from separation_worker.contract.progress_bus import JobEvent

BRAND = discord.Colour(0x5865F2)
MAX_LABEL = 80

ONE_SOURCE = "Give me either a `link` or a `file` (one of the two)."
NO_AUDIO_IN_MESSAGE = "That message has no audio file or link I could separate."
DOWNLOAD_FAILED = "I couldn't download that file from Discord. Please try again."
ADMIN_ONLY = "Only server admins (Manage Server permission) can do that."
GUILD_ONLY = "That only works in a server."
NOT_EVERYONE = "Pick a real role, not @everyone."
OOPS = "Something went wrong on my side. Please try again in a minute."
SEPARATE_DESCRIPTION = "Split a song into vocals and instrumental, or into the stems of another mode"


too_large = messages.too_large


def label(source: str) -> str:
    """A job's file name or link, shortened and escaped for display."""
    text = source if len(source) <= MAX_LABEL else source[: MAX_LABEL - 1] + "…"
    return discord.utils.escape_markdown(text)


def heading(source: str, mode: str | None = None) -> str:
    """The song, and its mode unless it is the default one: "**song.mp3** (Karaoke)"."""
    named = f" ({mode_title(mode)})" if mode and mode != DEFAULT_MODE else ""
    return f"**{label(source)}**{named}"


def progress(event: JobEvent, source: str, mode: str | None = None) -> str:
    """The deferred response while the job moves: the song (and its mode), then the shared status line."""
    return f"{heading(source, mode)}\n{progress_text.describe(event)}"


def uploading(source: str, mode: str | None = None) -> str:
    return f"{heading(source, mode)}\n{progress_text.UPLOADING}"


def done(title: str) -> str:
    return f"✅ **{discord.utils.escape_markdown(title)}** is ready: your stems are below."


def ready_for(user_id: int, title: str) -> str:
    return f"<@{user_id}> your stems for **{discord.utils.escape_markdown(title)}** are ready."


def failed(source: str, reason: str | None) -> str:
    why = reason or "Something went wrong while separating it."
    return f"Sorry, I couldn't separate **{label(source)}**. {why} It didn't count against your songs for today."


def failed_for(user_id: int, source: str, reason: str | None) -> str:
    return f"<@{user_id}> {failed(source, reason)}"


def expired_for(user_id: int, source: str) -> str:
    return f"<@{user_id}> the stems for **{label(source)}** expired before I could deliver them. Sorry!"


def result_embed(result: JobResult, linked: list[StemFile]) -> discord.Embed:
    """The summary card: length, tempo and key, loudness, models; download links for stems not attached."""
    embed = discord.Embed(title=result.title[:256], colour=BRAND)
    embed.add_field(name="Length", value=format_duration(result.duration))
    embed.add_field(name="Tempo & key", value=result.summary)
    embed.add_field(name="Loudness", value=_loudness(result), inline=False)
    if result.models:
        embed.add_field(name="Models", value=_models(result.models), inline=False)
    if linked:
        links = " · ".join(f"[{_stem_name(s)}]({s.url})" for s in linked)
        expires = discord.utils.format_dt(result.expires_at, "R")
        embed.add_field(name="Download", value=f"{links}\nLinks expire {expires}.", inline=False)
    return embed


def _stem_name(stem: StemFile) -> str:
    return stem_label(stem.name)  # "lead_vocals" -> "Lead Vocals"


def _loudness(result: JobResult) -> str:
    parts = []
    for stem in result.stems:
        info = (result.raw.get("stems", {}).get(stem.name) or {}).get("loudness") or {}
        lufs, peak = info.get("lufs_after"), info.get("true_peak_after_dbtp")
        if stem.silent or lufs is None:
            parts.append(f"{_stem_name(stem)}: silent")
        else:
            peak_text = f" ({peak:.1f} dBTP)" if peak is not None else ""
            parts.append(f"{_stem_name(stem)}: {lufs:.1f} LUFS{peak_text}")
    return " · ".join(parts) or "not measured"


def _models(models: list[dict]) -> str:
    return " · ".join(
        f"{m.get('name', '?')} ({round(float(m['weight']) * 100)} %)"
        if m.get("weight") is not None
        else str(m.get("name"))
        for m in models
    )


def quota(info: QuotaInfo, pro_limit: int) -> str:
    plan = "Pro" if info.pro else "Free"
    songs = f"{info.remaining} of {info.limit} song{'s' if info.limit != 1 else ''} left"
    line = f"**{plan}** plan: {songs} (rolling 24 hours)."
    if info.next_free_at is not None:
        line += f"\nYour next song frees up {_when(info.next_free_at)}."
    if not info.pro:
        line += f"\nPatrons get the Pro plan: {pro_limit} songs a day."
    return line


def _when(at: datetime) -> str:
    return discord.utils.format_dt(at, "R")


def modes(current: str, lines: Sequence[tuple[str, str]]) -> str:
    """/mode without a choice: the user's default, then every mode (name, its line), the default marked."""
    rows = [
        f"▸ **{discord.utils.escape_markdown(line)}** (yours)" if name == current
        else f"• {discord.utils.escape_markdown(line)}"
        for name, line in lines
    ]
    lead = (
        f"Your songs are separated as **{mode_title(current)}**. "
        "Change that with `/mode mode:`, or pick a mode for one song with `/separate … mode:`."
    )
    return "\n".join([lead, *rows])


def help_embed(
    free: int, pro: int, max_minutes: int, max_mb: int, link_hours: int, mode_lines: Sequence[str] = ()
) -> discord.Embed:
    embed = discord.Embed(
        title="StemBot",
        colour=BRAND,
        description=(
            "I split a song into **vocals** and **instrumental** (or into the stems of another mode, below), "
            "even out their loudness, and tell you its tempo and key."
        ),
    )
    embed.add_field(
        name="Use",
        value=(
            "`/separate file:` an audio or video file\n"
            "`/separate link:` YouTube, SoundCloud, TikTok or a direct link\n"
            "`/separate … mode:` which stems, for that song\n"
            "Right-click a message with a song → **Apps → Separate stems**\n"
            "`/mode` your default mode · `/quota` songs left today · `/link` connect your Telegram account"
        ),
        inline=False,
    )
    if mode_lines:
        embed.add_field(
            name="Modes",
            value="\n".join(f"• {discord.utils.escape_markdown(line)}" for line in mode_lines),
            inline=False,
        )
    embed.add_field(
        name="Limits",
        value=(
            f"Free: {free} song{'s' if free != 1 else ''} per 24 hours · Pro (patrons): {pro}\n"
            f"Songs up to {max_minutes} minutes and {max_mb} MB. Download links last {link_hours} hours.\n"
            "Refused songs (bad link, not audio, too long) don't count."
        ),
        inline=False,
    )
    return embed


def status_embed(
    queue: dict[str, int], pro_role: discord.Role | None, manageable: bool, free: int, pro: int
) -> discord.Embed:
    embed = discord.Embed(title="StemBot status", colour=BRAND)
    embed.add_field(name="Queue", value=f"{queue.get('waiting', 0)} waiting · {queue.get('running', 0)} running")
    embed.add_field(name="Songs per 24 h", value=f"Free {free} · Pro {pro}")
    if pro_role is None:
        role = "not set: use `/stembot pro-role`"
    else:
        how = "I can add and remove it" if manageable else "I can't assign it, so grants are recorded by StemBot"
        role = f"{pro_role.mention} ({how})"
    embed.add_field(name="Pro role", value=role, inline=False)
    return embed


def pro_role_set(role: discord.Role, manageable: bool) -> str:
    text = f"Members with {role.mention} now get the Pro plan."
    if not manageable:
        text += (
            "\nI can't assign this role myself (I need **Manage Roles** and a role above it), "
            "so `/stembot grant` will record grants in StemBot instead."
        )
    return text


def granted_role(member: discord.Member, role: discord.Role) -> str:
    return f"Gave {member.mention} the {role.mention} role: they're Pro in this server now."


def granted_record(member: discord.Member, until: datetime | None) -> str:
    return f"{member.mention} is Pro in this server{_until(until)} (recorded by StemBot)."


def granted_everywhere(member: discord.Member, until: datetime | None) -> str:
    return f"{member.mention} is Pro everywhere StemBot runs{_until(until)}."


def _until(until: datetime | None) -> str:
    return f" until {discord.utils.format_dt(until, 'D')}" if until else ""


def revoked(member: discord.Member, role_removed: bool, grant_revoked: bool) -> str:
    if not (role_removed or grant_revoked):
        return f"{member.mention} had no Pro role or grant in this server for me to take away."
    what = " and ".join(
        part for part, done in (("the Pro role", role_removed), ("this server's StemBot grant", grant_revoked)) if done
    )
    return f"Removed {what} from {member.mention}."


def revoked_everywhere(member: discord.Member, revoked: bool) -> str:
    if not revoked:
        return f"{member.mention} had no Pro grant for everywhere to take away."
    return f"Ended {member.mention}'s Pro grant for everywhere."


CANT_REMOVE_ROLE = "\nThey still hold the Pro role, which I'm not allowed to remove: a server admin has to do that."
STILL_PRO_EVERYWHERE = "\nThey're still Pro through a grant from StemBot's operators, which only the operators can end."
OPERATORS_ONLY = (
    "Only StemBot's operators can grant or revoke Pro everywhere. "
    "As a server admin you can grant Pro that holds in this server: leave `scope` at `server`."
)
