"""Reading a Telegram message: is it meant for us, and what song does it carry?"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telegram import Message, MessageEntity

URL_PATTERN = re.compile(r"https?://\S+", re.IGNORECASE)


@dataclass(frozen=True)
class TelegramMedia:
    file_id: str
    filename: str
    size: int | None
    duration: float | None = None  # seconds, as Telegram declares it (audio, voice, video)


def addressed_to_bot(message: Message, bot_id: int, bot_username: str) -> bool:
    """Private chats always; in groups only a reply to the bot or a mention of it."""
    if message.chat.type == "private":
        return True
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and replied.from_user.id == bot_id:
        return True
    mention = f"@{bot_username}".lower()
    for text in {**message.parse_entities([MessageEntity.MENTION]),
                 **message.parse_caption_entities([MessageEntity.MENTION])}.values():
        if text.lower() == mention:
            return True
    return False


def media_of(message: Message) -> TelegramMedia | None:
    """The audio/video a message carries (audio, voice, video, video note, or an audio/video document)."""
    if message.audio:
        a = message.audio
        return TelegramMedia(a.file_id, a.file_name or f"{a.title or 'audio'}.mp3", a.file_size, _seconds(a.duration))
    if message.voice:
        voice = message.voice
        return TelegramMedia(voice.file_id, "voice.ogg", voice.file_size, _seconds(voice.duration))
    if message.video:
        video = message.video
        return TelegramMedia(video.file_id, video.file_name or "video.mp4", video.file_size, _seconds(video.duration))
    if message.video_note:
        note = message.video_note
        return TelegramMedia(note.file_id, "video_note.mp4", note.file_size, _seconds(note.duration))
    if message.document:
        d = message.document
        return TelegramMedia(d.file_id, d.file_name or "file", d.file_size)
    return None


def _seconds(duration) -> float | None:
    """PTB gives durations as timedelta (or int seconds in older versions)."""
    if duration is None:
        return None
    return duration.total_seconds() if hasattr(duration, "total_seconds") else float(duration)


def is_media_document(message: Message) -> bool:
    mime = (message.document.mime_type or "") if message.document else ""
    return mime.startswith(("audio/", "video/")) or mime in {"application/ogg", "application/octet-stream"}


def link_in(message: Message) -> str | None:
    """The first link in the text or caption (URL entities first, then anything that looks like one)."""
    for entities in (message.parse_entities([MessageEntity.URL, MessageEntity.TEXT_LINK]),
                     message.parse_caption_entities([MessageEntity.URL, MessageEntity.TEXT_LINK])):
        for entity, text in entities.items():
            return entity.url if entity.type == MessageEntity.TEXT_LINK else text
    match = URL_PATTERN.search(message.text or message.caption or "")
    return match.group(0) if match else None
