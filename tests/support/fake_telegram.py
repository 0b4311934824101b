"""A local fake of the Telegram Bot API that the real python-telegram-bot library can talk to.

Point PTB at it with::

    fake = FakeTelegram(token=TOKEN)
    await fake.start()
    app = (
        ApplicationBuilder().token(TOKEN)
        .base_url(f"{fake.url}/bot").base_file_url(f"{fake.url}/file/bot")
        .build()
    )

The fake serves ``/bot{TOKEN}/{method}`` (form-encoded, multipart or JSON bodies) and file downloads
at ``/file/bot{TOKEN}/{file_path}``. Tests push updates (``send_text``, ``send_audio``, ...) which a
pending ``getUpdates`` long poll receives at once, and inspect what the bot did through ``calls``,
``messages(chat_id)`` and ``wait_for(...)``.

It behaves like the cloud Bot API where bots tend to trip: 20 MB download limit (``getFile`` answers
"file is too big"; lifted with ``local_mode=True``), 50 MB upload limit, "message is not modified" on
identical edits, "can't parse entities" on malformed HTML/MarkdownV2, 409 for two concurrent
``getUpdates``, "chat not found", and injected 429s or other errors.

All driver methods must be called from the event loop the fake was started on (the test's loop).
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import mimetypes
import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote

from aiohttp import web

JSONDict = dict[str, Any]

MB = 1024 * 1024
CLOUD_DOWNLOAD_LIMIT = 20 * MB
CLOUD_UPLOAD_LIMIT = 50 * MB
LOCAL_UPLOAD_LIMIT = 2000 * MB
MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
BOT_USERNAME = "stembot_test_bot"

# Update types Telegram leaves out unless allowed_updates names them.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

# Form fields that hold JSON; other fields are coerced to int/bool when they look like one,
# except free-text fields, which stay strings.
_JSON_FIELDS = frozenset(
    {
        "reply_markup", "allowed_updates", "entities", "caption_entities", "reply_parameters",
        "commands", "scope", "link_preview_options", "message_ids", "media", "explanation_entities",
    }
)
_TEXT_FIELDS = frozenset(
    {
        "text", "caption", "title", "performer", "data", "file_id", "callback_query_id",
        "inline_message_id", "url", "parse_mode", "action", "language_code", "description",
        "short_description", "name", "query", "filename", "question",
    }
)
_MEDIA_FIELD_DEFAULT_NAMES = {
    "audio": ("music", "audio.mp3"),
    "document": ("documents", "file"),
    "voice": ("voice", "voice.oga"),
    "video": ("videos", "video.mp4"),
    "video_note": ("video_notes", "video_note.mp4"),
    "photo": ("photos", "photo.jpg"),
}
_SEND_MEDIA_METHODS = {
    "sendAudio": "audio",
    "sendDocument": "document",
    "sendVoice": "voice",
    "sendVideo": "video",
    "sendVideoNote": "video_note",
    "sendPhoto": "photo",
}


class ApiError(Exception):
    """An error answer of the Bot API: ``{"ok": false, "error_code": ..., "description": ...}``."""

    def __init__(self, error_code: int, description: str, parameters: JSONDict | None = None):
        super().__init__(f"{error_code} {description}")
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def payload(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


class Hold:
    """A stalled call (``FakeTelegram.hold_next``): ``reached`` once it arrived, answered after ``release()``."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.released = asyncio.Event()

    def release(self) -> None:
        self.released.set()


@dataclass
class UploadedFile:
    """A file part of a multipart request."""

    filename: str | None
    content_type: str | None
    data: bytes

    def __repr__(self) -> str:
        return f"UploadedFile({self.filename!r}, {self.content_type!r}, {len(self.data)} bytes)"


class Call(NamedTuple):
    """One Bot API request: the method name (canonical spelling) and its decoded parameters."""

    method: str
    params: JSONDict


class Pushed(NamedTuple):
    """What a push method created: the Update and its payload (a Message or CallbackQuery dict)."""

    update: JSONDict
    message: JSONDict


@dataclass
class StoredFile:
    """A file the fake knows: pushed by a test or uploaded by the bot."""

    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    file_name: str | None
    mime_type: str | None

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class BotMessage:
    """A message the bot sent, with its current state and history.

    ``text`` and ``caption`` are as the bot sent them (markup included). ``edits`` is the history of
    the text (or, for media messages, the caption; "" when there is none): the first entry is the
    original.
    """

    chat_id: int
    message_id: int
    kind: str  # "text", "audio", "document", "voice", "video", "video_note" or "photo"
    date: int
    text: str | None = None
    caption: str | None = None
    parse_mode: str | None = None
    reply_markup: JSONDict | None = None
    reply_to_message_id: int | None = None
    edits: list[str] = field(default_factory=list)
    markup_history: list[JSONDict | None] = field(default_factory=list)
    media: Any = None  # the Bot API object (Audio/Document/... dict; a PhotoSize list for photos)
    file_bytes: bytes | None = None  # uploaded bytes (or the known bytes of a reused file_id)
    file_id: str | None = None
    file_url: str | None = None  # when the bot sent a URL instead of a file
    filename: str | None = None
    mime_type: str | None = None
    title: str | None = None
    performer: str | None = None
    duration: int | None = None
    deleted: bool = False
    edit_date: int | None = None
    visible_text: str | None = None  # text/caption with the markup removed, as users see it
    params: JSONDict = field(default_factory=dict)  # the parameters of the send call

    @property
    def content(self) -> str | None:
        """The text of a text message, the caption of a media message."""
        return self.text if self.kind == "text" else self.caption

    @property
    def audio(self) -> JSONDict | None:
        return self.media if self.kind == "audio" else None

    @property
    def document(self) -> JSONDict | None:
        return self.media if self.kind == "document" else None

    @property
    def voice(self) -> JSONDict | None:
        return self.media if self.kind == "voice" else None

    @property
    def video(self) -> JSONDict | None:
        return self.media if self.kind == "video" else None

    @property
    def buttons(self) -> list[JSONDict]:
        """The inline keyboard's buttons, row by row flattened ([] without a keyboard)."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]


def _utf16_len(text: str) -> int:
    """Telegram counts entity offsets and lengths in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def _coerce(name: str, value: str) -> Any:
    """Decode one form field the way the Bot API reads it (PTB sends non-strings as JSON)."""
    if name in _JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    if name in _TEXT_FIELDS:
        return value
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if value in ("true", "True"):
        return True
    if value in ("false", "False"):
        return False
    return value


