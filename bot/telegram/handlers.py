"""Telegram handlers: parse the update, call the service, answer. Nothing else lives here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any

from telegram import Message, Update, User
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from bot.progress_text import describe, until_text
from bot.requests import JobHandle, LinkSource, ModeChange, RefusalCode, UploadSource, UserIdentity
from bot.service import SeparationService
from bot.staging import staged_upload
from bot.wording import plural
from separation_worker.contract.progress_bus import JobEvent
from storage import safe_filename

from . import downloads, mode_picker, texts
from .delivery import Deliveries, Destination
from .sources import addressed_to_bot, is_media_document, link_in, media_of

log = logging.getLogger(__name__)

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]

CLOUD_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # what getFile serves from the cloud Bot API
MEDIA = filters.AUDIO | filters.VOICE | filters.VIDEO | filters.VIDEO_NOTE | filters.Document.ALL


class Audience(Enum):
    EVERYONE = "everyone"  # listed in every chat's command menu
    ADMINS = "admins"  # listed only in TELEGRAM_ADMIN_IDS' own chats
    UNLISTED = "unlisted"  # /start: what Telegram's Start button sends


@dataclass(frozen=True)
class Command:
    name: str
    description: str  # shown in Telegram's command menu
    audience: Audience = Audience.EVERYONE


# Every command the bot answers, in menu order: `register` adds a handler for each and the app lists them
# (setMyCommands) from this same table, so the menu cannot offer a command nobody answers, nor hide one.
COMMANDS = (
    Command("start", "Start", Audience.UNLISTED),
    Command("help", "What I do and the limits"),
    Command("quota", "Songs left today"),
    Command("mode", "Which stems you get: /mode karaoke"),
    Command("pro", "How to get Pro"),
    Command("link", "Link your Discord account"),
    Command("cancel", "Cancel your queued song"),
    Command("grant", "Give a user Pro: /grant <user id> [days]", Audience.ADMINS),
    Command("revoke", "Take a user's Pro grant back: /revoke <user id>", Audience.ADMINS),
)


def message_of(update: Update) -> Message:
    """The message a handler answers (our handlers are registered for message updates only)."""
    if update.effective_message is None:
        raise ValueError("an update without a message reached a message handler")
    return update.effective_message


def sender_of(message: Message) -> User:
    if message.from_user is None:  # channel posts: no handler of ours takes them
        raise ValueError("a message without a sender reached a handler")
    return message.from_user


class TelegramFrontend:
    def __init__(self, settings, service: SeparationService, deliveries: Deliveries):
        self.settings = settings
        self.service = service
        self.deliveries = deliveries
        self.cloud_api = settings.telegram_api_base_url.rstrip("/") == "https://api.telegram.org"

    def register(self, app: Application) -> None:
        callbacks: dict[str, Handler] = {
            "start": self.help, "help": self.help, "quota": self.quota, "mode": self.mode, "pro": self.pro,
            "link": self.link,
            "cancel": self.cancel, "grant": self.grant, "revoke": self.revoke,
        }
        if set(callbacks) != {c.name for c in COMMANDS}:  # a programming error: the menu and the handlers disagree
            raise RuntimeError(f"COMMANDS and the handlers differ: {sorted(set(callbacks) ^ {c.name for c in COMMANDS})}")
        for command in COMMANDS:
            app.add_handler(CommandHandler(command.name, self._rate_limited(callbacks[command.name])))
        app.add_handler(CallbackQueryHandler(self.on_mode_button, pattern=f"^{mode_picker.CALLBACK_PREFIX}"))
        app.add_handler(MessageHandler(MEDIA, self._rate_limited(self.on_media)))
        app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, self._rate_limited(self.on_text)))
        app.add_error_handler(self.on_error)

    # -- songs ---------------------------------------------------------------------------

    async def on_media(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = message_of(update)
        if not self._addressed(message, context):
            return
        if message.document and not is_media_document(message):
            await message.reply_text(texts.NOT_AUDIO_DOCUMENT)
            return
        media = media_of(message)
        if media is None:  # the MEDIA filter lets only messages with one of these through
            return
        if self.cloud_api and media.size and media.size > CLOUD_DOWNLOAD_LIMIT:
            await message.reply_text(texts.TOO_BIG_FOR_TELEGRAM.format(limit=CLOUD_DOWNLOAD_LIMIT // 2**20))
            return
        # Quota, queue, declared size and length first: a refused song is never downloaded.
        refusal = await self.service.precheck(self._who(message), size=media.size, duration=media.duration)
        if refusal is not None:
            await message.reply_text(refusal.message)
            return
        status = await message.reply_text(texts.RECEIVED)
        async with staged_upload(self.service.files) as staging:
            path = staging / safe_filename(media.filename, "upload")
            try:
                telegram_file = await context.bot.get_file(media.file_id)
                complete = await downloads.download(telegram_file, path, self.settings.max_input_bytes)
            except BadRequest as exc:
                text = texts.TOO_BIG_FOR_TELEGRAM.format(limit=CLOUD_DOWNLOAD_LIMIT // 2**20) if "too big" in str(exc).lower() else f"I couldn't download that file from Telegram ({exc.message})."
                await status.edit_text(text)
                return
            except (downloads.DownloadFailed, TelegramError, OSError) as exc:
                log.warning("telegram download failed: %s", type(exc).__name__)
                await status.edit_text(texts.DOWNLOAD_FAILED)
                return
            if not complete:
                await status.edit_text(self.service.wording.too_large())
                return
            await self._submit(message, status, UploadSource(media.filename, path=path, movable=True))

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = message_of(update)
        if not self._addressed(message, context):
            return
        url = link_in(message)
        if url is None:
            if message.chat.type == "private":
                await message.reply_text(texts.NEED_SOURCE)
            return
        status = await message.reply_text(texts.RECEIVED)
        await self._submit(message, status, LinkSource(url))

    async def _submit(self, message: Message, status: Message, source) -> None:
        where = Destination(message.chat_id, status.message_id, message.message_id)
        who = self._who(message)
        outcome = await self.service.submit(who, source, delivery=where.to_delivery())
        if not isinstance(outcome, JobHandle):
            await status.edit_text(outcome.message)
            return
        # The song is queued in the user's default mode; the picker under its status changes that while it waits.
        picker = mode_picker.keyboard(outcome.job_id, await self.service.mode_options(who), outcome.mode)
        await status.edit_text(describe(JobEvent(outcome.job_id, "queued", 0.0, position=outcome.position)),
                               reply_markup=picker)
        self.deliveries.follow(outcome.job_id, where, picker)

    async def on_mode_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A press on a waiting song's mode picker: change its mode (and charge), or say why not."""
        query = update.callback_query
        if query is None:
            return
        picked = mode_picker.parse(query.data)
        if picked is None:
            await query.answer()
            return
        job_id, mode = picked
        who = UserIdentity("telegram", str(query.from_user.id), query.from_user.full_name or "")
        outcome = await self.service.change_mode(who, job_id, mode)
        if not isinstance(outcome, ModeChange):
            await query.answer(outcome.message, show_alert=True)
            if outcome.code is RefusalCode.TOO_LATE and job_id in self.deliveries.pickers:
                self.deliveries.pickers.pop(job_id, None)
            return
        picker = mode_picker.keyboard(job_id, await self.service.mode_options(who), outcome.mode)
        if picker is not None and job_id in self.deliveries.pickers:  # still waiting: later edits keep the new one
            self.deliveries.pickers[job_id] = picker
        await query.answer(self.service.wording.mode_changed(outcome.mode))
        try:
            await query.edit_message_reply_markup(reply_markup=picker)
        except BadRequest as exc:  # the status moved on meanwhile (a worker took the song)
            log.info("could not update the mode picker: %s", exc)

    # -- commands ------------------------------------------------------------------------

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        s = self.settings
        await message_of(update).reply_text(
            texts.HELP.format(free=plural(s.free_songs_per_day, "song"), pro=plural(s.pro_songs_per_day, "song"),
                              kept_for=self.service.wording.kept_for, minutes=int(s.max_duration_seconds // 60),
                              download_mb=CLOUD_DOWNLOAD_LIMIT // 2**20 if self.cloud_api else s.max_input_bytes // 2**20,
                              modes=texts.mode_lines(self.service.wording)),
            parse_mode=ParseMode.HTML,
        )

    async def quota(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        info = await self.service.quota(self._who(message_of(update)))
        await message_of(update).reply_text(
            texts.quota(info, until_text(info.next_free_at, self.service.clock.now()), self.settings.pro_songs_per_day),
            parse_mode=ParseMode.HTML,
        )

    async def mode(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/mode: the modes and the user's default; /mode NAME makes NAME the default."""
        message = message_of(update)
        who = self._who(message)
        if context.args:
            said = await self.service.set_default_mode(who, context.args[0])
            await message.reply_text(said if isinstance(said, str) else said.message)
            return
        current = await self.service.default_mode(who)
        options = await self.service.mode_options(who)
        await message.reply_text(texts.modes(options, current, self.service.wording), parse_mode=ParseMode.HTML)

    async def pro(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        reason = await self.service.pro_status(self._who(message_of(update)))
        status = f"⭐ Pro ({reason.value.replace('_', ' ')})" if reason else texts.NOT_PRO
        await message_of(update).reply_text(
            texts.PRO.format(pro=self.settings.pro_songs_per_day, free=self.settings.free_songs_per_day, status=status),
            parse_mode=ParseMode.HTML,
        )

    async def link(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = message_of(update)
        who = self._who(message)
        if context.args:  # a code made by the Discord bot
            await message.reply_text(await self.service.redeem_link_code(who, context.args[0]))
            return
        code = await self.service.link_code(who)
        minutes = max(1, round((code.expires_at - self.service.clock.now()).total_seconds() / 60))
        await message.reply_text(
            f"Your link code: <code>{code.code}</code>\nIn our Discord server, run <code>/link code:{code.code}</code> "
            f"within {minutes} minutes. Then Pro on either account counts on both.",
            parse_mode=ParseMode.HTML,
        )

    async def cancel(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        cancelled = await self.service.cancel(self._who(message_of(update)))
        await message_of(update).reply_text(
            "🚫 Cancelled. Your quota was not charged." if cancelled else texts.NOTHING_TO_CANCEL
        )

    async def grant(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = message_of(update)
        found = await self._admin_target(message, context.args or [], texts.GRANT_USAGE)
        if found is None:
            return
        target, rest = found
        try:
            days = float(rest[0]) if rest else None
        except ValueError:
            await message.reply_text(texts.GRANT_USAGE)
            return
        # TELEGRAM_ADMIN_IDS are operators: their grants hold everywhere (guild_id None).
        grant = await self.service.grant_pro(f"telegram:{sender_of(message).id}", target, days, guild_id=None)
        until = f" until {grant.until:%Y-%m-%d %H:%M} UTC" if grant.until else ""
        await message.reply_text(texts.granted(target.user_id, until))

    async def revoke(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = message_of(update)
        found = await self._admin_target(message, context.args or [], texts.REVOKE_USAGE)
        if found is None:
            return
        target, _ = found
        revoked = await self.service.revoke_pro(target, guild_id=None)
        await message.reply_text(texts.revoked(target.user_id, revoked))

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("handler failed: %s", context.error, exc_info=context.error)
        if isinstance(update, Update) and update.effective_message:
            try:
                await message_of(update).reply_text("Something went wrong on my side. Please try again in a moment.")
            except Exception:  # the reply itself failed (e.g. the chat is gone): nothing more to do
                pass

    # -- helpers -------------------------------------------------------------------------

    def _rate_limited(self, callback: Handler) -> Handler:
        async def limited(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            message = update.effective_message
            if message is not None and message.from_user is not None and self._addressed(message, context):
                refusal = await self.service.allow_command(self._who(message))
                if refusal is not None:
                    await message.reply_text(refusal.message)
                    return
            await callback(update, context)

        return limited

    def _addressed(self, message: Message | None, context: ContextTypes.DEFAULT_TYPE) -> bool:
        return message is not None and addressed_to_bot(message, context.bot.id, context.bot.username)

    def _who(self, message: Message) -> UserIdentity:
        user = sender_of(message)
        return UserIdentity("telegram", str(user.id), user.full_name or user.username or "")

    def _is_admin(self, message: Message) -> bool:
        return message.from_user is not None and message.from_user.id in self.settings.telegram_admin_ids

    async def _admin_target(self, message: Message, args: list[str], usage: str) -> tuple[UserIdentity, list[str]] | None:
        """For admin commands: the target user and the remaining arguments, after answering refusals."""
        if not self._is_admin(message):
            await message.reply_text(texts.NOT_ADMIN)
            return None
        target, rest = self._target(message, args)
        if target is None:
            await message.reply_text(usage)
            return None
        return target, rest

    def _target(self, message: Message, args: list[str]) -> tuple[UserIdentity | None, list[str]]:
        """The user an admin command is about: a replied-to message's author, or a numeric id argument."""
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and not replied.from_user.is_bot:
            return UserIdentity("telegram", str(replied.from_user.id), replied.from_user.full_name), args
        if args and args[0].lstrip("-").isdigit():
            return UserIdentity("telegram", args[0]), args[1:]
        return None, args
