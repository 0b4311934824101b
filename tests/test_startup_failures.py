"""A front end that cannot start exits non-zero in seconds with one line naming the setting at fault, never the secret.

Each case runs the real `stembot` console script against the tests' fake Bot API or fake Discord (started in this
event loop, so they keep answering while the command runs), or against a port where nothing listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from tests.conftest import stembot_exe
from tests.service_support import RedisDb, service_env
from tests.support.fake_discord import FakeDiscord
from tests.support.fake_telegram import FakeTelegram

REDIS_DB = RedisDb.STARTUP
FAST_S = 10.0  # "within seconds": the interpreter and its imports take most of it
HANG_S = 40.0  # give up on a command that hangs, and say so

TELEGRAM_TOKEN = "700700:the-right-token-kept-by-the-fake"
WRONG_TELEGRAM_TOKEN = "800800:a-revoked-token-Telegram-refuses"
DISCORD_TOKEN = "the-right-discord-token.kept-by.the-fake"
WRONG_DISCORD_TOKEN = "a-revoked-discord-token.Discord.refuses"
REDIS_PASSWORD = "redis-password-0123456789"
CHECK_DISCORD_TOKEN = "check the token in the Discord developer portal"


@dataclass
class Finished:
    returncode: int
    output: str  # stdout and stderr together, as an operator sees them
    seconds: float

    @property
    def lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()]


async def stembot(*args: str, env: dict[str, str]) -> Finished:
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        stembot_exe(), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), HANG_S)
    except asyncio.TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        pytest.fail(f"`stembot {' '.join(args)}` hung for {HANG_S:.0f} s:\n{output.decode()}")
    return Finished(process.returncode or 0, output.decode(), time.monotonic() - started)


def assert_fails_with(finished: Finished, line: str, *secrets: str) -> None:
    assert finished.returncode != 0, finished.output
    assert finished.lines == [f"stembot: {line}"], finished.output
    assert finished.seconds < FAST_S, f"took {finished.seconds:.1f} s"
    for secret in secrets:
        for form in (secret, secret.replace(":", "%3A")):
            assert form not in finished.output


def closed_port() -> int:
    """A local port where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith(("STEMBOT_", "TELEGRAM_", "DISCORD_"))}
    base.update(service_env(tmp_path / "data", tmp_path / "models", redis_db=REDIS_DB))
    return base


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TELEGRAM_TOKEN) as fake:
        yield fake


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    fake = await FakeDiscord(token=DISCORD_TOKEN).start()
    yield fake
    await fake.close()


# -- Telegram ---------------------------------------------------------------------------------------------------


def telegram_env(env: dict[str, str], fake: FakeTelegram, token: str) -> dict[str, str]:
    return {**env, "TELEGRAM_BOT_TOKEN": token, "TELEGRAM_API_BASE_URL": fake.url}


async def test_telegram_token_rejected_401(env, telegram):
    finished = await stembot("telegram", env=telegram_env(env, telegram, WRONG_TELEGRAM_TOKEN))
    assert_fails_with(
        finished,
        "TELEGRAM_BOT_TOKEN was rejected by the Telegram Bot API (401 Unauthorized): check the token from @BotFather",
        WRONG_TELEGRAM_TOKEN, env["STEMBOT_SECRET_KEY"],
    )


async def test_telegram_token_rejected_404(env, telegram):
    # What Telegram answers to a malformed token; from a server that is not Telegram's, the URL may be at fault.
    telegram.fail_next("getMe", "Not Found", error_code=404)
    finished = await stembot("telegram", env=telegram_env(env, telegram, TELEGRAM_TOKEN))
    assert_fails_with(
        finished,
        "TELEGRAM_BOT_TOKEN was rejected by the Telegram Bot API (404 Not Found): "
        "check the token from @BotFather and TELEGRAM_API_BASE_URL",
        TELEGRAM_TOKEN,
    )
    assert [call.method for call in telegram.calls] == ["getMe"]  # nothing else was tried


async def test_telegram_token_rejected_verbose_json_logs(env, telegram):
    """With every log line on (-v, JSON), the token still appears nowhere, chained exceptions included."""
    finished = await stembot("-v", "telegram", env={**telegram_env(env, telegram, WRONG_TELEGRAM_TOKEN),
                                                     "STEMBOT_LOG_FORMAT": "json"})
    assert finished.returncode != 0 and finished.seconds < FAST_S, finished.output
    assert finished.lines[-1].startswith("stembot: TELEGRAM_BOT_TOKEN was rejected"), finished.output
    assert WRONG_TELEGRAM_TOKEN not in finished.output and WRONG_TELEGRAM_TOKEN.replace(":", "%3A") not in finished.output