# --- markup validation -------------------------------------------------------------------------

_HTML_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code",
     "pre", "blockquote", "tg-emoji"}
)
_HTML_TAG_RE = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s[^<>]*)?)>")


def _parse_html(text: str) -> str:
    """Check Telegram HTML like the Bot API does; return the visible text."""
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        start = text.find("<", i)
        if start < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        match = _HTML_TAG_RE.match(text, start)
        offset = _byte_offset(text, start)
        if match is None:
            raise ApiError(
                400, f"Bad Request: can't parse entities: Unexpected character '<' at byte offset {offset}"
            )
        closing, tag = match.group(1) == "/", match.group(2).lower()
        if tag not in _HTML_TAGS:
            raise ApiError(
                400,
                f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}" at byte offset {offset}',
            )
        if closing:
            if not stack or stack[-1] != tag:
                expected = f', expected "</{stack[-1]}>"' if stack else ""
                raise ApiError(
                    400,
                    "Bad Request: can't parse entities: Unmatched end tag at byte offset "
                    f'{offset}{expected}, found "</{tag}>"',
                )
            stack.pop()
        else:
            stack.append(tag)
        i = match.end()
    if stack:
        raise ApiError(
            400,
            "Bad Request: can't parse entities: Can't find end tag corresponding to start tag "
            f'"{stack[-1]}"',
        )
    return html.unescape("".join(out))


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_ENTITY_NAMES = {"*": "Bold", "_": "Italic", "__": "Underline", "~": "Strikethrough",
                      "||": "Spoiler", "[": "TextUrl"}


def _parse_markdown_v2(text: str) -> str:
    """Check Telegram MarkdownV2 (reserved characters escaped, entities closed); return visible text."""
    out: list[str] = []
    stack: list[tuple[str, int]] = []
    i, n = 0, len(text)

    def fail(what: str, index: int) -> ApiError:
        return ApiError(400, f"Bad Request: can't parse entities: {what} at byte offset "
                             f"{_byte_offset(text, index)}")

    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 < n:
                out.append(text[i + 1])
            i += 2
            continue
        if ch == "`":
            fence = "```" if text.startswith("```", i) else "`"
            end = i + len(fence)
            while True:
                end = text.find(fence, end)
                if end < 0:
                    raise fail(f"Can't find end of {'Pre' if fence == '```' else 'Code'} entity", i)
                if text[end - 1] != "\\":
                    break
                end += 1
            body = text[i + len(fence):end]
            if fence == "```" and "\n" in body:
                body = body.split("\n", 1)[1]  # drop the language line
            out.append(re.sub(r"\\([`\\])", r"\1", body))
            i = end + len(fence)
            continue
        if ch == ">" and (i == 0 or text[i - 1] == "\n"):
            i += 1  # a blockquote line
            continue
        marker = None
        for candidate in ("__", "||", "*", "_", "~"):
            if text.startswith(candidate, i):
                marker = candidate
                break
        if marker is not None:
            if stack and stack[-1][0] == marker:
                stack.pop()
            else:
                stack.append((marker, i))
            i += len(marker)
            continue
        if ch == "[":
            stack.append(("[", i))
            i += 1
            continue
        if ch == "]":
            if not stack or stack[-1][0] != "[":
                raise fail("Character ']' is reserved and must be escaped with the preceding '\\'", i)
            stack.pop()
            if not text.startswith("(", i + 1):
                # "[text]" without a URL is plain text in MarkdownV2.
                i += 1
                continue
            j = i + 2
            while j < n and text[j] != ")":
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise fail("Can't find end of a URL", i + 1)
            i = j + 1
            continue
        if ch in _MDV2_RESERVED:
            raise fail(f"Character '{ch}' is reserved and must be escaped with the preceding '\\'", i)
        out.append(ch)
        i += 1
    if stack:
        marker, index = stack[-1]
        raise fail(f"Can't find end of {_MDV2_ENTITY_NAMES[marker]} entity", index)
    return "".join(out)


def _visible_text(text: str, parse_mode: str | None, validate: bool) -> str:
    mode = (parse_mode or "").lower()
    if mode == "html":
        return _parse_html(text) if validate else re.sub(r"<[^>]*>", "", text)
    if mode == "markdownv2" and validate:
        return _parse_markdown_v2(text)
    return text


# --- the fake server -----------------------------------------------------------------------------


