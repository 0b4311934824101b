"""The configuration check: what each role needs, one line per problem. `stembot check` prints it; every
long-running command runs it for its own role before it starts, so a bad setting stops it in seconds."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from .settings import Settings, SettingsError
from .startup import require_redis

ROLES = ("worker", "web", "telegram", "discord", "separate")
_SERVICE_ROLES = {"worker", "web", "telegram", "discord"}  # share Redis, the database and the file store
_MODEL_ROLES = {"worker", "separate"}
_REQUIRED = {
    "web": ("secret_key", "public_url"),
    "telegram": ("telegram_bot_token", "secret_key", "user_facing_public_url"),
    "discord": ("discord_bot_token", "secret_key", "user_facing_public_url"),
}


@dataclass
class Report:
    roles: tuple[str, ...]
    problems: list[str] = field(default_factory=list)  # each stops the roles from starting
    notes: list[str] = field(default_factory=list)  # worth knowing, not fatal (e.g. models still to download)

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_roles(text: str) -> tuple[str, ...]:
    """"worker,web," -> ("worker", "web"): empty items are ignored (compose passes an empty profile list)."""
    roles = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise SettingsError(f"unknown role {unknown[0]!r}: choose from {', '.join(ROLES)}")
    return tuple(dict.fromkeys(roles))


def default_roles(settings: Settings) -> tuple[str, ...]:
    """The service as most operators run it, plus each bot whose token is set."""
    bots = [name for name, token in (("telegram", settings.telegram_bot_token), ("discord", settings.discord_bot_token))
            if token]
    return ("worker", "web", *bots)


def check(settings: Settings, roles: Iterable[str], reach_redis: bool = True) -> Report:
    report = Report(tuple(roles))
    wanted = set(report.roles)
    names = dict.fromkeys(name for role in report.roles for name in _REQUIRED.get(role, ()))
    report.problems += settings.missing(*names)
    if wanted & _MODEL_ROLES:
        _check_tools(report)
        _check_device(settings, report)
        _check_models(settings, report)
    if wanted & _SERVICE_ROLES:
        _check_data_dir(settings, report)
        if reach_redis:
            try:
                require_redis(settings.redis_url)
            except SettingsError as exc:
                report.problems += exc.problems
    return report


def require(settings: Settings, role: str) -> None:
    """Stop a command before it starts, naming every problem of its role's configuration."""
    report = check(settings, (role,))
    if not report.ok:
        raise SettingsError.of(report.problems)


def _check_tools(report: Report) -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            report.problems.append(f"{tool} is not on PATH: install ffmpeg (e.g. `apt-get install ffmpeg`)")


def _check_device(settings: Settings, report: Report) -> None:
    if settings.device == "cpu" or settings.device == "mps":
        return
    import torch  # only for the roles that run models

    available = torch.cuda.is_available()
    count = torch.cuda.device_count() if available else 0
    if settings.device.startswith("cuda") and not available:
        report.problems.append(f"STEMBOT_DEVICE is {settings.device} but no CUDA GPU is visible: check the driver "
                               "and the container's GPU reservation, or set STEMBOT_DEVICE=auto")
    if settings.gpus and not available:
        report.problems.append(f"STEMBOT_GPUS is {','.join(settings.gpus)} but no CUDA GPU is visible: "
                               "check the driver and the container's GPU reservation")
    bad = [gpu for gpu in settings.gpus if not (gpu.isdigit() and int(gpu) < count)] if available else []
    if bad:
        report.problems.append(f"STEMBOT_GPUS names {', '.join(bad)}, but this machine's GPUs are 0-{count - 1}")


def _check_models(settings: Settings, report: Report) -> None:
    from separation_worker.models import inventory
    from separation_worker.models.zoo import parse_ensemble

    try:
        ensemble = parse_ensemble(settings.ensemble)
    except ValueError as exc:
        report.problems.append(str(exc))
        return
    states = inventory.survey(ensemble, settings.model_dir)
    report.problems += [state.problem_line() for state in states if state.damaged]
    missing = [state for state in states if state.missing]
    if missing:
        report.notes.append(
            f"{len(missing)} model file(s) not yet in {settings.model_dir} ({', '.join(s.filename for s in missing)}): "
            "`stembot models download` fetches them now; otherwise they are downloaded on first use")


def _check_data_dir(settings: Settings, report: Report) -> None:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=settings.data_dir):
            pass
    except OSError as exc:
        report.problems.append(f"STEMBOT_DATA_DIR {settings.data_dir} is not writable ({exc.strerror or exc}): "
                               "create it, or set STEMBOT_DATA_DIR to a writable folder")
