"""The one settings object: read once from the environment (and `.env`), passed down explicitly."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import platformdirs


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("stembot"))


def _default_model_dir() -> Path:
    # A persistent per-user cache: checkpoints are GBs and must survive reboots (not /tmp).
    return Path(platformdirs.user_cache_dir("stembot")) / "models"


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _parse_ids(name: str, raw: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in raw.replace(" ", "").split(",") if part)
    except ValueError:
        raise SettingsError(f"{name} must be a comma-separated list of numeric ids, not {raw!r}") from None


def _parse_number(name: str, raw: str, kind: type, minimum: float | None = None) -> float | int:
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, not {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    model_dir: Path
    device: str = "auto"  # auto | cpu | cuda | mps
    ensemble: str = ""  # empty: the built-in 40/35/25 ensemble; else JSON text or a .json/.yaml path
    batch_size: int = 0  # chunks per forward pass; 0 picks by device
    compile: str = "auto"  # torch.compile the Roformers: auto (on CUDA) | true | false
    loudness_target_lufs: float = -14.0
    true_peak_ceiling_dbtp: float = -1.0
    max_gain_db: float = 30.0
    silence_lufs: float = -60.0
    max_duration_seconds: float = 20 * 60
    max_input_bytes: int = 500 * 1024 * 1024
    output_format: str = "mp3"
    # The job service (queue, storage, links)
    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = field(default_factory=_default_data_dir)  # database and file store
    public_url: str = "http://localhost:8080"  # base of download links, e.g. https://stems.example.com
    secret_key: str = field(default="", repr=False)  # signs download links; never logged
    free_songs_per_day: int = 1
    pro_songs_per_day: int = 20
    file_ttl_hours: float = 24.0
    allow_private_urls: bool = False  # tests fetch from 127.0.0.1; production refuses private addresses
    jobs_per_worker: int = 1  # concurrent jobs per worker process (one per GPU by default)
    max_attempts: int = 3  # a job that keeps failing (worker lost, crashes) ends as failed, refunded
    job_timeout_base_s: float = 300.0
    job_timeout_factor: float = 3.0  # plus this many seconds per second of audio
    heartbeat_s: float = 10.0  # a dead worker's job is picked up again within 3 heartbeats
    max_queue: int = 200  # waiting jobs before new submissions are refused
    max_waiting_free: int = 1  # a user's queued or running jobs at once
    max_waiting_pro: int = 3
    max_duration_free_seconds: float = 10 * 60  # Pro gets max_duration_seconds
    commands_per_minute: int = 20  # per user, every command and message
    log_format: str = "text"  # text | json (one object per line, with job ids)
    drain_seconds: float = 8.0  # on SIGTERM, how long the bots let deliveries under way finish
    # Telegram
    telegram_bot_token: str = field(default="", repr=False)
    telegram_api_base_url: str = "https://api.telegram.org"
    telegram_admin_ids: tuple[int, ...] = ()
    # Discord
    discord_bot_token: str = field(default="", repr=False)
    discord_guild_id: int | None = None  # sync commands to this guild at once instead of globally
    discord_home_guild_id: int | None = None  # whose Pro role and grants count in DMs and on Telegram
    discord_owner_ids: tuple[int, ...] = ()  # operators: may grant and revoke Pro everywhere
    discord_api_base_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str = ""  # gateway override (tests, proxies)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, dotenv: bool = True) -> Settings:
        env = dict(os.environ if environ is None else environ)
        if dotenv and environ is None:
            env = {**_read_dotenv(Path.cwd() / ".env"), **env}

        def get(name: str) -> str | None:
            raw = env.get(name)
            return raw if raw not in (None, "") else None

        values: dict[str, object] = {}
        model_dir = get("STEMBOT_MODEL_DIR")
        values["model_dir"] = Path(model_dir).expanduser() if model_dir else _default_model_dir()

        device = (get("STEMBOT_DEVICE") or "auto").lower()
        if device not in {"auto", "cpu", "cuda", "mps"} and not device.startswith("cuda:"):
            raise SettingsError(f"STEMBOT_DEVICE must be auto, cpu, cuda or mps, not {device!r}")
        values["device"] = device

        compile_mode = (get("STEMBOT_COMPILE") or "auto").lower()
        if compile_mode != "auto":
            compile_mode = "true" if _parse_bool("STEMBOT_COMPILE", compile_mode) else "false"
        values["compile"] = compile_mode

        fmt = (get("STEMBOT_OUTPUT_FORMAT") or "mp3").lower()
        if fmt not in {"mp3", "flac", "wav"}:
            raise SettingsError(f"STEMBOT_OUTPUT_FORMAT must be mp3, flac or wav, not {fmt!r}")
        values["output_format"] = fmt

        values["ensemble"] = get("STEMBOT_ENSEMBLE") or ""
        log_fmt = (get("STEMBOT_LOG_FORMAT") or "text").lower()
        if log_fmt not in {"text", "json"}:
            raise SettingsError(f"STEMBOT_LOG_FORMAT must be text or json, not {log_fmt!r}")
        values["log_format"] = log_fmt
        redis_url = get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        values["redis_url"] = redis_url
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("REDIS_URL must be a redis:// URL")
        data_dir = get("STEMBOT_DATA_DIR")
        values["data_dir"] = Path(data_dir).expanduser() if data_dir else _default_data_dir()
        public_url = (get("STEMBOT_PUBLIC_URL") or "http://localhost:8080").rstrip("/")
        if not public_url.startswith(("http://", "https://")):
            raise SettingsError("STEMBOT_PUBLIC_URL must start with http:// or https://")
        values["public_url"] = public_url
        values["secret_key"] = get("STEMBOT_SECRET_KEY") or ""
        values["allow_private_urls"] = _parse_bool("STEMBOT_ALLOW_PRIVATE_URLS", env.get("STEMBOT_ALLOW_PRIVATE_URLS", ""))

        values["telegram_bot_token"] = get("TELEGRAM_BOT_TOKEN") or ""
        values["telegram_api_base_url"] = (get("TELEGRAM_API_BASE_URL") or "https://api.telegram.org").rstrip("/")
        values["telegram_admin_ids"] = _parse_ids("TELEGRAM_ADMIN_IDS", get("TELEGRAM_ADMIN_IDS") or "")
        values["discord_bot_token"] = get("DISCORD_BOT_TOKEN") or ""
        values["discord_owner_ids"] = _parse_ids("DISCORD_OWNER_IDS", get("DISCORD_OWNER_IDS") or "")
        for name, env_name in (("discord_guild_id", "DISCORD_GUILD_ID"), ("discord_home_guild_id", "DISCORD_HOME_GUILD_ID")):
            ids = _parse_ids(env_name, get(env_name) or "")
            values[name] = ids[0] if ids else None
        values["discord_api_base_url"] = (get("DISCORD_API_BASE_URL") or "https://discord.com/api/v10").rstrip("/")
        values["discord_gateway_url"] = get("DISCORD_GATEWAY_URL") or ""

        numeric = {
            "batch_size": ("STEMBOT_BATCH_SIZE", int, 0),
            "loudness_target_lufs": ("STEMBOT_LOUDNESS_TARGET_LUFS", float, None),
            "true_peak_ceiling_dbtp": ("STEMBOT_TRUE_PEAK_DBTP", float, None),
            "max_gain_db": ("STEMBOT_MAX_GAIN_DB", float, 0),
            "silence_lufs": ("STEMBOT_SILENCE_LUFS", float, None),
            "max_duration_seconds": ("STEMBOT_MAX_DURATION_SECONDS", float, 1),
            "max_input_bytes": ("STEMBOT_MAX_INPUT_BYTES", int, 1),
            "free_songs_per_day": ("STEMBOT_FREE_SONGS_PER_DAY", int, 0),
            "pro_songs_per_day": ("STEMBOT_PRO_SONGS_PER_DAY", int, 0),
            "file_ttl_hours": ("STEMBOT_FILE_TTL_HOURS", float, 0.01),
            "jobs_per_worker": ("STEMBOT_JOBS_PER_WORKER", int, 1),
            "max_attempts": ("STEMBOT_MAX_ATTEMPTS", int, 1),
            "job_timeout_base_s": ("STEMBOT_JOB_TIMEOUT_BASE_S", float, 1),
            "job_timeout_factor": ("STEMBOT_JOB_TIMEOUT_FACTOR", float, 0),
            "heartbeat_s": ("STEMBOT_HEARTBEAT_S", float, 0.1),
            "max_queue": ("STEMBOT_MAX_QUEUE", int, 1),
            "max_waiting_free": ("STEMBOT_MAX_WAITING_FREE", int, 1),
            "max_waiting_pro": ("STEMBOT_MAX_WAITING_PRO", int, 1),
            "max_duration_free_seconds": ("STEMBOT_MAX_DURATION_FREE_SECONDS", float, 1),
            "commands_per_minute": ("STEMBOT_COMMANDS_PER_MINUTE", int, 1),
            "drain_seconds": ("STEMBOT_DRAIN_SECONDS", float, 0),
        }
        for field_name, (env_name, kind, minimum) in numeric.items():
            raw = get(env_name)
            if raw is not None:
                values[field_name] = _parse_number(env_name, raw, kind, minimum)
        if values.get("true_peak_ceiling_dbtp", -1.0) > 0:  # type: ignore[operator]
            raise SettingsError("STEMBOT_TRUE_PEAK_DBTP must be at most 0 dBTP")
        return cls(**values)  # type: ignore[arg-type]

    def require(self, *names: str) -> None:
        """Stop with a message naming the first required setting (by its variable) that is missing or weak."""
        checks = {
            "secret_key": ("STEMBOT_SECRET_KEY", len(self.secret_key) >= 16, "must be set to a random string of 16+ characters"),
            "public_url": ("STEMBOT_PUBLIC_URL", bool(self.public_url), "must be set to the public base URL of `stembot web`"),
            "telegram_bot_token": ("TELEGRAM_BOT_TOKEN", ":" in self.telegram_bot_token, "must be set to the bot token from @BotFather"),
            "discord_bot_token": ("DISCORD_BOT_TOKEN", bool(self.discord_bot_token), "must be set to the bot token from the Discord developer portal"),
        }
        for name in names:
            env_name, ok, why = checks[name]
            if not ok:
                raise SettingsError(f"{env_name} {why}")

    def replace(self, **changes: object) -> Settings:
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return Settings(**current)  # type: ignore[arg-type]


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}
