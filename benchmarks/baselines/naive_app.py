"""The "naive" baseline: Starlette under uvicorn, as a typical developer would write it.

``/ws/{channel}`` accepts, sends a snapshot frame and adds the websocket to a set. One lifespan
task reads ``ticker:stream:en`` (``XREAD BLOCK 1000 COUNT 100``, starting at ``$``) and, for
every entry, builds an ``events`` frame (the shape of docs/protocol.md) and awaits
``ws.send_text(frame)`` for each connection in turn: one frame per entry, awaited per
connection. uvicorn runs with its default websocket implementation and permessage-deflate off.

It measures what the ASGI per-connection path costs; it has no state, validation or resume.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
import uvicorn
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

STREAM = "ticker:stream:en"
log = logging.getLogger("naive")


def item_of(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """The protocol's ITEM for a publish entry (defaults, no validation)."""
    ts = int(entry_id.split("-", 1)[0])
    return {
        "id": entry_id,
        "text": fields.get("text", ""),
        "source": fields.get("source"),
        "urgency": fields.get("urgency", "breaking"),
        "link": None,
        "tags": [],
        "ts": ts,
        "expires": ts + 7_200_000,
        "version": 1,
        "corrected": False,
        "pinned": False,
    }


def build_app(redis_url: str) -> Starlette:
    """The naive app: a set of websockets and one read-and-send-to-each loop."""
    conns: set[WebSocket] = set()

    async def ws_endpoint(ws: WebSocket) -> None:
        await ws.accept()
        snapshot = {
            "type": "snapshot",
            "channel": ws.path_params["channel"],
            "cursor": "0-0",
            "reset": False,
            "now": int(time.time() * 1000),
            "missed": None,
            "channel_info": {"name": "en", "lang": "en", "dir": "ltr", "title": "Breaking"},
            "items": [],
        }
        await ws.send_text(json.dumps(snapshot))
        conns.add(ws)
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            conns.discard(ws)

    async def reader(r: aioredis.Redis) -> None:
        # From the newest entry, not "$": "$" again after an empty read would skip what was
        # added between that reply and the next XREAD.
        newest = await r.xrevrange(STREAM, count=1)
        last = newest[0][0] if newest else "0-0"
        while True:
            try:
                reply: Any = await r.xread({STREAM: last}, count=100, block=1000)
            except RedisError as exc:
                log.warning("xread failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    last = entry_id
                    event = {"op": "publish", "cursor": entry_id, "item": item_of(entry_id, fields)}
                    frame = json.dumps(
                        {
                            "type": "events",
                            "cursor": entry_id,
                            "now": int(time.time() * 1000),
                            "events": [event],
                        }
                    )
                    for ws in list(conns):
                        try:
                            await ws.send_text(frame)
                        except Exception:  # a typical app drops the client on any error
                            conns.discard(ws)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        r = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=10)
        task = asyncio.create_task(reader(r))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await r.aclose()

    async def healthz(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    routes = [Route("/healthz", healthz), WebSocketRoute("/ws/{channel}", ws_endpoint)]
    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    """Serve the naive app until SIGTERM/SIGINT."""
    p = argparse.ArgumentParser(description="naive Starlette fan-out baseline")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--ping-interval", type=float, default=20.0, help="0 disables pings")
    args = p.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvicorn.run(
        build_app(args.redis_url),
        host=args.host,
        port=args.port,
        log_level="warning",
        ws_per_message_deflate=False,
        ws_ping_interval=args.ping_interval or None,
    )


if __name__ == "__main__":
    main()
