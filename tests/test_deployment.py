"""docker-compose.yml and .env.example agree (no Docker engine here: the files are parsed and checked)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))


def test_compose_services_and_volumes():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "worker", "web"} <= set(services)
    assert set(compose["volumes"]) >= {"files", "models"}
    for name in ("worker", "web"):
        service = services[name]
        assert "/data" in " ".join(service["volumes"]) and "/models" in " ".join(service["volumes"])
        assert service["env_file"] == ".env"
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:")
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert services["worker"]["command"] == ["worker"]


def test_every_setting_is_documented():
    from stembot.settings import Settings

    source = (ROOT / "stembot" / "settings.py").read_text()
    used = set(re.findall(r'"((?:STEMBOT|TELEGRAM|DISCORD)_[A-Z0-9_]*|REDIS_URL)"', source))
    assert used, "no settings found"
    missing = used - env_example_names()
    assert not missing, f"not in .env.example: {sorted(missing)}"
    compose_env = set()
    for service in yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"].values():
        compose_env |= set(service.get("environment") or {})
    assert compose_env <= env_example_names()
    assert Settings.from_env({}).redis_url == "redis://127.0.0.1:6379/0"
