"""What the Telegram bot says (HTML parse mode)."""

from __future__ import annotations

from html import escape

from bot.requests import JobResult, ModeOption, QuotaInfo
from bot.wording import Wording, plural
from separation_worker.contract.manifest import stem_label
from separation_worker.contract.manifest import stem_title as manifest_stem_title
from separation_worker.contract.messages import format_duration

HELP = """🎤 <b>StemBot</b> splits a song into <b>vocals</b> and <b>instrumental</b> (or more stems) and tells you its tempo and key.

<b>Send me</b> an audio file, a voice note, a video, or a link (YouTube, TikTok, SoundCloud, any direct link to an audio file).
You get the stems as audio messages, <code>128 BPM · A minor (8A)</code>, and lossless downloads for {kept_for}.

<b>Modes</b> (pick one with the buttons under your song while it waits, or set your default with /mode):
{modes}

<b>Limits</b>: Free: {free} a day · Pro: {pro} a day · songs up to {minutes} minutes · files I can download from Telegram: up to {download_mb} MB (send a link for bigger ones).

<b>Commands</b>
/quota — songs left today
/mode — your default mode: <code>/mode karaoke</code>
/pro — how to get Pro
/link — use your Discord Pro role here too
/cancel — cancel your queued song (not charged)
/help — this message

Your files are deleted {kept_for} after your song is done, and never used for anything else."""

PRO = """⭐ <b>StemBot Pro</b>: {pro} songs a day instead of {free}.

Become a patron on Patreon and join our Discord server: Patreon gives you the Pro role there, and StemBot counts it.
Already Pro on Discord? Send /link here and enter the code in Discord with <code>/link</code>.

Your status: {status}."""

NOT_PRO = "Free"
ADDRESSED_IN_GROUPS = "In groups, reply to me or mention me with your file or link."
NOT_ADMIN = "Only StemBot admins can do that."
NOTHING_TO_CANCEL = "You have no song waiting in the queue."
GRANT_USAGE = "Usage: /grant <user id> [days] (or reply to the user's message)."
REVOKE_USAGE = "Usage: /revoke <user id> (or reply to the user's message)."
NEED_SOURCE = "Send me an audio file, a voice note, a video, or a link to a song."
TOO_BIG_FOR_TELEGRAM = (
    "That file is bigger than the {limit} MB Telegram lets bots download. "
    "Send me a link to it instead (YouTube, SoundCloud, Dropbox, …)."
)
NOT_AUDIO_DOCUMENT = "That file doesn't look like audio or video. Send me an audio file, a video, or a link."
DOWNLOAD_FAILED = "I couldn't download that file from Telegram. Please send it again."
RECEIVED = "📥 Got it, checking your song…"


def granted(user_id: str, until: str) -> str:
    return f"⭐ User {user_id} is Pro{until}, everywhere StemBot runs."


def revoked(user_id: str, revoked: bool) -> str:
    return f"User {user_id}'s Pro grant was revoked." if revoked else f"User {user_id} had no Pro grant."


def quota(info: QuotaInfo, wait: str, pro_songs_per_day: int) -> str:
    plan = "⭐ Pro" if info.pro else "Free"
    lines = [f"<b>{plan}</b>: {info.remaining} of {info.limit} song{'s' if info.limit != 1 else ''} left today."]
    if info.next_free_at is not None:
        lines.append(f"Your next song frees up in {wait}.")
    if not info.pro:
        lines.append(f"Pro gives you {plural(pro_songs_per_day, 'song')} a day: /pro")
    return "\n".join(lines)


def mode_lines(wording: Wording) -> str:
    return "\n".join(f"• {escape(wording.mode_line(mode))}" for mode in wording.pro_modes)


def modes(options: list[ModeOption], current: str, wording: Wording) -> str:
    """/mode's answer: every mode, the user's default marked."""
    lines = [f"{'✅' if o.name == current else '▫️'} <code>{o.name}</code> {escape(wording.mode_line(o.name))}"
             for o in options]
    return "\n".join(["<b>Modes</b>", *lines, "", "Send <code>/mode NAME</code> to make it your default."])


def summary(result: JobResult, links_only: list[str]) -> str:
    lines = [f"🎧 <b>{escape(result.title)}</b> · {format_duration(result.duration)}", escape(result.summary)]
    downloads = " · ".join(
        f'<a href="{escape(stem.lossless_url or stem.url)}">{stem_label(stem.name)}</a>' for stem in result.stems
    )
    lines.append(f"Lossless downloads (until {result.expires_at:%H:%M} UTC): {downloads}")
    if result.page_url:
        lines.append(f'<a href="{escape(result.page_url)}">Listen, compare and download everything</a>')
    if links_only:
        lines.append(f"{', '.join(links_only)} too big to send here; use the links above.")
    silent = [stem_label(s.name) for s in result.stems if s.silent]
    if silent:
        lines.append(f"({', '.join(silent)} {'is' if len(silent) == 1 else 'are'} nearly silent in this song.)")
    return "\n".join(lines)


def stem_title(result: JobResult, stem_name: str) -> str:
    """The audio message's title, as the stem's file is tagged: "Night Drive (Vocals)"."""
    if result.manifest is not None:
        return result.manifest.stem_title(stem_name)
    return manifest_stem_title(result.title, stem_name)


def performer(result: JobResult) -> str | None:
    """The song's artist, when its tags or its page name one (else Telegram shows none)."""
    return result.manifest.artist if result.manifest is not None else None
