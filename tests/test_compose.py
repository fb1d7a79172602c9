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
    assert "--maxmemory-policy noeviction" in command  # a stream must never be evicted
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
    # nginx starts once both replicas are ready (their healthcheck is /readyz).
    assert all(c["condition"] == "service_healthy" for c in lb["depends_on"].values())


def test_replicas_drain_log_json_and_can_hold_many_readers() -> None:
    for name, svc in compose()["services"].items():
        if not name.startswith("ticker-"):
            continue
        env = svc["environment"]
        assert env["TICKER_LOG_FORMAT"] == "json"
        assert int(env["TICKER_WORKERS"]) >= 1
        # Docker's SIGKILL must come after the drain and the final flush (2 s).
        drain = float(env["TICKER_SHUTDOWN_TIMEOUT"])
        assert int(svc["stop_grace_period"].rstrip("s")) > drain + 2
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])
        assert svc["ulimits"]["nofile"]["soft"] >= 65536
        assert int(svc["sysctls"]["net.core.somaxconn"]) >= 8192
        # No published ports: only the load balancer reaches a replica.
        assert "ports" not in svc


def block(conf: str, head: str) -> str:
    found = re.search(re.escape(head) + r" \{(.*?)\n  ?  ?\}", conf, re.S)
    assert found is not None, head
    return found.group(1)


def test_nginx_routes_websockets_and_sse_to_both_replicas() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    services = compose()["services"]
    replicas = {n for n in services if n.startswith("ticker-")}
    for name in ("ticker", "ticker_readers"):
        servers = re.findall(r"server (\S+?):(\d+)", block(conf, f"upstream {name}"))
        assert {host for host, _ in servers} == replicas
        assert all(port == "8000" for _, port in servers)
    # Long-lived readers: no failure marking (a websocket probe would never end, and a
    # replica that came back would get one reader per fail_timeout: test_nginx.py).
    assert block(conf, "upstream ticker_readers").count("max_fails=0") == len(replicas)
    ws = block(conf, "location /ws/")
    assert "proxy_pass http://ticker_readers;" in ws
    assert "proxy_set_header Upgrade $http_upgrade" in ws
    assert "proxy_set_header Connection $connection_upgrade" in ws
    assert "proxy_http_version 1.1" in ws
    # Longer than the server's ping interval, or nginx would cut idle readers.
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", ws)
    assert read_timeout is not None and int(read_timeout.group(1)) > 20
    sse = block(conf, "location /sse/")
    assert "proxy_pass http://ticker_readers;" in sse and "proxy_buffering off" in sse
    for where in ("location /ws/", "location /sse/", "location /"):
        body = block(conf, where)
        # nginx does not merge proxy_set_header with the server's: each location has all.
        assert "proxy_set_header Host $http_host;" in body  # the origin check needs the port
        assert "proxy_set_header X-Request-ID $req_id;" in body
        assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in body
    assert re.search(r"map \$http_x_request_id \$req_id", conf)
    assert re.search(r"proxy_connect_timeout [12]s;", conf)
    assert "return 404" in block(conf, "location = /metrics")  # scraped per replica
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