async def test_telegram_api_unreachable(env):
    url = f"http://127.0.0.1:{closed_port()}"
    finished = await stembot("telegram", env={**env, "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN, "TELEGRAM_API_BASE_URL": url})
    assert_fails_with(
        finished,
        f"cannot reach the Telegram Bot API at {url} (Connection refused): check TELEGRAM_API_BASE_URL and the network",
        TELEGRAM_TOKEN,
    )


# -- Discord ----------------------------------------------------------------------------------------------------


def discord_env(env: dict[str, str], fake: FakeDiscord, token: str, **changes: str) -> dict[str, str]:
    return {**env, **fake.settings_env(), "DISCORD_BOT_TOKEN": token, **changes}


async def test_discord_token_rejected(env, discord_fake):
    finished = await stembot("discord", env=discord_env(env, discord_fake, WRONG_DISCORD_TOKEN))
    assert_fails_with(
        finished, f"DISCORD_BOT_TOKEN was rejected by the Discord API (401 Unauthorized): {CHECK_DISCORD_TOKEN}",
        WRONG_DISCORD_TOKEN, env["STEMBOT_SECRET_KEY"],
    )


async def test_discord_gateway_unreachable(env, discord_fake):
    gateway = f"ws://127.0.0.1:{closed_port()}/gateway"
    finished = await stembot("discord", env=discord_env(env, discord_fake, DISCORD_TOKEN, DISCORD_GATEWAY_URL=gateway))
    assert_fails_with(
        finished,
        f"cannot connect to the Discord gateway at {gateway} (Connection refused): check DISCORD_GATEWAY_URL and the network",
        DISCORD_TOKEN,
    )


async def test_discord_api_unreachable(env, discord_fake):
    api = f"http://127.0.0.1:{closed_port()}/api/v10"
    finished = await stembot("discord", env=discord_env(env, discord_fake, DISCORD_TOKEN, DISCORD_API_BASE_URL=api))
    assert_fails_with(
        finished,
        f"cannot reach the Discord API at {api} (Connection refused): check DISCORD_API_BASE_URL and the network",
        DISCORD_TOKEN,
    )


# -- web and worker ---------------------------------------------------------------------------------------------


async def test_web_without_secret_key(env):
    finished = await stembot("web", "--host", "127.0.0.1", "--port", str(closed_port()), env={**env, "STEMBOT_SECRET_KEY": ""})
    assert_fails_with(finished, "STEMBOT_SECRET_KEY must be set to a random string of 16+ characters")


async def test_web_port_taken(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        finished = await stembot("web", "--host", "127.0.0.1", "--port", str(port), env=env)
    assert_fails_with(finished, f"cannot listen on 127.0.0.1:{port} (Address already in use): choose another --host or --port",
                      env["STEMBOT_SECRET_KEY"])


@pytest.mark.parametrize("command", ["web", "worker"])
async def test_redis_unreachable(env, command):
    port = closed_port()
    args = ("web", "--host", "127.0.0.1", "--port", str(closed_port())) if command == "web" else ("worker",)
    finished = await stembot(*args, env={**env, "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"})
    assert_fails_with(finished, f"cannot reach Redis at 127.0.0.1:{port} (Connection refused): check REDIS_URL and that Redis is running",
                      REDIS_PASSWORD, env["STEMBOT_SECRET_KEY"])


# -- Telegram: a start that fails after getMe, and polling that can never recover --------------------------------


def telegram_start_failed(fake: FakeTelegram, method: str, answer: str) -> str:
    return (f"the Telegram Bot API at {fake.url} failed {method} at start ({answer}): "
            "try again; if it keeps failing, check TELEGRAM_API_BASE_URL")


@pytest.mark.parametrize(
    "method, code, answer",
    [("setMyCommands", 500, "Internal Server Error"), ("deleteWebhook", 502, "Bad Gateway"),
     ("getUpdates", 502, "Bad Gateway")],
)
async def test_telegram_a_start_up_call_fails(env, telegram, method, code, answer):
    """getMe answered, then the next call fails once: the start fails (PTB alone would log a traceback, and a
    failing first getUpdates would only be retried in the background, forever)."""
    telegram.fail_next(method, answer, error_code=code)
    finished = await stembot("telegram", env=telegram_env(env, telegram, TELEGRAM_TOKEN))
    assert_fails_with(finished, telegram_start_failed(telegram, method, answer), TELEGRAM_TOKEN)
    assert telegram.calls[-1].method == method  # nothing after it was tried


async def test_telegram_token_revoked_between_getme_and_polling(env, telegram):
    telegram.fail_next("getUpdates", "Unauthorized", error_code=401)
    finished = await stembot("telegram", env=telegram_env(env, telegram, TELEGRAM_TOKEN))
    assert_fails_with(
        finished,
        "TELEGRAM_BOT_TOKEN was rejected by the Telegram Bot API (401 Unauthorized): check the token from @BotFather",
        TELEGRAM_TOKEN,
    )


async def test_telegram_flood_control_at_start(env, telegram):
    telegram.rate_limit("setMyCommands", retry_after=7)
    finished = await stembot("telegram", env=telegram_env(env, telegram, TELEGRAM_TOKEN))
    assert_fails_with(finished, f"the Telegram Bot API at {telegram.url} asks to wait 7 s before setMyCommands "
                                "(flood control): start again after that", TELEGRAM_TOKEN)


async def test_telegram_database_fails_after_ptb_started(env, telegram, tmp_path):
    """PTB's HTTP clients are open (getMe answered) when the database refuses to open: all of it is released, and
    the process ends (an open aiosqlite connection's thread, or PTB's, would keep it alive)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "stembot.sqlite3").write_bytes(b"not a database " * 1000)
    finished = await stembot("telegram", env=telegram_env(env, telegram, TELEGRAM_TOKEN))
    assert finished.returncode != 0 and finished.seconds < FAST_S, finished.output
    assert len(finished.lines) == 1 and finished.lines[0].startswith("stembot: "), finished.output
    assert [call.method for call in telegram.calls] == ["getMe"]


def assert_polling_ended_with(finished: Finished, line: str, *secrets: str) -> None:
    """The bot had started (its one "is running" line), then polling failed for good: one more line, and out."""
    assert finished.returncode != 0, finished.output
    assert finished.lines[-1] == f"stembot: {line}", finished.output
    assert all("is running" in other for other in finished.lines[:-1]), finished.output  # no traceback, no retries
    assert finished.seconds < FAST_S, f"took {finished.seconds:.1f} s"
    for secret in secrets:
        assert secret not in finished.output and secret.replace(":", "%3A") not in finished.output


async def test_telegram_token_revoked_while_polling(env, telegram):
    """A 401 to a later getUpdates ends PTB's polling task without a word; the process used to run on, deaf."""
    telegram.fail_next("getUpdates", "Unauthorized", error_code=401, skip=1, times=5)  # skip: the start-up poll
    finished = await stembot("telegram", env=telegram_env(env, telegram, TELEGRAM_TOKEN))
    assert_polling_ended_with(
        finished,
        "TELEGRAM_BOT_TOKEN was rejected by the Telegram Bot API while polling (401 Unauthorized): "
        "check the token from @BotFather",
        TELEGRAM_TOKEN,
    )


async def test_telegram_another_instance_polling(env, telegram):
    """A second poller on the same token: each getUpdates ends the other's with 409 Conflict ("terminated by other
    getUpdates request"). PTB retries that forever with a traceback each time; the bot ends in seconds instead."""
    process = asyncio.create_task(stembot("telegram", env=telegram_env(env, telegram, TELEGRAM_TOKEN)))
    await telegram.wait_for("getUpdates", count=2, timeout=HANG_S)  # the start-up poll, then the long poll
    started = len(telegram.calls)
    competing = asyncio.create_task(compete_for_updates(telegram))
    try:
        finished = await process
    finally:
        competing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await competing
    assert_polling_ended_with(
        finished,
        "another bot instance is polling with this TELEGRAM_BOT_TOKEN (409 Conflict): run one `stembot telegram` per token",
        TELEGRAM_TOKEN,
    )
    assert len([c for c in telegram.calls[started:] if c.method == "getUpdates"]) < 30  # it did not keep trying


async def test_telegram_one_conflict_is_survived(env, telegram):
    """A lone 409 (an old instance's last getUpdates as it stops) is not another instance: polling goes on."""
    telegram.fail_next("getUpdates", "Conflict: terminated by other getUpdates request; make sure that only one bot "
                                     "instance is running", error_code=409, skip=1)
    process = await asyncio.create_subprocess_exec(
        stembot_exe(), "telegram", env=telegram_env(env, telegram, TELEGRAM_TOKEN),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await telegram.wait_for("getUpdates", count=3, timeout=HANG_S)  # start-up poll, the 409, polling again
        await asyncio.sleep(1.0)
        assert process.returncode is None  # still running
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), HANG_S)
    assert process.returncode == 0, output.decode()
    assert all("is running" in line for line in output.decode().splitlines() if line.strip()), output.decode()


async def compete_for_updates(fake: FakeTelegram) -> None:
    """Another bot instance: long-polls getUpdates with the same token, again as soon as each poll ends."""
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.post(f"{fake.base_url}{fake.token}/getUpdates", data={"timeout": "5"}) as response:
                await response.read()
