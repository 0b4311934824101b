"""A front end that cannot start exits non-zero in seconds with one line naming the setting at fault, never the secret.

Each case runs the real `stembot` console script against the tests' fake Bot API or fake Discord (started in this
event loop, so they keep answering while the command runs), or against a port where nothing listens.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

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
