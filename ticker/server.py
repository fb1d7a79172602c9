"""`ticker serve`: uvicorn with the Starlette app and our websocket protocol on one port."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from ticker.app import create_app
from ticker.embedded import EmbeddedRedis
from ticker.settings import Settings
from ticker.wsserver import TickerWebSocket

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


def uvicorn_config(settings: Settings, **extra: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "ws": TickerWebSocket,
        "ws_per_message_deflate": False,
        "lifespan": "on",
        "log_config": None,
        "loop": "uvloop",
        "http": "httptools",
        "backlog": 8192,
        "timeout_graceful_shutdown": 10,
        "server_header": False,
    }
    options.update(extra)
    return uvicorn.Config(create_app(settings), **options)


def serve(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM; the embedded Redis (if any) is stopped on the way out."""
    # uvicorn re-raises the signal it caught after its graceful shutdown; with these
    # handlers that unwinds our `finally` blocks instead of killing the process outright.
    def _exit(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _exit)
    try:
        with redis_for_serving(settings) as ready:
            print(f"ticker: serving http://{ready.host}:{ready.port}/ channels "
                  f"{', '.join(ready.channel_names)}", file=sys.stderr, flush=True)
            server = uvicorn.Server(uvicorn_config(ready))
            server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    return 0
