"""Secrets never reach a log line: messages, arguments, chained tracebacks, stack info and extra= fields,
in the text and the JSON format, through real loggers and handlers."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from stembot import redaction
from stembot.log_format import JsonFormatter, TextFormatter

TOKEN = "424242:REDACTION-test-token-abcdef"
KEY = "redaction-test-signing-key-0123"
SECRETS = (TOKEN, TOKEN.replace(":", "%3A"), KEY)


@pytest.fixture(autouse=True)
def _installed() -> None:
    redaction.install([TOKEN, KEY])


@pytest.fixture(params=[TextFormatter, JsonFormatter], ids=["text", "json"])
def logged(request) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through one of our formatters into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(request.param())
    logger = logging.getLogger(f"tests.redaction.{request.param.__name__}")
    logger.handlers[:], logger.propagate = [handler], False
    logger.setLevel(logging.DEBUG)
    yield logger, buffer
    logger.handlers[:] = []


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert redaction.REPLACEMENT in text


def test_message_and_arguments(logged):
    logger, buffer = logged
    logger.info("GET https://api.telegram.org/bot%s/getMe", TOKEN)
    logger.info("file https://api.telegram.org/file/bot%s/x.mp3", TOKEN.replace(":", "%3A"))
    logger.info("request %(url)s", {"url": f"https://example.test/?key={KEY}"})
    assert_clean(buffer.getvalue())
    assert "https://api.telegram.org/bot[redacted]/getMe" in buffer.getvalue()


def test_chained_exceptions_keep_their_traceback_without_the_secret(logged):
    logger, buffer = logged
    try:
        try:
            raise ConnectionError(f"POST https://api.telegram.org/bot{TOKEN}/sendAudio failed")
        except ConnectionError as low_level:
            try:
                raise LookupError(f"while signing with {KEY}")  # implicit chaining: __context__
            except LookupError:
                raise RuntimeError("upload failed") from low_level  # explicit chaining: __cause__
    except RuntimeError:
        logger.exception("delivery failed")
    text = buffer.getvalue()
    assert_clean(text)
    assert "ConnectionError" in text and "RuntimeError: upload failed" in text  # still useful to read
    assert "Traceback" in text


def test_exception_in_a_later_link_of_the_chain_only(logged):
    logger, buffer = logged
    try:
        try:
            raise KeyError(TOKEN)
        except KeyError:
            raise ValueError("harmless words") from None  # suppressed context: not printed anyway
    except ValueError:
        logger.exception("one")
    try:
        try:
            raise KeyError(TOKEN)
        except KeyError:
            raise ValueError("harmless words")  # noqa: B904  # the implicit __context__ chain is what's tested
    except ValueError:
        logger.exception("two")
    text = buffer.getvalue()
    for secret in SECRETS:
        assert secret not in text


def test_stack_info():
    record = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "m", (), None, None, f"Stack: bot{TOKEN}")
    assert record.stack_info == "Stack: bot[redacted]"


def test_arguments_that_do_not_fit_the_format_are_not_printed_raw():
    record = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "token %d", (TOKEN,), None)
    assert TOKEN not in record.getMessage() and redaction.REPLACEMENT in record.getMessage()


def test_structured_fields_in_json_stay_structured_and_clean():
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.redaction.fields")
    logger.handlers[:], logger.propagate = [handler], False
    logger.setLevel(logging.INFO)

    class Url:  # like httpx.URL: an object whose text carries the secret
        def __str__(self) -> str:
            return f"https://api.telegram.org/bot{TOKEN}/getUpdates"

    logger.info("job %s: done", "abc", extra={
        "job_id": "abc",
        "request": {"url": f"https://api.telegram.org/bot{TOKEN}/getMe", "headers": [f"Bot {TOKEN}"]},
        "target": Url(),
        "seconds": 1.5,
    })
    line = buffer.getvalue()
    assert_clean(line)
    entry = json.loads(line)
    assert entry["job_id"] == "abc" and entry["seconds"] == 1.5 and entry["msg"] == "job abc: done"
    assert entry["request"] == {"url": "https://api.telegram.org/bot[redacted]/getMe", "headers": ["Bot [redacted]"]}
    assert entry["target"] == "https://api.telegram.org/bot[redacted]/getUpdates"


def test_extra_fields_in_a_text_format_that_shows_them():
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(TextFormatter("%(message)s %(request)s"))  # a format that prints an extra= field
    logger = logging.getLogger("tests.redaction.textfields")
    logger.handlers[:], logger.propagate = [handler], False
    logger.warning("sent", extra={"request": {"url": f"https://x.test/bot{TOKEN}/getMe"}})
    assert_clean(buffer.getvalue())


def test_any_handler_gets_scrubbed_records(caplog):
    """The record factory works for handlers that are not ours (pytest's, a library's)."""
    caplog.set_level(logging.INFO)
    logging.getLogger("httpx").info('HTTP Request: POST https://api.telegram.org/bot%s/getMe "HTTP/1.1 200 OK"', TOKEN)
    try:
        raise RuntimeError("outer") from OSError(f"bot{TOKEN}")
    except RuntimeError:
        logging.getLogger("telegram.ext").exception("polling failed")
    for secret in SECRETS:
        assert secret not in caplog.text
    assert "OSError: bot[redacted]" in caplog.text
