"""A ticker node on a port of the test's choosing, shut down the way `ticker serve` does it.

`running_server` (conftest) always takes a free port; a restart test needs the SAME port
again, and a shutdown test needs `TickerServer` (listeners closed, readers drained with 1012)
rather than plain uvicorn. Extra keyword arguments go to uvicorn's Config (e.g. `ws="none"`:
a node whose websocket upgrades fail, like behind a proxy that drops `Upgrade`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from tests.conftest import Server, start_server
from ticker.ops.uvicorn_adapter import TickerServer
from ticker.process.settings import Settings


async def start_node(settings: Settings, port: int = 0, **extra: Any) -> Server:
    """Start a node on 127.0.0.1:`port` (0: a free one) and wait until its reader is ready.

    Unlike `running_server`, it is a `TickerServer`, so stopping it drains like production.
    """
    def server(config: uvicorn.Config) -> TickerServer:
        return TickerServer(config, client_timeout=settings.client_timeout)

    return await start_server(settings, port, server_class=server, **extra)


@contextlib.asynccontextmanager
async def node(settings: Settings, port: int = 0, **extra: Any) -> AsyncIterator[Server]:
    handle = await start_node(settings, port, **extra)
    try:
        yield handle
    finally:
        if not handle.task.done():
            await handle.stop()
