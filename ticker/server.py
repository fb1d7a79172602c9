"""`ticker serve`: uvicorn with the Starlette app and our websocket protocol on one port.

`--workers N` (N > 1) runs N such servers on the port under a supervisor (ticker.workers).

Shutdown (SIGTERM or Ctrl-C), in this order: the listeners close (no new connections); the
runtime drains: /readyz turns 503 and every reader, websocket or SSE, is closed with 1012
("service restart") so it reconnects elsewhere with its cursor; uvicorn waits up to
`TICKER_SHUTDOWN_TIMEOUT` for connections and requests to finish; the lifespan then stops
the background tasks and flushes reach counts and dead letters (at most 2 s more).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from ticker import ticks
from ticker.app import create_app
from ticker.embedded import EmbeddedRedis
from ticker.metrics import Worker
from ticker.settings import Settings
from ticker.wsserver import TickerHttp, TickerWebSocket

log = logging.getLogger("ticker.server")


@contextlib.contextmanager
def redis_for_serving(settings: Settings) -> Iterator[Settings]:
    """Settings with a Redis URL: the configured one, or an embedded server we own."""
    if settings.redis_url:
        yield settings
        return
    embedded = EmbeddedRedis(settings.data_dir, settings.embedded_redis_port)
    url = embedded.start()
    print(f"ticker: embedded Redis at {url} (AOF in {embedded.data_dir})", file=sys.stderr,
          flush=True)
    print(f"ticker: other services can publish to {url}", file=sys.stderr, flush=True)
    try:
        yield settings.with_(redis_url=url)
    finally:
        embedded.stop()
        print("ticker: embedded Redis stopped", file=sys.stderr, flush=True)


class TickerServer(uvicorn.Server):
    """uvicorn's server, with the drain step (module docstring) between closing the listeners
    and uvicorn's own connection shutdown; when it owns the process, the heap is frozen once
    started."""

    owns_process = False
    _should_exit = False
    _exit_wake: asyncio.Event | None = None
    _exit_loop: asyncio.AbstractEventLoop | None = None

    # uvicorn's main loop wakes ten times a second to look at `should_exit` (a signal
    # handler or a test sets it); ours sleeps until the next aligned second (the Date header
    # is refreshed once a second) or until `should_exit` is set (docs/performance.md).
    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        if value and self._exit_wake is not None and self._exit_loop is not None:
            # From a signal handler or another thread: wake the loop through its self-pipe.
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._exit_loop.call_soon_threadsafe(self._exit_wake.set)

    async def main_loop(self) -> None:
        self._exit_loop = asyncio.get_running_loop()
        self._exit_wake = asyncio.Event()
        # on_tick(0) refreshes the Date header and answers whether to stop.
        while not await self.on_tick(0):
            await ticks.tick(1.0, self._exit_wake)

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """`ticker serve` and each worker: this server is the process (tests embed `serve()`
        in their own event loop instead)."""
        self.owns_process = True
        super().run(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.owns_process:
            # What is alive now (modules, the app, the folded streams) lives as long as the
            # process: the cyclic GC need not rescan it in every full collection while
            # readers connect (docs/performance.md).
            gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in getattr(self, "servers", ()):
            server.close()  # stop accepting first: a drained reader must reconnect elsewhere
        lifespan = getattr(self, "lifespan", None)
        runtime = lifespan.state.get("ticker") if lifespan is not None else None
        if runtime is not None:
            runtime.drain()
        await super().shutdown(sockets)


def uvicorn_config(settings: Settings, worker: Worker | None = None,
                   **extra: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "ws": TickerWebSocket,
        "ws_per_message_deflate": False,
        "lifespan": "on",
        "log_config": None,
        "loop": "uvloop",
        # httptools, except that a websocket upgrade skips it (ticker.wsserver.TickerHttp).
        "http": TickerHttp,
        "backlog": 8192,
        "timeout_graceful_shutdown": settings.shutdown_timeout,
        "server_header": False,
        # uvicorn's access line carries the query string (a token someone put in a URL);
        # ticker.requestid logs each request by path, with its request id, instead.
        "access_log": False,
        # Only these peers may set the client address and scheme (X-Forwarded-For/-Proto):
        # the desk's per-address login limit and its Secure cookie depend on them.
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": list(settings.trusted_proxies),
    }
    options.update(extra)
    return uvicorn.Config(create_app(settings, worker=worker), **options)


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM; the embedded Redis (if any) is stopped on the way out."""
    if settings.workers > 1:
        from ticker.workers import supervise

        return supervise(settings)
    # uvicorn re-raises the signal it caught after its graceful shutdown; with these
    # handlers that unwinds our `finally` blocks instead of killing the process outright.
    def _exit(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _exit)
    try:
        with redis_for_serving(settings) as ready:
            print(f"ticker: serving http://{ready.host}:{ready.port}/ channels "
                  f"{', '.join(ready.channel_names)}", file=sys.stderr, flush=True)
            server = TickerServer(uvicorn_config(ready))
            server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    return 0
