"""docker-compose.yml, the Dockerfile and nginx.conf are wired right (no Docker engine here)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_has_redis_with_aof_on_a_volume() -> None:
    services = compose()["services"]
    redis = services["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-data" in compose()["volumes"]


def test_compose_runs_two_replicas_on_redis_behind_the_lb() -> None:
    services = compose()["services"]
    replicas = [s for name, s in services.items() if name.startswith("ticker-")]
    assert len(replicas) == 2
    for svc in replicas:
        assert svc["build"] == "."
        env = svc["environment"]
        assert env["TICKER_REDIS_URL"] == "redis://redis:6379/0"
        assert env["TICKER_HOST"] == "0.0.0.0"
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    lb = services["lb"]
    assert "8080:8080" in lb["ports"]
    assert any(v.startswith("./deploy/nginx.conf:") for v in lb["volumes"])
    assert set(lb["depends_on"]) == {"ticker-1", "ticker-2"}


def test_nginx_routes_websockets_and_sse_to_both_replicas() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    upstream = re.search(r"upstream ticker \{(.*?)\}", conf, re.S)
    assert upstream is not None
    servers = re.findall(r"server (\S+?):(\d+)", upstream.group(1))
    services = compose()["services"]
    assert {host for host, _ in servers} == {n for n in services if n.startswith("ticker-")}
    assert all(port == "8000" for _, port in servers)
    ws = re.search(r"location /ws/ \{(.*?)\}", conf, re.S)
    assert ws is not None
    assert "proxy_set_header Upgrade $http_upgrade" in ws.group(1)
    assert "proxy_set_header Connection $connection_upgrade" in ws.group(1)
    assert "proxy_http_version 1.1" in ws.group(1)
    sse = re.search(r"location /sse/ \{(.*?)\}", conf, re.S)
    assert sse is not None and "proxy_buffering off" in sse.group(1)
    listen = re.search(r"listen (\d+);", conf)
    assert listen is not None and f"{listen.group(1)}:{listen.group(1)}" in \
        services["lb"]["ports"]


def test_nginx_config_is_valid_syntax(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).exists(), "nginx is installed by scripts/setup.sh"
    # Service names only resolve inside compose: point them at loopback for the check.
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    conf = re.sub(r"ticker-\d:8000", "127.0.0.1:8000", conf)
    conf = conf.replace("events {", f"pid {tmp_path}/nginx.pid;\nevents {{")
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    proc = subprocess.run([nginx, "-t", "-c", str(path), "-e", str(tmp_path / "err.log")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_dockerfile_is_slim_and_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] != "root"
    assert 'CMD ["ticker", "serve"]' in text
    assert "TICKER_HOST=0.0.0.0" in text
    for path in re.findall(r"^COPY (?!--)(\S+)", text, re.M):
        assert (ROOT / path).exists(), path