class FakeTelegram:
    """A fake Telegram Bot API server on 127.0.0.1 (random port) for one bot token.

    Args:
        token: the bot token PTB uses; requests with another token get 401 Unauthorized.
        local_mode: behave like a self-hosted ``telegram-bot-api --local``: no 20 MB download
            limit, 2000 MB uploads.
        local_file_dir: with ``local_mode``, ``getFile`` writes the file under this folder and
            answers its absolute path (what a ``--local`` server does; PTB then reads the file from
            disk instead of downloading it). Without it, files are served over HTTP.
        download_limit / upload_limit: override the size limits (bytes).
        validate_markup: reject malformed HTML/MarkdownV2 like Telegram ("can't parse entities").
        bot_id / bot_username / bot_first_name: the bot user ``getMe`` answers.
    """

    def __init__(
        self,
        token: str = "123456:TEST-token",
        *,
        local_mode: bool = False,
        local_file_dir: str | Path | None = None,
        download_limit: int | None = None,
        upload_limit: int | None = None,
        validate_markup: bool = True,
        bot_id: int | None = None,
        bot_username: str = BOT_USERNAME,
        bot_first_name: str = "StemBot Test",
    ) -> None:
        self.token = token
        self.local_mode = local_mode
        self.local_file_dir = Path(local_file_dir) if local_file_dir is not None else None
        self.download_limit = download_limit if download_limit is not None else (
            None if local_mode else CLOUD_DOWNLOAD_LIMIT
        )
        self.upload_limit = upload_limit if upload_limit is not None else (
            LOCAL_UPLOAD_LIMIT if local_mode else CLOUD_UPLOAD_LIMIT
        )
        self.validate_markup = validate_markup
        if bot_id is None:
            head = token.split(":", 1)[0]
            bot_id = int(head) if head.isdigit() else 123456
        self.bot_user: JSONDict = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

        # What the bot did.
        self.calls: list[Call] = []
        self.downloads: list[str] = []  # file_paths fetched from /file/bot<token>/...
        self.errors: list[str] = []  # internal errors of the fake (should stay empty)
        self.callback_answers: dict[str, JSONDict] = {}
        self.commands: dict[str, list[JSONDict]] = {}  # setMyCommands per scope/language key

        # Updates.
        self.updates: list[JSONDict] = []  # every update pushed, in order
        self.delivery_counts: dict[int, int] = {}  # update_id -> times returned by getUpdates
        self._queue: list[JSONDict] = []  # not yet confirmed by an offset
        self._next_update_id = 100_001
        self._allowed_updates: set[str] | None = None  # None: all but the opt-in types
        self._poll_ids = itertools.count(1)
        self._active_poll: int | None = None

        # Chats, users, messages and files.
        self._users: dict[int, JSONDict] = {}
        self._chats: dict[int, JSONDict] = {}
        self._blocked: set[int] = set()
        self._member_status: dict[tuple[int | None, int], str] = {}
        self._next_message_id: dict[int, int] = {}
        self._bot_messages: dict[int, dict[int, BotMessage]] = {}
        self._user_messages: dict[int, dict[int, JSONDict]] = {}
        self._files: dict[str, StoredFile] = {}
        self._callback_ids: set[str] = set()

        # Injected failures: lower-case method -> queue of errors for its next calls.
        self._failures: dict[str, list[ApiError | None]] = {}  # None: let one call by
        self._holds: dict[str, list[Hold | None]] = {}  # lower-case method -> calls to stall (None: let one by)

        self._changed = asyncio.Event()
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

        self._handlers: dict[str, tuple[str, Callable[[JSONDict], Any]]] = {}
        for name, handler in (
            ("getMe", self._get_me),
            ("logOut", self._true),
            ("close", self._true),
            ("deleteWebhook", self._delete_webhook),
            ("getWebhookInfo", self._get_webhook_info),
            ("setMyCommands", self._set_my_commands),
            ("getMyCommands", self._get_my_commands),
            ("deleteMyCommands", self._delete_my_commands),
            ("getUpdates", self._get_updates),
            ("sendMessage", self._send_message),
            ("editMessageText", self._edit_message_text),
            ("editMessageCaption", self._edit_message_caption),
            ("editMessageReplyMarkup", self._edit_message_reply_markup),
            ("deleteMessage", self._delete_message),
            ("deleteMessages", self._delete_messages),
            ("sendChatAction", self._send_chat_action),
            ("answerCallbackQuery", self._answer_callback_query),
            ("getChat", self._get_chat),
            ("getChatMember", self._get_chat_member),
            ("getFile", self._get_file),
        ):
            self._handlers[name.lower()] = (name, handler)
        for name, kind in _SEND_MEDIA_METHODS.items():
            self._handlers[name.lower()] = (name, self._media_sender(kind))

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        """Start serving on 127.0.0.1 at a free port (see ``url``)."""
        margin = 16 * MB  # multipart overhead; bigger bodies get a JSON 413 from us, not aiohttp
        app = web.Application(client_max_size=self.upload_limit + margin)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._stopping = False
        return self

    async def stop(self) -> None:
        """Stop serving. Pending long polls are answered at once, so this does not hang."""
        self._stopping = True
        for holds in self._holds.values():
            for hold in holds:
                if hold is not None:
                    hold.release()
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:  # noqa: PYI034
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (PTB: ``base_url=f"{url}/bot"``, ``base_file_url=f"{url}/file/bot"``)."""
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    # --- users and chats -------------------------------------------------------------------------

    def user(
        self,
        user_id: int,
        first_name: str | None = None,
        username: str | None = None,
        *,
        last_name: str | None = None,
        language_code: str | None = "en",
    ) -> JSONDict:
        """Create (or update) a user and its private chat; returns the Bot API User object.

        ``first_name`` defaults to "Alice" for a new user and is kept for a known one.
        """
        existing = self._users.get(user_id)
        user: JSONDict = dict(existing) if existing else {"id": user_id, "is_bot": False,
                                                          "first_name": "Alice"}
        if first_name is not None:
            user["first_name"] = first_name
        if username is not None:
            user["username"] = username
        if last_name is not None:
            user["last_name"] = last_name
        if language_code is not None:
            user["language_code"] = language_code
        self._users[user_id] = user
        chat: JSONDict = {"id": user_id, "type": "private", "first_name": user["first_name"]}
        for key in ("last_name", "username"):
            if key in user:
                chat[key] = user[key]
        self._chats[user_id] = chat
        return dict(user)

    def chat(self, chat_id: int, chat_type: str = "group", title: str | None = None) -> JSONDict:
        """Create (or update) a group, supergroup or channel chat; returns the Bot API Chat object.

        Group chat ids are negative (supergroups and channels conventionally -100...).
        """
        if chat_type == "private":
            raise ValueError("private chats are created by user()")
        if chat_id >= 0:
            raise ValueError(f"a {chat_type} chat id must be negative, got {chat_id}")
        chat = {"id": chat_id, "type": chat_type, "title": title or f"Test {chat_type} {-chat_id}"}
        if chat_type == "supergroup":
            chat["is_forum"] = False
        self._chats[chat_id] = chat
        return dict(chat)

    def set_member_status(self, user_id: int, status: str, chat_id: int | None = None) -> None:
        """What ``getChatMember`` answers for the user ("member" by default): "member",
        "administrator", "creator", "left" or "kicked"; in one chat or (chat_id None) in all."""
        if status not in ("member", "administrator", "creator", "left", "kicked"):
            raise ValueError(f"unsupported chat member status {status!r}")
        self._member_status[(chat_id, user_id)] = status

    def block(self, user_id: int, blocked: bool = True) -> None:
        """Make sends to the user's private chat fail with 403 "bot was blocked by the user"."""
        (self._blocked.add if blocked else self._blocked.discard)(user_id)

    # --- files -----------------------------------------------------------------------------------

    def add_file(
        self, data: bytes, file_name: str | None = None, mime_type: str | None = None,
        kind: str = "document",
    ) -> StoredFile:
        """Register a file (``getFile`` can then find it); returns its record with a fresh file_id."""
        folder, default_name = _MEDIA_FIELD_DEFAULT_NAMES.get(kind, ("documents", "file"))
        name = Path(file_name).name if file_name else default_name
        name = re.sub(r"[\x00-\x1f/\\]", "_", name) or default_name
        token = secrets.token_hex(8)
        stored = StoredFile(
            file_id=f"{kind.upper()}-{token}-{secrets.token_hex(12)}",
            file_unique_id=f"U{token}",
            data=bytes(data),
            # A path that cannot exist relative to the bot's working directory (PTB would read it).
            file_path=f"{folder}/{secrets.token_hex(16)}/{name}",
            file_name=file_name,
            mime_type=mime_type,
        )
        self._files[stored.file_id] = stored
        return stored

    def file(self, file_id: str) -> StoredFile:
        """The stored file with this file_id."""
        return self._files[file_id]

    # --- pushing updates -------------------------------------------------------------------------

    def send_text(
        self,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        chat_type: str | None = None,
        reply_to_message_id: int | None = None,
        entities: list[JSONDict] | None = None,
    ) -> Pushed:
        """A user sends a text message. Without ``entities``, a leading "/command" gets a
        ``bot_command`` entity and every "@username" a ``mention`` entity (UTF-16 offsets)."""
        if entities is None:
            entities = self._auto_entities(text)
        content: JSONDict = {"text": text}
        if entities:
            content["entities"] = entities
        return self._push_message(user_id, content, chat_id, chat_type, reply_to_message_id)

    def send_audio(
        self,
        user_id: int,
        data: bytes,
        filename: str = "song.mp3",
        mime_type: str = "audio/mpeg",
        duration: int = 0,
        title: str | None = None,
        performer: str | None = None,
        chat_id: int | None = None,
        caption: str | None = None,
        chat_type: str | None = None,
    ) -> Pushed:
        """A user sends an audio file (the message's ``audio`` with a downloadable file_id)."""
        stored = self.add_file(data, filename, mime_type, kind="audio")
        audio = self._media_object("audio", stored, duration=duration)
        if title is not None:
            audio["title"] = title
        if performer is not None:
            audio["performer"] = performer
        return self._push_media(user_id, "audio", audio, caption, chat_id, chat_type)

    def send_voice(
        self, user_id: int, data: bytes, duration: int = 1, chat_id: int | None = None,
        mime_type: str = "audio/ogg", chat_type: str | None = None,
    ) -> Pushed:
        """A user sends a voice note (Opus in Ogg)."""
        stored = self.add_file(data, None, mime_type, kind="voice")
        voice = self._media_object("voice", stored, duration=duration)
        return self._push_media(user_id, "voice", voice, None, chat_id, chat_type)

    def send_video(
        self, user_id: int, data: bytes, filename: str = "clip.mp4", chat_id: int | None = None,
        mime_type: str = "video/mp4", duration: int = 1, width: int = 640, height: int = 360,
        caption: str | None = None, chat_type: str | None = None,
    ) -> Pushed:
        """A user sends a video."""
        stored = self.add_file(data, filename, mime_type, kind="video")
        video = self._media_object("video", stored, duration=duration, width=width, height=height)
        return self._push_media(user_id, "video", video, caption, chat_id, chat_type)

    def send_video_note(
        self, user_id: int, data: bytes, chat_id: int | None = None, duration: int = 1,
        length: int = 240, chat_type: str | None = None,
    ) -> Pushed:
        """A user sends a round video note."""
        stored = self.add_file(data, None, "video/mp4", kind="video_note")
        note = self._media_object("video_note", stored, duration=duration, length=length)
        return self._push_media(user_id, "video_note", note, None, chat_id, chat_type)

    def send_document(
        self, user_id: int, data: bytes, filename: str = "file.bin",
        mime_type: str = "application/octet-stream", chat_id: int | None = None,
        caption: str | None = None, chat_type: str | None = None,
    ) -> Pushed:
        """A user sends a file as a document."""
        stored = self.add_file(data, filename, mime_type, kind="document")
        document = self._media_object("document", stored)
        return self._push_media(user_id, "document", document, caption, chat_id, chat_type)

    def send_callback_query(self, user_id: int, message: BotMessage | int, data: str) -> Pushed:
        """A user presses an inline button with callback ``data`` under a bot message (a
        BotMessage, or a message id in the user's private chat). Returns (update, callback_query)."""
        if isinstance(message, int):
            message = self.message(user_id, message)
        user = self._ensure_user(user_id)
        query_id = str(secrets.randbits(63))
        self._callback_ids.add(query_id)
        query = {
            "id": query_id,
            "from": user,
            "chat_instance": f"{self.bot_user['id']}{abs(message.chat_id)}",
            "message": self._message_dict(message),
            "data": data,
        }
        return Pushed(self._push_update("callback_query", query), query)

    def push_update(self, update_type: str, payload: JSONDict) -> JSONDict:
        """Push any update type (e.g. "edited_message", "my_chat_member"); returns the Update."""
        return self._push_update(update_type, payload)

    @property
    def pending_updates(self) -> list[JSONDict]:
        """Updates not yet confirmed by the bot (via getUpdates' offset)."""
        return list(self._queue)

    # --- inspecting what the bot did ------------------------------------------------------------

    def messages(self, chat_id: int, kind: str | None = None) -> list[BotMessage]:
        """The bot's messages in the chat (deleted ones included, flagged), oldest first;
        ``kind`` filters ("text", "audio", "document", ...)."""
        found = sorted(self._bot_messages.get(chat_id, {}).values(), key=lambda m: m.message_id)
        return [m for m in found if kind is None or m.kind == kind]

    def message(self, chat_id: int, message_id: int) -> BotMessage:
        """One of the bot's messages."""
        return self._bot_messages[chat_id][message_id]

    def last_message(self, chat_id: int, kind: str | None = None) -> BotMessage | None:
        """The bot's newest message in the chat (of that kind), or None."""
        found = self.messages(chat_id, kind)
        return found[-1] if found else None

    def user_messages(self, chat_id: int) -> list[JSONDict]:
        """The Message dicts the test pushed into the chat."""
        return [self._user_messages[chat_id][k] for k in sorted(self._user_messages.get(chat_id, {}))]

    def calls_of(self, method: str) -> list[JSONDict]:
        """Parameters of every call of the method (case-insensitive name), in order."""
        return [c.params for c in self.calls if c.method.lower() == method.lower()]

    def mark(self) -> int:
        """The current number of calls, to pass as ``since`` to ``wait_for``."""
        return len(self.calls)

    async def wait_for(
        self,
        condition: str | Callable[[], Any],
        timeout: float = 60.0,
        *,
        since: int = 0,
        count: int = 1,
    ) -> Any:
        """Wait until a condition holds and return its value.

        ``condition`` is either a method name (returns the ``count``-th ``Call`` of it at index
        ``since`` or later in ``calls``) or a callable polled until it returns something truthy
        (returned as is), e.g. ``lambda: fake.last_message(1, "audio")``. Raises TimeoutError with
        the recent calls after ``timeout`` seconds.
        """
        if isinstance(condition, str):
            method = condition.lower()

            def check() -> Any:
                found = [c for c in self.calls[since:] if c.method.lower() == method]
                return found[count - 1] if len(found) >= count else None

            what = f"{count} call(s) of {condition}"
        else:
            check = condition
            what = getattr(condition, "__name__", "condition")

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"FakeTelegram: timed out after {timeout}s waiting for {what}\n"
                                   + self.describe())
            changed = self._changed
            try:
                # Wake on any change; re-check now and then for conditions on outside state.
                await asyncio.wait_for(changed.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass

    async def wait_delivered(self, timeout: float = 10.0) -> None:
        """Wait until every pushed update was returned by getUpdates at least once."""
        await self.wait_for(
            lambda: all(self.delivery_counts.get(u["update_id"]) for u in self.updates) or None,
            timeout,
        )

    def describe(self, last: int = 25) -> str:
        """A readable dump of the recent calls and the bot's messages, for failure messages."""
        lines = [f"last {min(last, len(self.calls))} of {len(self.calls)} calls:"]
        for call in self.calls[-last:]:
            params = ", ".join(f"{k}={_short(v)}" for k, v in call.params.items())
            lines.append(f"  {call.method}({params})")
        for chat_id, msgs in self._bot_messages.items():
            for m in sorted(msgs.values(), key=lambda m: m.message_id)[-10:]:
                flag = " [deleted]" if m.deleted else ""
                lines.append(f"  chat {chat_id} #{m.message_id} {m.kind}{flag}: {_short(m.content)}"
                             + (f" edits={len(m.edits) - 1}" if len(m.edits) > 1 else ""))
        if self.errors:
            lines.append("fake's internal errors:")
            lines.extend(f"  {e}" for e in self.errors)
        return "\n".join(lines)

    # --- failure injection -----------------------------------------------------------------------

    def fail_next(
        self, method: str, description: str = "Bad Request: injected failure",
        error_code: int = 400, times: int = 1, parameters: JSONDict | None = None, skip: int = 0,
    ) -> None:
        """Make the next ``times`` calls of ``method`` (after ``skip`` others, answered as usual) answer this error
        (they are still recorded)."""
        queue = self._failures.setdefault(method.lower(), [])
        queue.extend([None] * skip + [ApiError(error_code, description, parameters) for _ in range(times)])

    def hold_next(self, method: str, skip: int = 0) -> Hold:
        """Stall a coming call of ``method`` (the next one after ``skip`` others), recorded but never answered
        with success, until the hold is released or the fake stops: an upload under way when a bot is stopped.
        The held call is then answered 502 and nothing is kept, as when a connection dies mid-upload."""
        hold = Hold()
        self._holds.setdefault(method.lower(), []).extend([None] * skip + [hold])
        return hold

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` answer 429 with ``parameters.retry_after``
        (PTB raises ``telegram.error.RetryAfter``)."""
        self.fail_next(method, f"Too Many Requests: retry after {retry_after}", 429, times,
                       {"retry_after": retry_after})

    # --- internals: updates ----------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake everything waiting on a state change (long polls, wait_for)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _push_update(self, update_type: str, payload: JSONDict) -> JSONDict:
        update = {"update_id": self._next_update_id, update_type: payload}
        self._next_update_id += 1
        self.updates.append(update)
        self._queue.append(update)
        self._notify()
        return update

    def _ensure_user(self, user_id: int) -> JSONDict:
        if user_id not in self._users:
            self.user(user_id)
        return dict(self._users[user_id])

    def _resolve_chat(self, user_id: int, chat_id: int | None, chat_type: str | None) -> JSONDict:
        if chat_type is None:  # infer: the user's private chat, a known chat, or a new group
            if chat_id is None or chat_id == user_id:
                chat_type = "private"
            else:
                chat_type = self._chats[chat_id]["type"] if chat_id in self._chats else "group"
        if chat_type == "private":
            if chat_id is not None and chat_id != user_id:
                raise ValueError("a private chat's id is the user's id")
            return self._chats[user_id]
        if chat_id is None:
            raise ValueError(f"a {chat_type} message needs a (negative) chat_id")
        known = self._chats.get(chat_id)
        if known is None or known["type"] != chat_type:
            self.chat(chat_id, chat_type)
        return self._chats[chat_id]

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _push_message(
        self, user_id: int, content: JSONDict, chat_id: int | None, chat_type: str | None,
        reply_to_message_id: int | None,
    ) -> Pushed:
        user = self._ensure_user(user_id)
        chat = self._resolve_chat(user_id, chat_id, chat_type)
        message: JSONDict = {
            "message_id": self._new_message_id(chat["id"]),
            "from": user,
            "chat": dict(chat),
            "date": int(time.time()),
            **content,
        }
        if reply_to_message_id is not None:
            replied = self._find_message_dict(chat["id"], reply_to_message_id)
            if replied is not None:
                message["reply_to_message"] = replied
        self._user_messages.setdefault(chat["id"], {})[message["message_id"]] = message
        return Pushed(self._push_update("message", message), message)

    def _push_media(
        self, user_id: int, kind: str, media: JSONDict, caption: str | None,
        chat_id: int | None, chat_type: str | None,
    ) -> Pushed:
        content: JSONDict = {kind: media}
        if caption is not None:
            content["caption"] = caption
        return self._push_message(user_id, content, chat_id, chat_type, None)

    def _auto_entities(self, text: str) -> list[JSONDict]:
        entities: list[JSONDict] = []
        command = re.match(r"/[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?", text)
        if command:
            entities.append({"type": "bot_command", "offset": 0, "length": _utf16_len(command.group())})
        for mention in re.finditer(r"(?<![\w@/])@[A-Za-z0-9_]{5,32}\b", text):
            if command and mention.start() < command.end():
                continue
            entities.append({"type": "mention", "offset": _utf16_len(text[:mention.start()]),
                             "length": _utf16_len(mention.group())})
        return entities

    def _media_object(self, kind: str, stored: StoredFile, **extra: Any) -> JSONDict:
        obj: JSONDict = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                         "file_size": stored.size}
        if kind in ("audio", "document", "video") and stored.file_name:
            obj["file_name"] = stored.file_name
        if kind in ("audio", "document", "video", "voice") and stored.mime_type:
            obj["mime_type"] = stored.mime_type
        obj.update(extra)
        return obj

    # --- internals: HTTP -------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = unquote(request.rel_url.raw_path)
        if path.startswith("/file/bot"):
            return self._serve_file(path[len("/file/bot"):])
        if not path.startswith("/bot"):
            return _json(ApiError(404, "Not Found").payload(), 404)
        token, _, method = path[len("/bot"):].partition("/")
        if token != self.token:
            return _json(ApiError(401, "Unauthorized").payload(), 401)
        try:
            params = await self._read_params(request)
        except ApiError as exc:
            self.calls.append(Call(method, {}))
            self._notify()
            return _json(exc.payload(), exc.error_code)
        canonical, handler = self._handlers.get(method.lower(), (method, None))
        self.calls.append(Call(canonical, params))
        self._notify()
        try:
            failures = self._failures.get(canonical.lower())
            failure = failures.pop(0) if failures else None
            if failure is not None:
                raise failure
            holds = self._holds.get(canonical.lower())
            hold = holds.pop(0) if holds else None
            if hold is not None:
                hold.reached.set()
                self._notify()
                await hold.released.wait()
                raise ApiError(502, "Bad Gateway")
            if handler is None:
                raise ApiError(404, "Not Found")
            result = handler(params)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as exc:
            return _json(exc.payload(), exc.error_code)
        except Exception as exc:  # noqa: BLE001  (a bug in the fake: answer 500, keep it for describe())
            self.errors.append(f"{canonical}: {exc!r}")
            return _json({"ok": False, "error_code": 500,
                          "description": f"Internal Server Error: fake: {exc!r}"}, 500)
        finally:
            self._notify()
        return _json({"ok": True, "result": result})

    async def _read_params(self, request: web.Request) -> JSONDict:
        params: JSONDict = {k: _coerce(k, v) for k, v in request.query.items()}
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        elif request.can_read_body:
            try:
                form = await request.post()
            except web.HTTPRequestEntityTooLarge:
                raise ApiError(413, "Request Entity Too Large") from None
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    params[key] = UploadedFile(value.filename, value.content_type, value.file.read())
                else:
                    text = value if isinstance(value, str) else bytes(value).decode()
                    params[key] = _coerce(key, text)
        uploads = [v for v in params.values() if isinstance(v, UploadedFile)]
        if sum(len(u.data) for u in uploads) > self.upload_limit:
            raise ApiError(413, "Request Entity Too Large")
        # "attach://name" values point at another multipart part.
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                part = params.get(value[len("attach://"):])
                if isinstance(part, UploadedFile):
                    params[key] = part
        return params

    def _serve_file(self, rest: str) -> web.Response:
        token, _, file_path = rest.partition("/")
        stored = next((f for f in self._files.values() if f.file_path == file_path), None)
        if token != self.token or stored is None:
            return _json(ApiError(404, "Not Found").payload(), 404)
        self.downloads.append(file_path)
        self._notify()
        return web.Response(body=stored.data,
                            content_type=stored.mime_type or "application/octet-stream")

    # --- internals: method handlers --------------------------------------------------------------

    def _true(self, params: JSONDict) -> bool:
        return True

    def _get_me(self, params: JSONDict) -> JSONDict:
        return dict(self.bot_user)

    def _delete_webhook(self, params: JSONDict) -> bool:
        if params.get("drop_pending_updates"):
            self._queue.clear()
        return True

    def _get_webhook_info(self, params: JSONDict) -> JSONDict:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._queue)}

    @staticmethod
    def _commands_key(params: JSONDict) -> str:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps([scope, params.get("language_code") or ""], sort_keys=True)

    def _set_my_commands(self, params: JSONDict) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        self.commands[self._commands_key(params)] = commands
        return True

    def _get_my_commands(self, params: JSONDict) -> list[JSONDict]:
        return self.commands.get(self._commands_key(params), [])

    def _delete_my_commands(self, params: JSONDict) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    def _update_allowed(self, update: JSONDict) -> bool:
        kind = next(k for k in update if k != "update_id")
        if self._allowed_updates is None:
            return kind not in _OPT_IN_UPDATES
        return kind in self._allowed_updates

    async def _get_updates(self, params: JSONDict) -> list[JSONDict]:
        offset = params.get("offset")
        limit = max(1, min(int(params.get("limit") or 100), 100))
        timeout = float(params.get("timeout") or 0)
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = set(allowed) if allowed else None
        if isinstance(offset, int) and offset > 0:
            self._queue = [u for u in self._queue if u["update_id"] >= offset]

        poll_id = next(self._poll_ids)
        self._active_poll = poll_id  # an older pending poll now answers 409
        self._notify()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._active_poll != poll_id:
                raise ApiError(409, "Conflict: terminated by other getUpdates request; make sure "
                                    "that only one bot instance is running")
            # Updates of types not allowed are dropped, as Telegram does.
            self._queue = [u for u in self._queue if self._update_allowed(u)]
            remaining = deadline - loop.time()
            if self._queue or remaining <= 0 or self._stopping:
                break
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass
        if self._active_poll == poll_id:
            self._active_poll = None
        batch = [] if self._stopping else self._queue[:limit]
        for update in batch:
            self.delivery_counts[update["update_id"]] = self.delivery_counts.get(update["update_id"], 0) + 1
        return batch

    def _target_chat(self, params: JSONDict) -> JSONDict:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        chat = self._chats.get(chat_id) if isinstance(chat_id, int) else next(
            (c for c in self._chats.values() if f"@{c.get('username')}" == chat_id), None
        )
        if chat is None:
            raise ApiError(400, "Bad Request: chat not found")
        if chat["type"] == "private" and chat["id"] in self._blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _find_message_dict(self, chat_id: int, message_id: int) -> JSONDict | None:
        bot_message = self._bot_messages.get(chat_id, {}).get(message_id)
        if bot_message is not None and not bot_message.deleted:
            return self._message_dict(bot_message, with_reply=False)
        user_message = self._user_messages.get(chat_id, {}).get(message_id)
        if user_message is not None:
            return {k: v for k, v in user_message.items() if k != "reply_to_message"}
        return None

    def _reply_target(self, chat_id: int, params: JSONDict) -> int | None:
        reply = params.get("reply_parameters")
        message_id = reply.get("message_id") if isinstance(reply, dict) else params.get("reply_to_message_id")
        if message_id is None:
            return None
        if self._find_message_dict(chat_id, message_id) is None:
            allow = (reply or {}).get("allow_sending_without_reply") if isinstance(reply, dict) else \
                params.get("allow_sending_without_reply")
            if not allow:
                raise ApiError(400, "Bad Request: message to be replied not found")
            return None
        return int(message_id)

    def _checked_markup(self, params: JSONDict) -> JSONDict | None:
        markup = params.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        return markup

    def _check_text(self, text: Any, parse_mode: str | None, *, caption: bool) -> str:
        if caption:
            visible = _visible_text(text, parse_mode, self.validate_markup)
            if len(visible) > MAX_CAPTION_LENGTH:
                raise ApiError(400, "Bad Request: message caption is too long")
            return visible
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        visible = _visible_text(text, parse_mode, self.validate_markup)
        if not visible.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(visible) > MAX_TEXT_LENGTH:
            raise ApiError(400, "Bad Request: message is too long")
        return visible

    def _store_bot_message(self, message: BotMessage) -> JSONDict:
        self._bot_messages.setdefault(message.chat_id, {})[message.message_id] = message
        message.edits.append(message.content or "")
        message.markup_history.append(message.reply_markup)
        return self._message_dict(message)

    def _message_dict(self, message: BotMessage, with_reply: bool = True) -> JSONDict:
        """The Bot API Message for the bot message's current state."""
        result: JSONDict = {
            "message_id": message.message_id,
            "from": dict(self.bot_user),
            "chat": dict(self._chats[message.chat_id]),
            "date": message.date,
        }
        if message.kind == "text":
            result["text"] = message.visible_text
        else:
            result[message.kind] = message.media
            if message.caption is not None:
                result["caption"] = message.visible_text
        if message.edit_date is not None:
            result["edit_date"] = message.edit_date
        if message.reply_markup and "inline_keyboard" in message.reply_markup:
            result["reply_markup"] = message.reply_markup
        if with_reply and message.reply_to_message_id is not None:
            replied = self._find_message_dict(message.chat_id, message.reply_to_message_id)
            if replied is not None:
                result["reply_to_message"] = replied
        return result

    def _send_message(self, params: JSONDict) -> JSONDict:
        chat = self._target_chat(params)
        text, parse_mode = params.get("text"), params.get("parse_mode")
        visible = self._check_text(text, parse_mode, caption=False)
        message = BotMessage(
            chat_id=chat["id"],
            message_id=0,
            kind="text",
            date=int(time.time()),
            text=text,
            parse_mode=parse_mode,
            reply_markup=self._checked_markup(params),
            reply_to_message_id=self._reply_target(chat["id"], params),
            visible_text=visible,
            params=params,
        )
        message.message_id = self._new_message_id(chat["id"])
        return self._store_bot_message(message)

    def _media_sender(self, kind: str) -> Callable[[JSONDict], JSONDict]:
        def send(params: JSONDict) -> JSONDict:
            return self._send_media(kind, params)

        return send

    def _send_media(self, kind: str, params: JSONDict) -> JSONDict:
        chat = self._target_chat(params)
        source = params.get(kind)
        caption, parse_mode = params.get("caption"), params.get("parse_mode")
        visible = self._check_text(caption, parse_mode, caption=True) if caption is not None else None

        file_bytes: bytes | None = None
        file_url: str | None = None
        if isinstance(source, UploadedFile):
            filename = params.get("filename") or source.filename
            mime_type = source.content_type
            if not mime_type or mime_type == "application/octet-stream":
                mime_type = mimetypes.guess_type(filename or "")[0] or mime_type
            stored = self.add_file(source.data, filename, mime_type, kind=kind)
            file_bytes = source.data
        elif isinstance(source, str) and source in self._files:
            stored = self._files[source]
            filename, mime_type, file_bytes = stored.file_name, stored.mime_type, stored.data
        elif isinstance(source, str) and re.match(r"https?://", source):
            filename = source.rsplit("/", 1)[-1] or None
            mime_type = mimetypes.guess_type(filename or "")[0]
            stored = self.add_file(b"", filename, mime_type, kind=kind)
            file_url = source
        elif source is None or source == "":
            raise ApiError(400, f"Bad Request: there is no {kind} in the request")
        else:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")

        duration = params.get("duration")
        media: Any
        if kind == "photo":
            media = [{"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                      "width": params.get("width", 800), "height": params.get("height", 600),
                      "file_size": stored.size}]
        else:
            extra: JSONDict = {}
            if kind in ("audio", "voice", "video", "video_note"):
                extra["duration"] = int(duration or 0)
            if kind == "video":
                extra["width"] = int(params.get("width") or 640)
                extra["height"] = int(params.get("height") or 360)
            if kind == "video_note":
                extra["length"] = int(params.get("length") or 240)
            if kind == "audio":
                for key in ("title", "performer"):
                    if params.get(key) is not None:
                        extra[key] = params[key]
            media = self._media_object(kind, stored, **extra)

        message = BotMessage(
            chat_id=chat["id"],
            message_id=0,
            kind=kind,
            date=int(time.time()),
            caption=caption,
            parse_mode=parse_mode,
            reply_markup=self._checked_markup(params),
            reply_to_message_id=self._reply_target(chat["id"], params),
            media=media,
            file_bytes=file_bytes,
            file_id=stored.file_id,
            file_url=file_url,
            filename=filename,
            mime_type=mime_type,
            title=params.get("title"),
            performer=params.get("performer"),
            duration=int(duration) if duration is not None else None,
            visible_text=visible,
            params=params,
        )
        message.message_id = self._new_message_id(chat["id"])
        return self._store_bot_message(message)

    def _editable(self, params: JSONDict, action: str = "edit") -> BotMessage | None:
        """The bot message an edit targets; None for inline messages (answered with True)."""
        if params.get("inline_message_id"):
            return None
        chat = self._target_chat(params)
        message_id = params.get("message_id")
        if message_id is None:
            raise ApiError(400, "Bad Request: message identifier is not specified")
        message = self._bot_messages.get(chat["id"], {}).get(message_id)
        if message is None or message.deleted:
            if message is None and message_id in self._user_messages.get(chat["id"], {}):
                raise ApiError(400, f"Bad Request: message can't be {action}ed")
            raise ApiError(400, f"Bad Request: message to {action} not found")
        return message

    def _apply_edit(self, message: BotMessage, *, content: str | None, parse_mode: str | None,
                    visible: str | None, markup: JSONDict | None, markup_given: bool) -> JSONDict:
        new_markup = markup if markup_given else None
        if content == message.content and parse_mode == message.parse_mode and \
                new_markup == message.reply_markup:
            raise ApiError(400, "Bad Request: message is not modified: specified new message content "
                                "and reply markup are exactly the same as a current content and "
                                "reply markup of the message")
        if content != message.content or parse_mode != message.parse_mode:
            if message.kind == "text":
                message.text = content
            else:
                message.caption = content
            message.parse_mode = parse_mode
            message.visible_text = visible
            message.edits.append(content or "")
        if new_markup != message.reply_markup:
            message.reply_markup = new_markup
            message.markup_history.append(new_markup)
        message.edit_date = int(time.time())
        return self._message_dict(message)

    def _edit_message_text(self, params: JSONDict) -> JSONDict | bool:
        text, parse_mode = params.get("text"), params.get("parse_mode")
        visible = self._check_text(text, parse_mode, caption=False)
        markup = self._checked_markup(params)
        message = self._editable(params)
        if message is None:
            return True
        if message.kind != "text":
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        return self._apply_edit(message, content=text, parse_mode=parse_mode, visible=visible,
                                markup=markup, markup_given="reply_markup" in params)

    def _edit_message_caption(self, params: JSONDict) -> JSONDict | bool:
        caption, parse_mode = params.get("caption"), params.get("parse_mode")
        visible = self._check_text(caption, parse_mode, caption=True) if caption is not None else None
        markup = self._checked_markup(params)
        message = self._editable(params)
        if message is None:
            return True
        if message.kind == "text":
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        return self._apply_edit(message, content=caption, parse_mode=parse_mode, visible=visible,
                                markup=markup, markup_given="reply_markup" in params)

    def _edit_message_reply_markup(self, params: JSONDict) -> JSONDict | bool:
        markup = self._checked_markup(params)
        message = self._editable(params)
        if message is None:
            return True
        return self._apply_edit(message, content=message.content, parse_mode=message.parse_mode,
                                visible=message.visible_text, markup=markup, markup_given=True)

    def _delete_message(self, params: JSONDict) -> bool:
        chat = self._target_chat(params)
        message_id = params.get("message_id")
        self._delete_one(chat["id"], message_id)
        return True

    def _delete_one(self, chat_id: int, message_id: Any) -> None:
        message = self._bot_messages.get(chat_id, {}).get(message_id)
        if message is not None and not message.deleted:
            message.deleted = True
            return
        if self._user_messages.get(chat_id, {}).pop(message_id, None) is not None:
            return
        raise ApiError(400, "Bad Request: message to delete not found")

    def _delete_messages(self, params: JSONDict) -> bool:
        chat = self._target_chat(params)
        for message_id in params.get("message_ids") or []:
            try:
                self._delete_one(chat["id"], message_id)
            except ApiError:
                pass  # deleteMessages skips messages it cannot find
        return True

    def _send_chat_action(self, params: JSONDict) -> bool:
        self._target_chat(params)
        if not params.get("action"):
            raise ApiError(400, "Bad Request: action is empty")
        return True

    def _answer_callback_query(self, params: JSONDict) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in self._callback_ids or query_id in self.callback_answers:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or "
                                "query ID is invalid")
        self.callback_answers[query_id] = params
        return True

    def _get_chat(self, params: JSONDict) -> JSONDict:
        chat = dict(self._target_chat(params))
        # ChatFullInfo's required fields.
        chat.update(
            accent_color_id=0,
            max_reaction_count=11,
            accepted_gift_types={"unlimited_gifts": True, "limited_gifts": True,
                                 "unique_gifts": True, "premium_subscription": True,
                                 "gifts_from_channels": True},
        )
        return chat

    def _get_chat_member(self, params: JSONDict) -> JSONDict:
        chat = self._target_chat(params)
        user_id = params.get("user_id")
        if user_id == self.bot_user["id"]:
            user: JSONDict = dict(self.bot_user)
        elif isinstance(user_id, int) and user_id in self._users:
            user = dict(self._users[user_id])
        else:
            raise ApiError(400, "Bad Request: user not found")
        if chat["type"] == "private" and user_id not in (chat["id"], self.bot_user["id"]):
            raise ApiError(400, "Bad Request: user not found")
        status = self._member_status.get((chat["id"], user_id)) or \
            self._member_status.get((None, user_id), "member")
        member: JSONDict = {"status": status, "user": user}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(
                can_be_edited=False, is_anonymous=False, can_manage_chat=True,
                can_delete_messages=True, can_manage_video_chats=True, can_restrict_members=True,
                can_promote_members=False, can_change_info=True, can_invite_users=True,
                can_post_stories=False, can_edit_stories=False, can_delete_stories=False,
            )
        elif status == "kicked":
            member["until_date"] = 0
        return member

    def _get_file(self, params: JSONDict) -> JSONDict:
        file_id = params.get("file_id")
        stored = self._files.get(file_id) if isinstance(file_id, str) else None
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if self.download_limit is not None and stored.size > self.download_limit:
            raise ApiError(400, "Bad Request: file is too big")
        result: JSONDict = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                            "file_size": stored.size, "file_path": stored.file_path}
        if self.local_mode and self.local_file_dir is not None:
            target = self.local_file_dir / stored.file_path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(stored.data)
            result["file_path"] = str(target.resolve())
        return result


def _json(payload: JSONDict, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

