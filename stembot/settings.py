"""The one settings object: read once from the environment (and `.env`), passed down explicitly."""

from __future__ import annotations

import ipaddress
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs


class SettingsError(ValueError):
    """Settings are missing or invalid: one line per problem, each naming its setting."""

    partial: Settings | None = None  # from_env's settings with defaults for the bad ones (for `stembot check`)

    @classmethod
    def of(cls, problems: list[str]) -> SettingsError:
        return cls("\n".join(problems))

    @property
    def problems(self) -> list[str]:
        return str(self).splitlines()


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("stembot"))


def _default_health_dir() -> Path:
    return Path(tempfile.gettempdir()) / "stembot-health"


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


def _parse_modes(name: str, raw: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    from separation_worker.contract.modes import DEFAULT_MODE, MODE_NAMES

    if raw is None:
        return default
    modes = tuple(dict.fromkeys(part.strip().lower() for part in raw.split(",") if part.strip()))
    unknown = [m for m in modes if m not in MODE_NAMES]
    if unknown:
        raise SettingsError(f"{name}: unknown mode(s) {', '.join(unknown)}; the modes are {', '.join(MODE_NAMES)}")
    if DEFAULT_MODE not in modes:
        raise SettingsError(f"{name} must include {DEFAULT_MODE} (every song can be separated that way)")
    return modes


def _parse_mode_costs(raw: str) -> tuple[tuple[str, int], ...]:
    """"stems=2, karaoke=1" -> (("stems", 2), ("karaoke", 1))."""
    from separation_worker.contract.modes import MODE_NAMES

    costs = []
    for part in (p.strip() for p in raw.split(",") if p.strip()):
        mode, _, value = part.partition("=")
        mode = mode.strip().lower()
        if mode not in MODE_NAMES or not value.strip().isdigit() or int(value) < 1:
            raise SettingsError(f"STEMBOT_MODE_COSTS must read like stems=2,karaoke=1 (modes: {', '.join(MODE_NAMES)}; "
                                f"costs of at least 1 song), not {part!r}")
        costs.append((mode, int(value)))
    return tuple(costs)


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
    # Empty: the SQLite file and the file store in data_dir. Set both to spread the service over machines:
    # postgresql://… and s3://bucket/prefix (any S3-compatible store, at s3_endpoint_url when not AWS).
    database_url: str = field(default="", repr=False)  # may hold a password; never logged
    storage_url: str = ""
    s3_endpoint_url: str = ""
    public_url: str = "http://localhost:8080"  # base of download links, e.g. https://stems.example.com
    secret_key: str = field(default="", repr=False)  # signs download links; never logged
    free_songs_per_day: int = 1
    pro_songs_per_day: int = 20
    file_ttl_hours: float = 24.0
    allow_private_urls: bool = False  # tests fetch from 127.0.0.1; production refuses private addresses
    # Jobs one worker process runs at once: they take turns on its device, so one separates while the others
    # fetch, decode and run the CPU stages. Memory grows with it (each job holds its own song).
    jobs_per_worker: int = 2
    max_attempts: int = 3  # a job that keeps failing (worker lost, crashes) ends as failed, refunded
    job_timeout_base_s: float = 300.0
    job_timeout_factor: float = 3.0  # plus this many seconds per second of audio
    heartbeat_s: float = 10.0  # a dead worker's job is picked up again within 3 heartbeats
    max_queue: int = 200  # waiting jobs before new submissions are refused
    max_waiting_free: int = 1  # a user's queued or running jobs at once
    max_waiting_pro: int = 3
    max_duration_free_seconds: float = 10 * 60  # Pro gets max_duration_seconds
    commands_per_minute: int = 20  # per user, every command and message
    # Separation modes (separation_worker/models/modes.py) each tier may pick, and what a song in a mode costs in
    # quota songs (unlisted: 1).
    free_modes: tuple[str, ...] = ("vocals",)
    pro_modes: tuple[str, ...] = ("vocals", "karaoke", "stems", "clean-vocals")
    mode_costs: tuple[tuple[str, int], ...] = ()
    raw_downloads: bool = True  # jobs also keep each stem unnormalized (24-bit FLAC) for the results page
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
    # Operations
    local_test: bool = False  # lets the front ends start with a localhost STEMBOT_PUBLIC_URL
    model_mirror: str = ""  # base URL serving every model file by its zoo filename, instead of the zoo's hosts
    metrics_token: str = field(default="", repr=False)  # bearer token for /metrics on the results port
    metrics_port: int | None = None  # serve /metrics (no token) on this port as well, e.g. inside a private network
    gpus: tuple[str, ...] = ()  # `stembot worker` runs one worker process per listed CUDA device
    health_dir: Path = field(default_factory=_default_health_dir)  # heartbeat files read by `stembot health`

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, dotenv: bool = True) -> Settings:
        env = dict(os.environ if environ is None else environ)
        if dotenv and environ is None:
            env = {**_read_dotenv(Path.cwd() / ".env"), **env}

        def get(name: str) -> str | None:
            raw = env.get(name)
            return raw if raw not in (None, "") else None

        values: dict[str, object] = {}
        problems: list[str] = []  # every bad setting is named at once, not only the first

        def parse(field_name: str, read) -> None:
            try:
                values[field_name] = read()
            except SettingsError as exc:
                problems.append(str(exc))

        def choice(env_name: str, default: str, allowed: set[str], why: str, prefix: str | None = None) -> str:
            value = (get(env_name) or default).lower()
            if value not in allowed and not (prefix and value.startswith(prefix)):
                raise SettingsError(f"{env_name} must be {why}, not {value!r}")
            return value

        def url(env_name: str, default: str, schemes: tuple[str, ...], why: str) -> str:
            value = (get(env_name) or default).rstrip("/")
            if value and not value.startswith(schemes):
                raise SettingsError(f"{env_name} must {why}")
            return value

        def path(env_name: str, default) -> Path:
            raw = get(env_name)
            return Path(raw).expanduser() if raw else default()

        def compile_mode() -> str:
            mode = (get("STEMBOT_COMPILE") or "auto").lower()
            if mode == "auto":
                return mode
            return "true" if _parse_bool("STEMBOT_COMPILE", mode) else "false"

        def first_id(env_name: str) -> int | None:
            ids = _parse_ids(env_name, get(env_name) or "")
            return ids[0] if ids else None

        parse("model_dir", lambda: path("STEMBOT_MODEL_DIR", _default_model_dir))
        parse("device", lambda: choice("STEMBOT_DEVICE", "auto", {"auto", "cpu", "cuda", "mps"}, "auto, cpu, cuda or mps", "cuda:"))
        parse("compile", compile_mode)
        parse("output_format", lambda: choice("STEMBOT_OUTPUT_FORMAT", "mp3", {"mp3", "flac", "wav"}, "mp3, flac or wav"))
        values["ensemble"] = get("STEMBOT_ENSEMBLE") or ""
        parse("log_format", lambda: choice("STEMBOT_LOG_FORMAT", "text", {"text", "json"}, "text or json"))
        parse("redis_url", lambda: url("REDIS_URL", "redis://127.0.0.1:6379/0", ("redis://", "rediss://", "unix://"),
                                        "be a redis:// URL"))
        parse("data_dir", lambda: path("STEMBOT_DATA_DIR", _default_data_dir))
        parse("database_url", lambda: url("STEMBOT_DATABASE_URL", "", ("sqlite:///", "postgresql://", "postgres://",
                                                                     "postgresql+asyncpg://"),
                                           "be a sqlite:///<file> or postgresql://… URL"))
        parse("storage_url", lambda: url("STEMBOT_STORAGE_URL", "", ("s3://", "file://", "/"),
                                          "be s3://bucket/prefix, file:///<folder> or an absolute folder"))
        parse("s3_endpoint_url", lambda: url("STEMBOT_S3_ENDPOINT_URL", "", ("http://", "https://"),
                                              "be the http(s):// URL of the S3-compatible endpoint"))
        parse("public_url", lambda: url("STEMBOT_PUBLIC_URL", "http://localhost:8080", ("http://", "https://"),
                                         "start with http:// or https://"))
        values["secret_key"] = get("STEMBOT_SECRET_KEY") or ""
        parse("allow_private_urls", lambda: _parse_bool("STEMBOT_ALLOW_PRIVATE_URLS", env.get("STEMBOT_ALLOW_PRIVATE_URLS", "")))

        values["telegram_bot_token"] = get("TELEGRAM_BOT_TOKEN") or ""
        values["telegram_api_base_url"] = (get("TELEGRAM_API_BASE_URL") or "https://api.telegram.org").rstrip("/")
        parse("telegram_admin_ids", lambda: _parse_ids("TELEGRAM_ADMIN_IDS", get("TELEGRAM_ADMIN_IDS") or ""))
        values["discord_bot_token"] = get("DISCORD_BOT_TOKEN") or ""
        parse("discord_owner_ids", lambda: _parse_ids("DISCORD_OWNER_IDS", get("DISCORD_OWNER_IDS") or ""))
        parse("discord_guild_id", lambda: first_id("DISCORD_GUILD_ID"))
        parse("discord_home_guild_id", lambda: first_id("DISCORD_HOME_GUILD_ID"))
        values["discord_api_base_url"] = (get("DISCORD_API_BASE_URL") or "https://discord.com/api/v10").rstrip("/")
        values["discord_gateway_url"] = get("DISCORD_GATEWAY_URL") or ""
        parse("local_test", lambda: _parse_bool("STEMBOT_LOCAL_TEST", env.get("STEMBOT_LOCAL_TEST", "")))
        parse("model_mirror", lambda: url("STEMBOT_MODEL_MIRROR", "", ("http://", "https://", "file://"),
                                           "be an http://, https:// or file:// URL"))
        values["metrics_token"] = get("STEMBOT_METRICS_TOKEN") or ""
        parse("free_modes", lambda: _parse_modes("STEMBOT_FREE_MODES", get("STEMBOT_FREE_MODES"), cls.free_modes))
        parse("pro_modes", lambda: _parse_modes("STEMBOT_PRO_MODES", get("STEMBOT_PRO_MODES"), cls.pro_modes))
        parse("mode_costs", lambda: _parse_mode_costs(get("STEMBOT_MODE_COSTS") or ""))
        parse("raw_downloads", lambda: _parse_bool("STEMBOT_RAW_DOWNLOADS", get("STEMBOT_RAW_DOWNLOADS") or "true"))
        values["gpus"] = tuple(part for part in (get("STEMBOT_GPUS") or "").replace(" ", "").split(",") if part)
        parse("health_dir", lambda: path("STEMBOT_HEALTH_DIR", _default_health_dir))

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
            "metrics_port": ("STEMBOT_METRICS_PORT", int, 1),
        }
        for field_name, (env_name, kind, minimum) in numeric.items():
            raw = get(env_name)
            if raw is not None:
                parse(field_name, lambda env_name=env_name, raw=raw, kind=kind, minimum=minimum:
                      _parse_number(env_name, raw, kind, minimum))
        if values.get("true_peak_ceiling_dbtp", -1.0) > 0:  # type: ignore[operator]
            problems.append("STEMBOT_TRUE_PEAK_DBTP must be at most 0 dBTP")
        if values.get("gpus") and values.get("device") not in ("auto", "cuda"):
            problems.append(f"STEMBOT_GPUS needs STEMBOT_DEVICE auto or cuda, not {values.get('device')!r}")
        if problems:
            error = SettingsError.of(problems)
            error.partial = cls(**values)  # type: ignore[arg-type]
            raise error
        return cls(**values)  # type: ignore[arg-type]

    def modes_for(self, pro: bool) -> tuple[str, ...]:
        """The modes a user of that tier may pick, in the order the service lists them."""
        return self.pro_modes if pro else self.free_modes

    def mode_cost(self, mode: str) -> int:
        """Quota songs one song in `mode` costs."""
        return dict(self.mode_costs).get(mode, 1)

    def require(self, *names: str) -> None:
        """Stop with one line for each required setting (by its variable) that is missing or weak."""
        problems = self.missing(*names)
        if problems:
            raise SettingsError.of(problems)

    def missing(self, *names: str) -> list[str]:
        """What `require` would stop for: one line per setting."""
        checks = {
            "secret_key": ("STEMBOT_SECRET_KEY", len(self.secret_key) >= 16, "must be set to a random string of 16+ characters"),
            "public_url": ("STEMBOT_PUBLIC_URL", bool(self.public_url), "must be set to the public base URL of `stembot web`"),
            # The bots send these links to users: on localhost they would point at each user's own computer.
            "user_facing_public_url": (
                "STEMBOT_PUBLIC_URL", self.local_test or not is_loopback_url(self.public_url),
                f"is {self.public_url}, which users cannot reach: set it to the address of `stembot web` users reach "
                "(e.g. https://stems.example.com), or STEMBOT_LOCAL_TEST=true for a test on this machine",
            ),
            "telegram_bot_token": ("TELEGRAM_BOT_TOKEN", ":" in self.telegram_bot_token, "must be set to the bot token from @BotFather"),
            "discord_bot_token": ("DISCORD_BOT_TOKEN", bool(self.discord_bot_token), "must be set to the bot token from the Discord developer portal"),
        }
        problems: list[str] = []
        for name in names:
            env_name, ok, why = checks[name]
            if not ok:
                problems.append(f"{env_name} {why}")
        return problems

    def replace(self, **changes: object) -> Settings:
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return Settings(**current)  # type: ignore[arg-type]


def is_loopback_url(url: str) -> bool:
    """Whether a URL's host is this machine (localhost, 127.0.0.0/8, ::1, 0.0.0.0)."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _read_dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}
