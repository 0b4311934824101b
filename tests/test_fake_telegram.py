"""The fake Bot API (tests/support/fake_telegram.py) driven by the real python-telegram-bot."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import time
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from telegram import (
    Bot,
    ChatMemberAdministrator,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, EndPointNotFound, Forbidden, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.support.fake_telegram import MB, FakeTelegram

TOKEN = "123456:TEST-token"
ALICE = 1001


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx (PTB's HTTP client) honours proxy variables; the fake must be reached directly.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def local_fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, local_mode=True) as fake:
        yield fake


class Recorder:
    """What the test bot's handlers saw."""

    def __init__(self) -> None:
        self.update_ids: list[int] = []
        self.downloads: list[bytes] = []
        self.errors: list[BaseException] = []


def msg(update: Update) -> Message:
    assert update.message is not None
    return update.message


def build_app(fake: FakeTelegram, seen: Recorder) -> Application:
    """A tiny bot: echo, /start, audio round trip with a status message, documents, buttons."""
    app = (
        ApplicationBuilder()
        .token(TOKEN)
        .base_url(f"{fake.url}/bot")
        .base_file_url(f"{fake.url}/file/bot")
        .build()
    )

    async def record(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.update_ids.append(update.update_id)

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="go")]])
        await msg(update).reply_text("<b>Welcome</b> &amp; hi", parse_mode=ParseMode.HTML,
                                        reply_markup=keyboard)

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await msg(update).reply_text(f"echo: {msg(update).text}")

    async def audio(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = msg(update)
        assert message.audio is not None
        status = await message.reply_text("📥 Received")
        await context.bot.send_chat_action(message.chat_id, "upload_voice")
        data = bytes(await (await message.audio.get_file()).download_as_bytearray())
        seen.downloads.append(data)
        await status.edit_text("⚙️ Working")
        await message.reply_audio(data, filename="stem.mp3", title=f"{message.audio.title} — Vocals",
                                  performer="StemBot", caption="Vocals")
        await status.edit_text("✅ Done")

    async def document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = msg(update)
        assert message.document is not None
        try:
            file = await message.document.get_file()
        except BadRequest as exc:
            await message.reply_text(f"error: {exc.message}")
            return
        data = bytes(await file.download_as_bytearray())
        seen.downloads.append(data)
        await message.reply_text(f"got {len(data)} bytes")

    async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("ok")
        await query.edit_message_reply_markup(None)

    async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if context.error is not None:
            seen.errors.append(context.error)

    app.add_handler(MessageHandler(filters.ALL, record), group=-1)
    app.add_handler(CommandHandler("start", start))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    app.add_handler(MessageHandler(filters.AUDIO, audio))
    app.add_handler(MessageHandler(filters.Document.ALL, document))
    app.add_handler(CallbackQueryHandler(button))
    app.add_error_handler(on_error)
    return app


@contextlib.asynccontextmanager
async def run_app(fake: FakeTelegram) -> AsyncIterator[tuple[Application, Recorder]]:
    seen = Recorder()
    app = build_app(fake, seen)
    assert app.updater is not None
    async with app:
        await app.start()
        await app.updater.start_polling(poll_interval=0, timeout=1)
        try:
            yield app, seen
        finally:
            await app.updater.stop()
            await app.stop()
    assert not seen.errors, seen.errors
    assert not fake.errors, fake.errors


@pytest.fixture
async def running(fake: FakeTelegram) -> AsyncIterator[tuple[Application, Recorder]]:
    async with run_app(fake) as pair:
        yield pair


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    """A bare PTB Bot (no polling) for direct API calls."""
    async with Bot(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url) as bot:
        yield bot


async def test_startup_echo_and_single_delivery(fake: FakeTelegram, running) -> None:
    _, seen = running
    await fake.wait_for("getUpdates")
    methods = [c.method for c in fake.calls]
    assert methods.index("getMe") < methods.index("deleteWebhook") < methods.index("getUpdates")

    pushed = [fake.send_text(ALICE, f"hello {i}") for i in range(5)]
    replies = await fake.wait_for(lambda: len(fake.messages(ALICE)) >= 5 and fake.messages(ALICE))
    assert [m.text for m in replies] == [f"echo: hello {i}" for i in range(5)]
    # Message ids increase per chat across the user's and the bot's messages.
    ids = [p.message["message_id"] for p in pushed] + [m.message_id for m in replies]
    assert len(set(ids)) == 10

    # Wait for PTB to confirm the updates (a getUpdates offset past them), then check that
    # nothing came twice.
    update_ids = [p.update["update_id"] for p in pushed]
    await fake.wait_for(lambda: any(
        (c.get("offset") or 0) > update_ids[-1] for c in fake.calls_of("getUpdates")))
    await fake.wait_for(lambda: not fake.pending_updates)
    assert sorted(seen.update_ids) == update_ids
    assert all(fake.delivery_counts[u] == 1 for u in update_ids)
    assert fake.pending_updates == []


async def test_command_html_and_callback_query(fake: FakeTelegram, running) -> None:
    pushed = fake.send_text(ALICE, "/start")
    assert pushed.message["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    welcome = await fake.wait_for(lambda: fake.last_message(ALICE))
    assert welcome.text == "<b>Welcome</b> &amp; hi" and welcome.visible_text == "Welcome & hi"
    assert welcome.parse_mode == "HTML"
    assert welcome.buttons == [{"text": "Go", "callback_data": "go"}]

    _, query = fake.send_callback_query(ALICE, welcome, "go")
    await fake.wait_for("editMessageReplyMarkup")
    assert fake.callback_answers[query["id"]]["text"] == "ok"
    assert welcome.reply_markup is None and welcome.markup_history[0] is not None


async def test_audio_round_trip_with_status_edits(fake: FakeTelegram, running) -> None:
    _, seen = running
    song = bytes(range(256)) * 4000  # ~1 MB
    fake.send_audio(ALICE, song, filename="night.mp3", title="Night Drive", performer="Band")

    stem = await fake.wait_for(lambda: fake.last_message(ALICE, "audio"))
    assert seen.downloads == [song]
    assert len(fake.downloads) == 1 and fake.downloads[0].startswith("music/")
    assert stem.file_bytes == song and stem.filename == "stem.mp3"
    assert stem.title == "Night Drive — Vocals" and stem.performer == "StemBot"
    assert stem.caption == "Vocals" and stem.audio is not None
    assert stem.audio["title"] == "Night Drive — Vocals" and stem.audio["file_size"] == len(song)
    # The bot's upload is a known file now: getFile/download work on it too.
    assert fake.file(stem.file_id).data == song

    status = fake.messages(ALICE, "text")[0]
    await fake.wait_for(lambda: len(status.edits) == 3)
    assert status.edits == ["📥 Received", "⚙️ Working", "✅ Done"]
    assert status.text == "✅ Done"
    assert fake.calls_of("sendChatAction")[0] == {"chat_id": ALICE, "action": "upload_voice"}


async def test_too_big_file_fails_in_cloud_mode(fake: FakeTelegram, running) -> None:
    fake.send_document(ALICE, b"\0" * (20 * MB + 1), filename="big.wav", mime_type="audio/wav")
    reply = await fake.wait_for(lambda: fake.last_message(ALICE))
    assert reply.text == "error: File is too big"
    assert fake.downloads == []


async def test_big_file_downloads_in_local_mode(local_fake: FakeTelegram) -> None:
    async with run_app(local_fake) as (_, seen):
        big = bytes(range(256)) * (21 * MB // 256)
        local_fake.send_document(ALICE, big, filename="big.wav", mime_type="audio/wav")
        reply = await local_fake.wait_for(lambda: local_fake.last_message(ALICE))
        assert reply.text == f"got {len(big)} bytes"
        assert seen.downloads == [big]


async def test_local_file_dir_is_read_from_disk(tmp_path) -> None:
    async with FakeTelegram(token=TOKEN, local_mode=True, local_file_dir=tmp_path) as fake:
        stored = fake.add_file(b"local bytes", "a.mp3", "audio/mpeg", kind="audio")
        async with Bot(TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url) as bot:
            file = await bot.get_file(stored.file_id)
            assert file.file_path == str((tmp_path / stored.file_path).resolve())
            assert await file.download_as_bytearray() == bytearray(b"local bytes")
        assert fake.downloads == []  # PTB read the file from disk


async def test_group_mention_and_chat_member(fake: FakeTelegram, bot: Bot) -> None:
    group = -100500
    _, message = fake.send_text(ALICE, "hey 👋 @stembot_test_bot split this", chat_id=group,
                                chat_type="supergroup")
    assert message["chat"]["type"] == "supergroup"
    # Offsets count UTF-16 code units: the emoji takes two.
    assert message["entities"] == [{"type": "mention", "offset": 7, "length": 17}]

    fake.set_member_status(ALICE, "administrator", chat_id=group)
    member = await bot.get_chat_member(group, ALICE)
    assert isinstance(member, ChatMemberAdministrator)
    assert (await bot.get_chat_member(ALICE, ALICE)).status == "member"
    chat = await bot.get_chat(group)
    assert chat.type == "supergroup" and chat.title


async def test_api_errors_like_telegram(fake: FakeTelegram, bot: Bot) -> None:
    fake.user(ALICE, "Alice")
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(999, "hi")
    with pytest.raises(BadRequest, match="(?i)can't parse entities"):
        await bot.send_message(ALICE, "<b>bold", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match="reserved"):
        await bot.send_message(ALICE, "Done. 3 stems", parse_mode=ParseMode.MARKDOWN_V2)
    ok = await bot.send_message(ALICE, r"*Done*\. 3 stems in `a_b.flac` [link](http://x.test/a\)b)",
                                parse_mode=ParseMode.MARKDOWN_V2)
    assert ok.text == "Done. 3 stems in a_b.flac link"
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(ALICE, "x" * 4097)

    sent = await bot.send_message(ALICE, "same")
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("same", chat_id=ALICE, message_id=sent.message_id)
    await bot.delete_message(ALICE, sent.message_id)
    assert fake.message(ALICE, sent.message_id).deleted
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("new", chat_id=ALICE, message_id=sent.message_id)

    fake.rate_limit("sendMessage", times=1, retry_after=3)
    with pytest.raises(RetryAfter) as info:
        await bot.send_message(ALICE, "flood")
    assert info.value.retry_after in (3, dtm.timedelta(seconds=3))
    await bot.send_message(ALICE, "after the flood")

    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("frobnicate", api_kwargs={"x": 1})
    assert fake.calls[-1] == ("frobnicate", {"x": 1})

    fake.block(ALICE)
    with pytest.raises(Forbidden, match="blocked"):
        await bot.send_message(ALICE, "hello?")


async def test_uploads_file_ids_and_limits(fake: FakeTelegram, bot: Bot) -> None:
    _, message = fake.send_audio(ALICE, b"ID3 user song", title="Song")
    file_id = message["audio"]["file_id"]
    # Re-sending by file_id keeps the bytes; a URL is recorded as such.
    again = await bot.send_audio(ALICE, file_id, title="Again")
    assert fake.message(ALICE, again.message_id).file_bytes == b"ID3 user song"
    by_url = await bot.send_document(ALICE, "https://example.test/a.pdf")
    assert fake.message(ALICE, by_url.message_id).file_url == "https://example.test/a.pdf"
    voice = await bot.send_voice(ALICE, b"OggS voice", duration=2)
    assert voice.voice is not None and voice.voice.duration in (2, dtm.timedelta(seconds=2))
    video = await bot.send_video(ALICE, b"video bytes", filename="v.mp4", caption="clip")
    assert fake.message(ALICE, video.message_id).file_bytes == b"video bytes"
    with pytest.raises(BadRequest, match="Wrong file identifier"):
        await bot.send_audio(ALICE, "no-such-file-id")

    async with FakeTelegram(token=TOKEN, upload_limit=1000) as small:
        small.user(ALICE)
        async with Bot(TOKEN, base_url=small.base_url, base_file_url=small.base_file_url) as b2:
            with pytest.raises(Exception, match="Request Entity Too Large"):
                await b2.send_document(ALICE, b"x" * 2000, filename="big.bin")


async def test_raw_http_json_bodies_encoded_tokens_and_conflicts(fake: FakeTelegram) -> None:
    fake.user(ALICE)
    stored = fake.add_file(b"raw", "r.bin")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.url}/bot{TOKEN}/sendMessage",
                             json={"chat_id": ALICE, "text": "json body"}) as resp:
            body = await resp.json()
        assert body["ok"] and body["result"]["text"] == "json body"
        async with http.post(f"{fake.url}/botWRONG:token/getMe") as resp:
            assert resp.status == 401
        encoded = TOKEN.replace(":", "%3A")
        async with http.get(f"{fake.url}/file/bot{encoded}/{stored.file_path}") as resp:
            assert resp.status == 200 and await resp.read() == b"raw"

        # Two pollers at once: the older long poll is terminated with 409 Conflict.
        first = asyncio.create_task(http.post(f"{fake.url}/bot{TOKEN}/getUpdates",
                                              data={"timeout": "5"}))
        await fake.wait_for("getUpdates")
        async with http.post(f"{fake.url}/bot{TOKEN}/getUpdates", data={"timeout": "0"}) as resp:
            assert (await resp.json())["result"] == []
        async with await first as resp:
            assert resp.status == 409 and "Conflict" in (await resp.json())["description"]


async def test_wait_for_timeout_explains(fake: FakeTelegram, bot: Bot) -> None:
    await bot.get_me()
    with pytest.raises(TimeoutError, match=r"(?s)sendAudio.*getMe\(\)"):
        await fake.wait_for("sendAudio", timeout=0.2)


async def test_stop_does_not_hang_on_a_pending_long_poll() -> None:
    fake = await FakeTelegram(token=TOKEN).start()
    app = (ApplicationBuilder().token(TOKEN).base_url(fake.base_url)
           .base_file_url(fake.base_file_url).build())
    assert app.updater is not None
    async with app:
        await app.start()
        await app.updater.start_polling(poll_interval=0, timeout=30)
        await fake.wait_for("getUpdates")
        started = time.monotonic()
        await app.updater.stop()
        await app.stop()
    assert time.monotonic() - started < 1
    started = time.monotonic()
    await fake.stop()  # the abandoned 30 s long poll is still pending on the server side
    assert time.monotonic() - started < 1
    assert Counter(c.method for c in fake.calls)["getUpdates"] >= 1
