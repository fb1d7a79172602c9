"""A ticker node on a port of the test's choosing, shut down the way `ticker serve` does it.

`running_server` (conftest) always takes a free port; a restart test needs the SAME port
again, and a shutdown test needs `TickerServer` (listeners closed, readers drained with 1012)
rather than plain uvicorn. Extra keyword arguments go to uvicorn's Config (e.g. `ws="none"`:
a node whose websocket upgrades fail, like behind a proxy that drops `Upgrade`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from tests.conftest import TIMEOUT, Server
from ticker.server import TickerServer, uvicorn_config
from ticker.settings import Settings


async def start_node(settings: Settings, port: int = 0, **extra: Any) -> Server:
    """Start a node on 127.0.0.1:`port` (0: a free one) and wait until its reader is ready."""
    options: dict[str, Any] = {"timeout_graceful_shutdown": 2}
    options.update(extra)
    server = TickerServer(uvicorn_config(settings.with_(port=port), **options))
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
    while not handle.runtime.reader.ready:
        if time.monotonic() > deadline:
            raise TimeoutError("reader not ready")
        await asyncio.sleep(0.01)
    return handle


@contextlib.asynccontextmanager
async def node(settings: Settings, port: int = 0, **extra: Any) -> AsyncIterator[Server]:
    handle = await start_node(settings, port, **extra)
    try:
        yield handle
    finally:
        if not handle.task.done():
            await handle.stop()
