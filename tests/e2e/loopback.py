"""A stand-in service on loopback: an ASGI app served by uvicorn on 127.0.0.1, in a task of
the running event loop (no signal handlers, no lifespan), for the services the node calls
out to (the webhook receiver, the push service)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from tests.conftest import TIMEOUT


@dataclass
class Loopback:
    """A started server; `stop` asks it to exit and waits until it has."""

    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, TIMEOUT)


async def serve(app: ASGIApp, port: int, name: str) -> Loopback:
    """Serve `app` on 127.0.0.1:`port`, once it listens (within TIMEOUT)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + TIMEOUT
    while not server.started:
        assert time.monotonic() < deadline, f"{name} did not start"
        await asyncio.sleep(0.01)
    return Loopback(server, task)
