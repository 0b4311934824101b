"""Every sentence a user reads about their song: one place, numbers passed in from the settings.

The worker raises these as InputError (bad input: refused at no cost) or records them as a job's
failure; the service and the bots show them as they are. Platform files (bot/telegram/texts.py,
bot/discord/texts.py) only lay out their own commands and cards; bot/wording.py fills these in
with the settings' numbers for the service's refusals.
"""

from __future__ import annotations

# -- files ------------------------------------------------------------------------------------------
NOT_READABLE = "That file isn't audio or video I can read."
NO_AUDIO = "That file has no audio track."
PLAYLIST = "That file is a playlist, not a song: send the audio or video file itself."
EMPTY_FILE = "That file is empty."
SLOW_TO_READ = "That file took too long to read; it may be damaged."
SLOW_TO_DECODE = "That file took too long to decode; it may be damaged."
UNDECODABLE = "That file is damaged or isn't audio I can decode."
TOO_SHORT = "That file has no audio in it (or less than a tenth of a second)."
INVALID_SAMPLES = "That file's audio is damaged (it decodes to invalid samples)."
UPLOAD_GONE = "The uploaded file is gone (it may have expired); please send it again."

# -- links ------------------------------------------------------------------------------------------
PRIVATE_ADDRESS = "That link points to a private or local address, which I can't fetch."
NOT_A_LINK = "That doesn't look like a link I can open. Send an http(s) link or an audio file."
ONLY_HTTP = "Only http(s) links are supported."
NOT_HTTP = "That link leads to something other than an http(s) address, which I can't open."
LIVE = "That's a live stream; send a link to a recording once the stream has ended."
UPCOMING = "That stream hasn't started yet; send a link to the recording once it has ended."
UNKNOWN_HOST = "I couldn't find that website; check the link."
NO_MEDIA = "I couldn't find any media at that link."
PLAYLIST_LINK = "That link is a playlist; send a link to a single song."
NOTHING_DOWNLOADED = "I couldn't download anything from that link (it may be too large or unavailable)."
UNSUPPORTED_SITE = "I can't find a song at that link. Try a YouTube, SoundCloud or TikTok link, or a direct link to an audio file."
NOT_FOUND = "That link leads nowhere (the page was not found)."
PRIVATE_MEDIA = "That video or track is private or needs a login."
UNREACHABLE = "I couldn't reach that link; check it and try again."
DOWNLOAD_FAILED = "I couldn't download that link."

# -- jobs -------------------------------------------------------------------------------------------
OUR_FAULT = "Something went wrong on our side while separating this song. Your quota was not charged; please try again later."
TIMED_OUT = "This song took too long to process. Your quota was not charged; please try again later."
def unknown_mode(mode: str) -> str:
    return f"This worker can't separate in the “{mode}” mode yet; please send the song again in another mode."


NO_SPEC = "This job can't be read by this worker (it was queued by another version); please send the song again."


def format_duration(seconds: float) -> str:
    """3:25, or 1:02:03 past an hour."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def too_long(duration: float, limit: float, note: str = "") -> str:
    """The one wording of "too long", wherever the length is found out (upload, link, decode)."""
    return f"That song is {format_duration(duration)} long; the limit is {format_duration(limit)}{note}."


def too_large(max_bytes: int) -> str:
    size = f"{max_bytes // (1024 * 1024)} MB" if max_bytes >= 1024 * 1024 else f"{max_bytes // 1024} kB"
    return f"That file is larger than the {size} limit."


def missing_file(name: str) -> str:
    return f"I can't find the file {name!r}."
