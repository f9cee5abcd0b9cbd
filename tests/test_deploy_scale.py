"""deploy/compose.scale.yaml checked by parsing (no Docker engine here): services, settings names, docs/scale.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML reads the compose file: .venv/bin/pip install pyyaml")

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "deploy" / "compose.scale.yaml"


def _expanded(value: str) -> str:
    """Compose's ${VAR...} interpolations replaced by a placeholder, as a set variable would be."""
    return re.sub(r"\$\{[^}]*\}", "x", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_the_services_the_issue_asks_for(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "etcd", "minio", "milvus", "vllm", "api", "worker", "proxy"} <= set(services)
    assert services["api"]["deploy"]["replicas"] == 2 and services["worker"]["deploy"]["replicas"] == 2
    assert services["milvus"]["command"] == ["milvus", "run", "standalone"]
    assert services["milvus"]["environment"]["ETCD_ENDPOINTS"] == "etcd:2379"
    assert services["milvus"]["environment"]["MINIO_ADDRESS"] == "minio:9000"
    assert services["api"]["command"][:2] == ["ragqa", "serve"] and services["worker"]["command"] == ["ragqa", "worker"]
    # Only the proxy is published: the API replicas are reached through it.
    assert [name for name, s in services.items() if s.get("ports")] == ["proxy"]
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            if source.startswith("./"):
                assert (COMPOSE.parent / source).exists(), f"{name} mounts missing {source}"
            elif not source.startswith("$"):
                assert source in compose["volumes"], f"{name} mounts undeclared volume {source}"


def test_every_ragqa_variable_is_a_setting_and_points_at_a_service(compose: dict[str, Any]) -> None:
    from app.settings import Settings

    fields = {f"RAGQA_{name.upper()}" for name in Settings.model_fields}
    services = compose["services"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        unknown = sorted(k for k in env if k.startswith("RAGQA_") and k not in fields)
        assert not unknown, f"{name}: not settings: {unknown}"
        assert env["RAGQA_BACKEND"] == "distributed"
        assert env["RAGQA_EMBEDDED_WORKER"] == "false"
        for key, service, port in (("RAGQA_POSTGRES_URL", "postgres", 5432), ("RAGQA_MILVUS_URI", "milvus", 19530),
                                   ("RAGQA_LLM_BASE_URL", "vllm", 8000)):
            url = urlsplit(_expanded(env[key]))
            assert (url.hostname, url.port) == (service, port), (key, env[key])
    pg = services["postgres"]["environment"]
    url = urlsplit(_expanded(services["api"]["environment"]["RAGQA_POSTGRES_URL"]))
    assert url.username == pg["POSTGRES_USER"] and url.path == "/" + pg["POSTGRES_DB"]


def test_the_proxy_config_balances_over_the_api_service(compose: dict[str, Any]) -> None:
    conf = (COMPOSE.parent / "nginx.scale.conf").read_text(encoding="utf-8")
    assert re.search(r"server\s+api:8000\b", conf)
    assert "proxy_buffering off" in conf  # streamed answers
    listen = re.search(r"listen\s+(\d+)", conf)
    assert listen and compose["services"]["proxy"]["ports"][0].endswith(f":{listen.group(1)}")
    # Braces balance: a truncated edit would otherwise only show when nginx starts.
    assert conf.count("{") == conf.count("}")


def test_docs_scale_names_every_service_and_image(compose: dict[str, Any]) -> None:
    doc = (REPO / "docs" / "scale.md").read_text(encoding="utf-8")
    assert "deploy/compose.scale.yaml" in doc and "has not been run" in doc
    for name, svc in compose["services"].items():
        assert f"`{name}`" in doc, f"docs/scale.md does not describe service {name}"
        image = svc.get("image", "")
        if "$" not in image and not image.startswith("ragqa"):
            assert f"`{image}`" in doc, f"docs/scale.md names another image than {image}"
