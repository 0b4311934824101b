"""Secrets never reach a log: every log record is scrubbed of them when it is created.

Libraries log request URLs (python-telegram-bot's httpx puts the bot token in every URL),
so filtering our own messages is not enough; a record factory sees every logger's records.
It scrubs the message and the whole formatted traceback, chained exceptions included. Fields
passed with `extra=` are set on a record after the factory returns, so the formatters in
`stembot.log_format` scrub what they print as well (`scrub`, `scrub_value`).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any
from urllib.parse import quote, urlsplit

REPLACEMENT = "[redacted]"
MIN_SECRET_LENGTH = 8  # shorter values would redact ordinary words

_values: list[str] = []  # longest first, so a secret containing another is replaced whole
_installed = False


def install(secrets: list[str]) -> None:
    """Redact these values (and their URL-encoded forms) from all log records from now on."""
    global _installed
    forms = {form for s in secrets if s and len(s) >= MIN_SECRET_LENGTH
             for form in (s, s.replace(":", "%3A"), quote(s, safe=""))}
    _values[:] = sorted(set(_values) | forms, key=len, reverse=True)
    if _values and not _installed:
        _installed = True
        logging.setLogRecordFactory(_redacting(logging.getLogRecordFactory()))


def scrub(text: str) -> str:
    for value in _values:
        text = text.replace(value, REPLACEMENT)
    return text


def scrub_value(value: Any) -> Any:
    """`value` with secrets replaced in every string inside it (dicts, lists and tuples are walked)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub_value(k): scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_value(v) for v in value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value)  # a URL object, an exception...: its text is what a log would show
    scrubbed = scrub(text)
    return scrubbed if scrubbed != text else value


def _redacting(previous):
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if _values:
            _scrub_record(record)
        return record

    return factory


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # arguments that don't fit the format: logging would print them raw
        message = f"{record.msg} {record.args!r}"
    if scrub(message) != message:
        record.msg, record.args = scrub(message), None
    if record.exc_info and record.exc_info[1] is not None:
        # The formatted traceback, with every __cause__ and __context__, is what a handler would print.
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if scrub(text) != text:
            # Handlers print a cached exc_text instead of formatting exc_info; dropping the live
            # exception keeps formatters that would format it themselves from printing the secret.
            record.exc_info, record.exc_text = None, scrub(text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)


def secrets_of(settings) -> list[str]:
    return [settings.telegram_bot_token, settings.discord_bot_token, settings.secret_key, settings.metrics_token,
            urlsplit(settings.redis_url).password or ""]
