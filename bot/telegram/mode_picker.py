"""The mode picker: an inline keyboard under a waiting song's status message, one button per mode."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.requests import ModeOption

CALLBACK_PREFIX = "mode:"  # callback data "mode:<job id>:<mode>" (well under Telegram's 64 bytes)
PER_ROW = 2


def keyboard(job_id: str, options: list[ModeOption], current: str) -> InlineKeyboardMarkup | None:
    """The picker for a job in `current` mode; None when there is nothing to pick from."""
    if len(options) < 2:
        return None
    buttons = [InlineKeyboardButton(label(option, option.name == current), callback_data=data(job_id, option.name))
               for option in options]
    return InlineKeyboardMarkup([buttons[i : i + PER_ROW] for i in range(0, len(buttons), PER_ROW)])


def label(option: ModeOption, chosen: bool) -> str:
    """"✓ Karaoke", "Full stems ×2", "Clean vocals ⭐" (Pro only)."""
    text = option.title
    if option.songs > 1:
        text += f" ×{option.songs}"
    if not option.allowed:
        text += " ⭐"
    return f"✓ {text}" if chosen else text


def data(job_id: str, mode: str) -> str:
    return f"{CALLBACK_PREFIX}{job_id}:{mode}"


def parse(callback_data: str | None) -> tuple[str, str] | None:
    """(job id, mode) from a button's data; None for data that isn't the picker's."""
    if not callback_data or not callback_data.startswith(CALLBACK_PREFIX):
        return None
    job_id, _, mode = callback_data[len(CALLBACK_PREFIX) :].partition(":")
    return (job_id, mode) if job_id and mode else None
