"""`GET /sse/{channel}`: the live ticker as Server-Sent Events, for a plain `EventSource`.

Every message is one SSE event whose `data:` is exactly the JSON of the websocket frame
(docs/protocol.md) and whose `id:` is the cursor, so a browser that reconnects sends
`Last-Event-ID` and resumes where it was: the same snapshot / resume-with-`missed` / reset
rules as the websocket. The cursor comes from `Last-Event-ID` first (the browser's own
reconnect), then from `?cursor=` (a page that switches from the websocket to SSE).

The hub writes the same encode-once bytes to every SSE reader (`ChannelHub.sse_writers`)
with a plain, synchronous `write`. Here each reader has a queue and one pump task that hands
the queue to the ASGI server, all of it in one `send`. A reader whose queue passes
`TICKER_CLIENT_BUFFER` bytes is *blocked* (the hub stops writing to it); once its queue has
drained it is unblocked and the hub sends exactly what it missed. So a slow reader holds at
most about two buffers' worth of memory here (the queue and the chunk being sent) plus the
server's transport buffer, and is closed by the hub's slow-client sweep if it never drains.

An idle stream carries a comment line every `TICKER_SSE_HEARTBEAT` seconds, so proxies do
not time it out and a dead peer is noticed. When the node drains (shutdown), every stream
ends cleanly with a short, jittered `retry:` so the browser reconnects, with
`Last-Event-ID`, to another node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from ticker.core.clock import now_ms
from ticker.core.errors import HTTPError
from ticker.core.hub import ChannelHub
from ticker.node.runtime import Runtime, runtime_of
from ticker.transport import resume
from ticker.transport.cors import origin_refused, reader_headers
from ticker.transport.http import channel_of

log = logging.getLogger("ticker.transport.sse")

RETRY_MS = 3000  # the browser's reconnect delay after an error: the widget's order of magnitude
RESTART_RETRY_MS = (250, 2500)  # after a drain: soon, spread so a node's readers do not stampede
HEARTBEAT = b": keepalive\n\n"
CLOSE_GRACE = 1.0  # seconds a draining node's reader gets to take the end of its stream
RESTART_CODES = frozenset({1001, 1012})  # drop codes that end the stream with a reconnect hint



def retry_field(ms: int) -> bytes:
    """An SSE `retry:` field on its own (no data: the browser dispatches nothing)."""
    return b"retry: " + str(ms).encode() + b"\n\n"


class SSEConnection:
    """One EventSource reader: the hub's `Subscriber` with `sse = True` and a bounded queue.

    The hub calls `write` (never awaits) and `drop`; the pump (`EventStream`) calls `take`
    and `drained`. `ended` is set once, by `drop`; after it nothing more is queued.
    """

    __slots__ = ("awaiting_pong", "blocked_since", "channel", "ended", "left", "limit",
                 "on_leave", "pending", "pump", "queued", "wake")

    sse = True

    def __init__(self, channel: ChannelHub, limit: int,
                 on_leave: Callable[[], None] | None = None) -> None:
        self.channel = channel
        self.limit = limit
        self.on_leave = on_leave
        self.awaiting_pong = False  # SSE has no pings; the hub only reads this for websockets
        self.blocked_since = 0.0
        self.pending: list[bytes] = []
        self.queued = 0
        self.wake = asyncio.Event()
        self.ended: tuple[int, str] | None = None
        self.left = False
        self.pump: asyncio.Task[None] | None = None

    def write(self, data: bytes) -> None:
        """Queue `data`; past the limit, tell the hub to stop sending live events."""
        if self.ended is not None:
            return
        self.pending.append(data)
        self.queued += len(data)
        self.wake.set()
        if self.queued > self.limit and not self.blocked_since:
            self.channel.block(self, time.monotonic())

    def take(self) -> bytes:
        """Everything queued, as one chunk; the queue is empty afterwards."""
        data = b"".join(self.pending)
        self.pending.clear()
        self.queued = 0
        return data

    def drained(self, now: int) -> None:
        """The queue went out: a blocked reader is sent what it missed, then live events."""
        if self.blocked_since and self.ended is None:
            self.channel.unblock(self, now)

    def drop(self, code: int, reason: str) -> None:
        """End this stream (the hub's slow sweep, or a draining node).

        A restart (1001/1012) ends after what is queued, with a reconnect hint, if the reader
        takes it within `CLOSE_GRACE`. Anything else (too slow, an error) stops the pump at
        once: its queue is not going anywhere. A stopped pump leaves the stream unfinished
        and the server closes the connection.
        """
        if self.ended is not None:
            return
        self.ended = (code, reason)
        self.leave()
        self.wake.set()
        pump = self.pump
        if pump is None:
            return
        if code in RESTART_CODES:
            asyncio.get_running_loop().call_later(CLOSE_GRACE, pump.cancel)
        else:
            log.info("sse reader on %s dropped: %s", self.channel.info.name, reason)
            pump.cancel()

    def leave(self) -> None:
        """Unsubscribe from the hub (idempotent)."""
        if self.left:
            return
        self.left = True
        self.channel.unsubscribe(self)
        if self.on_leave is not None:
            self.on_leave()


class EventStream(Response):
    """The streaming response of one SSE reader (pure ASGI: one pump task and a listener)."""

    media_type = "text/event-stream; charset=utf-8"

    def __init__(self, runtime: Runtime, channel: ChannelHub, cursor: str | None,
                 headers: dict[str, str], address: str) -> None:
        # Like StreamingResponse: no `body`, so no Content-Length (the stream is chunked).
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self.runtime = runtime
        self.channel = channel
        self.cursor = cursor
        self.heartbeat = runtime.settings.sse_heartbeat
        self.address = address  # admitted by the per-address cap; released when we end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._stream(receive, send)
        finally:
            self.runtime.ws_cap.release(self.address)

    async def _stream(self, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        runtime = self.runtime
        if runtime.draining:
            # Going away: come back soon, to another node (the browser keeps its last id).
            await send(_body(retry_field(random.randint(*RESTART_RETRY_MS)), more=False))
            return
        name = self.channel.info.name
        runtime.connections_changed(name, +1)
        conn = SSEConnection(self.channel, runtime.settings.client_buffer,
                             on_leave=lambda: runtime.connections_changed(name, -1))
        conn.write(retry_field(RETRY_MS))
        pump = asyncio.create_task(self._pump(conn, send), name="ticker-sse-pump")
        conn.pump = pump
        listen = asyncio.create_task(_disconnected(receive), name="ticker-sse-listen")
        try:
            await asyncio.wait((pump, listen), return_when=asyncio.FIRST_COMPLETED)
        finally:
            conn.leave()
            for task in (pump, listen):
                task.cancel()
            for task in (pump, listen):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _pump(self, conn: SSEConnection, send: Send) -> None:
        """Subscribe, then hand the queue to the server until the stream ends."""
        resume.subscribe(self.channel, conn, self.cursor, lambda: conn.ended is not None)
        while True:
            if not conn.pending and conn.ended is None:
                conn.drained(now_ms())  # may queue what a blocked reader missed
            if not conn.pending:
                if conn.ended is not None:
                    break
                conn.wake.clear()
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a cancel
                    # (ticker/process/stopping.py) and the pump would outlive its stream.
                    async with asyncio.timeout(self.heartbeat):
                        await conn.wake.wait()
                except TimeoutError:
                    conn.write(HEARTBEAT)
                continue
            await send(_body(conn.take()))
        code, reason = conn.ended
        log.debug("sse stream on %s ends: %s %s", self.channel.info.name, code, reason)
        tail = retry_field(random.randint(*RESTART_RETRY_MS)) if code in RESTART_CODES else b""
        await send(_body(tail, more=False))


def _body(data: bytes, more: bool = True) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


async def _disconnected(receive: Receive) -> None:
    """Return when the reader goes away (the request body of a GET is empty)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def cursor_of(request: Request) -> str | None:
    """`Last-Event-ID` first (the browser's reconnect), then `?cursor=`; 400 if malformed."""
    return (resume.check_cursor(request.headers.get("last-event-id"), "Last-Event-ID")
            or resume.check_cursor(request.query_params.get("cursor"), "cursor"))


async def stream(request: Request) -> Response:
    """`GET /sse/{channel}`: validate, then stream (see the module docstring)."""
    runtime = runtime_of(request)
    channel = channel_of(request)
    if origin_refused(request, runtime):
        log.info("sse origin refused: %s", request.headers.get("origin"))
        raise HTTPError(403, "forbidden", "this origin may not read the ticker "
                        "(TICKER_ALLOWED_ORIGINS)", field="Origin")
    cursor = cursor_of(request)
    headers = {
        "Cache-Control": "no-cache, no-transform",
        "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        **reader_headers(request, runtime),
    }
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers, media_type=EventStream.media_type)
    # The same per-address cap as websockets (TICKER_MAX_CONNECTIONS_PER_IP); uvicorn has
    # already put the real client (X-Forwarded-For from a trusted proxy) in scope["client"].
    address = request.client.host if request.client else "unknown"
    if not runtime.ws_cap.admit(address):
        raise HTTPError(429, "too_many_connections",
                        "too many open connections from your address")
    return EventStream(runtime, channel, cursor, headers, address)


routes = [
    Route("/sse/{channel}", stream, methods=["GET"]),
]
