"""Secrets never reach a log: every log record is scrubbed of them when it is created.

Libraries log request URLs (python-telegram-bot's httpx puts the bot token in every URL),
so filtering our own messages is not enough; a record factory sees every logger's records.
"""

from __future__ import annotations

import logging

REPLACEMENT = "[redacted]"
MIN_SECRET_LENGTH = 8  # shorter values would redact ordinary words


def install(secrets: list[str]) -> None:
    """Redact these values (and the URL-encoded form of tokens) from all log records from now on."""
    values = sorted({v for s in secrets if s and len(s) >= MIN_SECRET_LENGTH for v in (s, s.replace(":", "%3A"))},
                    key=len, reverse=True)
    if not values:
        return
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", None) is not None:  # installed before: extend its list
        previous.redacts[:] = sorted(set(previous.redacts) | set(values), key=len, reverse=True)
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to logging's own error handling
            return record
        scrubbed = message
        for value in factory.redacts:
            scrubbed = scrubbed.replace(value, REPLACEMENT)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None:
            text = str(record.exc_info[1])
            if any(v in text for v in factory.redacts):
                record.exc_info = None  # the traceback would repeat the secret
                record.msg = f"{record.msg} (exception details redacted)"
        return record

    factory.redacts = values  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def secrets_of(settings) -> list[str]:
    return [settings.telegram_bot_token, settings.discord_bot_token, settings.secret_key]
