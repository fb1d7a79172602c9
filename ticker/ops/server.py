"""`ticker serve`: uvicorn with the Starlette app and our websocket protocol on one port.

`--workers N` (N > 1) runs N such servers on the port under a supervisor (ticker.ops.workers).

Shutdown (SIGTERM or Ctrl-C), in this order: the listeners close (no new connections); the
runtime drains: /readyz turns 503 and every reader, websocket or SSE, is closed with 1012
("service restart") so it reconnects elsewhere with its cursor; uvicorn waits up to
`TICKER_SHUTDOWN_TIMEOUT` for connections and requests to finish; the lifespan then stops
the background tasks and flushes reach counts and dead letters (at most 2 s more).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from ticker.node.worker import Worker
from ticker.ops.app import create_app
from ticker.ops.uvicorn_adapter import TickerHttp, TickerServer, UvicornWebSocket
from ticker.process.settings import Settings
from ticker.redis.embedded import EmbeddedRedis

log = logging.getLogger("ticker.ops.server")


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


def uvicorn_config(settings: Settings, worker: Worker | None = None,
                   **extra: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "ws": UvicornWebSocket,
        "ws_per_message_deflate": False,
        "lifespan": "on",
        "log_config": None,
        "loop": "uvloop",
        # httptools, except that a websocket upgrade skips it
        # (ticker.ops.uvicorn_adapter.TickerHttp).
        "http": TickerHttp if settings.upgrade_routing else "httptools",
        "backlog": 8192,
        "timeout_graceful_shutdown": settings.shutdown_timeout,
        "server_header": False,
        # uvicorn's access line carries the query string (a token someone put in a URL);
        # ticker.transport.requestid logs each request by path, with its request id, instead.
        "access_log": False,
        # Only these peers may set the client address and scheme (X-Forwarded-For/-Proto):
        # the desk's per-address login limit and its Secure cookie depend on them.
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": list(settings.trusted_proxies),
    }
    options.update(extra)
    return uvicorn.Config(create_app(settings, worker=worker), **options)


def serve(settings: Settings) -> int:
    """One server process (`--workers 1`; ticker.ops.workers supervises more), until
    SIGINT/SIGTERM; the embedded Redis (if any) is stopped on the way out."""
    # uvicorn re-raises the signal it caught after its graceful shutdown; with these
    # handlers that unwinds our `finally` blocks instead of killing the process outright.
    def _exit(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _exit)
    try:
        with redis_for_serving(settings) as ready:
            print(f"ticker: serving http://{ready.host}:{ready.port}/ channels "
                  f"{', '.join(ready.channel_names)}", file=sys.stderr, flush=True)
            server = TickerServer(uvicorn_config(ready), client_timeout=ready.client_timeout)
            server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    return 0
