"""Log output: human lines by default, or one JSON object per line (STEMBOT_LOG_FORMAT=json) for log pipelines.

Both formatters scrub secrets from what they print: the record factory (stembot.redaction) cannot see
fields passed with `extra=`, which are set on a record after it is created.
"""

from __future__ import annotations

import json
import logging
import time

from .redaction import scrub, scrub_value

# What every record has; anything else was passed with extra= (job_id, outcome, ...) and is a structured field.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({name: value for name, value in vars(record).items() if name not in _STANDARD_ATTRIBUTES})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        # Scrubbed before encoding: JSON escapes could otherwise hide a secret from a scrub of the line.
        return json.dumps(scrub_value(entry), ensure_ascii=False, default=lambda value: scrub(str(value)))


def configure(level: int, json_lines: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
