"""Fixtures with real components: a redis-server we start, uvicorn on a free port.

Every test gets its own key prefix, so tests share one redis-server without seeing each
other's streams. Waits are bounded by `TIMEOUT` (scaled by TICKER_TEST_TIMEOUT_SCALE).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from redis.asyncio import Redis

from ticker.node.runtime import Runtime
from ticker.ops.server import uvicorn_config
from ticker.process.settings import Settings
from ticker.redis.connection import connect as redis_client
from ticker.redis.embedded import find_redis_server
from ticker.redis.keys import Keys
from ticker.redis.tokens import Tokens

TIMEOUT = 10.0 * float(os.environ.get("TICKER_TEST_TIMEOUT_SCALE", "1"))
ARTIFACTS = Path(os.environ.get("TICKER_TEST_ARTIFACTS", "test-artifacts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A real redis-server process on 127.0.0.1."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    dir: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def start_redis(directory: Path, port: int | None = None, *extra: str) -> RedisServer:
    port = port or free_port()
    process = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(directory), "--daemonize", "no", "--loglevel", "warning", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return RedisServer(f"redis://127.0.0.1:{port}/0", port, process, directory)
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    directory = Path(tempfile.mkdtemp(prefix="ticker-test-redis-"))
    server = start_redis(directory)
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


@dataclass
class Server:
    """A running ticker (real uvicorn, our websocket protocol) and handles to its insides."""

    settings: Settings
    uvicorn: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, channel: str = "en", cursor: str | None = None) -> str:
        url = f"ws://127.0.0.1:{self.port}/ws/{channel}"
        return url + (f"?cursor={cursor}" if cursor else "")

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.uvicorn.lifespan.state["ticker"]
        return runtime

    async def stop(self) -> None:
        self.uvicorn.should_exit = True
        await asyncio.wait_for(self.task, TIMEOUT * 2)


async def start_server(settings: Settings, port: int = 0, *, wait_ready: bool = True,
                       server_class: Callable[[uvicorn.Config], uvicorn.Server] = uvicorn.Server,
                       **extra: Any) -> Server:
    """Start uvicorn with our app on 127.0.0.1:`port` (0: a free one), in this event loop."""
    options: dict[str, Any] = {"timeout_graceful_shutdown": 2}
    options.update(extra)
    server = server_class(uvicorn_config(settings.with_(port=port), **options))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + TIMEOUT
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped during startup")
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    handle = Server(settings, server, task, bound)
    if wait_ready:
        while not handle.runtime.reader.ready:
            if time.monotonic() > deadline:
                raise TimeoutError("reader not ready")
            await asyncio.sleep(0.01)
    return handle


@contextlib.asynccontextmanager
async def running_server(settings: Settings, wait_ready: bool = True) -> AsyncIterator[Server]:
    handle = await start_server(settings, wait_ready=wait_ready)
    task = handle.task
    try:
        yield handle
    finally:
        if not task.done():
            await handle.stop()


def make_settings(redis_url: str, prefix: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url, "key_prefix": prefix, "channels": "en,ar",
        "read_block_ms": 200, "log_level": "warning",
        # Tests make many requests from one address; the limit has tests of its own.
        "rate_limit": 0.0,
    }
    values.update(changes)
    return Settings.build(values)


@pytest.fixture
async def server(redis_url: str, prefix: str) -> AsyncIterator[Server]:
    async with running_server(make_settings(redis_url, prefix)) as handle:
        yield handle


@pytest.fixture
async def token(redis: Redis, prefix: str) -> str:
    return await Tokens(redis, Keys(prefix)).create("tester")


async def recv_json(ws: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The next frame as JSON, within `timeout`."""
    raw = await asyncio.wait_for(ws.recv(), timeout)
    value: dict[str, Any] = json.loads(raw)
    return value


async def recv_until(ws: Any, predicate: Any, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """Frames up to and including the first that satisfies `predicate`."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        frame = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        frames.append(frame)
        if predicate(frame):
            return frames
