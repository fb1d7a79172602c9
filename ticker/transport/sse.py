"""`GET /sse/{channel}`: the live ticker as Server-Sent Events, for a plain `EventSource`.

Every message is one SSE event whose `data:` is exactly the JSON of the websocket frame
(docs/protocol.md) and whose `id:` is the cursor, so a browser that reconnects sends
`Last-Event-ID` and resumes where it was: the same snapshot / resume-with-`missed` / reset
rules as the websocket. The cursor comes from `Last-Event-ID` first (the browser's own
reconnect), then from `?cursor=` (a page that switches from the websocket to SSE).

Two ways in, the same stream:

- **`TickerEventStream`**, an `asyncio.Protocol` like the websocket endpoint: the server's
  adapter (ticker.ops.uvicorn_adapter) hands it a connection whose first bytes are
  `GET /sse/`. It parses the request head with httptools (as the websocket handshake does),
  answers with the response head, and from then on the hub writes each event, built once
  for every SSE reader as a chunk of the chunked body (ticker.core.framing.sse_chunk),
  straight to the transport, as it writes websocket frames. Back-pressure is the transport's:
  past `TICKER_CLIENT_BUFFER` unsent bytes the reader is *blocked* (the hub stops writing to
  it); once drained it gets exactly what it missed; the slow sweep closes it if it never
  drains. No task, no ASGI scope and no middleware stay alive per reader: this is what
  keeps an SSE reader at a websocket's cost (docs/performance.md).
- **`stream`**, the ASGI route: `HEAD`, and every request when upgrade routing is off
  (`TICKER_UPGRADE_ROUTING=false`, which keeps clear of uvicorn's internals). Each reader
  has a queue and a pump task that hands it to the ASGI server.

Every `TICKER_SSE_HEARTBEAT` seconds each stream gets a comment line (one timer per process,
ticker.node.runtime), so proxies do not time it out and a vanished reader leaves it
unacknowledged (`TICKER_CLIENT_TIMEOUT`). When the node drains (shutdown), every stream
ends cleanly with a short, jittered `retry:` so the browser reconnects, with
`Last-Event-ID`, to another node.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import time
from collections.abc import Callable, MutableSet
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send
from websockets.datastructures import Headers

from ticker.core.clock import now_ms
from ticker.core.errors import HTTPError
from ticker.core.framing import LAST_CHUNK, chunk, unchunk
from ticker.core.hub import ChannelHub
from ticker.node.runtime import Runtime, runtime_of
from ticker.transport import requestid, resume
from ticker.transport.cors import origin_refused, reader_headers
from ticker.transport.http import channel_of, security_headers
from ticker.transport.reader import HeadTooLarge, ReaderConnection
from ticker.transport.websocket import parse_request

log = logging.getLogger("ticker.transport.sse")

RETRY_MS = 3000  # the browser's reconnect delay after an error: the widget's order of magnitude
RESTART_RETRY_MS = (250, 2500)  # after a drain: soon, spread so a node's readers do not stampede
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
        """Queue `data` (one chunk, which the ASGI server frames itself); past the limit,
        tell the hub to stop sending live events."""
        if self.ended is not None:
            return
        data = unchunk(data)
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
        conn.write(chunk(retry_field(RETRY_MS)))
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
                await conn.wake.wait()  # an event, a heartbeat (the hub's), or the end
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


# -- the protocol class: a reader's connection, from its request on ----------------------


@functools.lru_cache(maxsize=4)
def stream_head(frame_ancestors: str) -> bytes:
    """The response head's fixed part (everything but the origin grant and the request id)."""
    lines = [b"HTTP/1.1 200 OK", b"content-type: " + EventStream.media_type.encode(),
             b"cache-control: no-cache, no-transform", b"x-accel-buffering: no",
             b"vary: Origin", b"transfer-encoding: chunked"]
    lines += [name + b": " + value for name, value in security_headers(frame_ancestors)]
    return b"\r\n".join(lines) + b"\r\n"


class TickerEventStream(ReaderConnection):
    """One SSE reader's connection; its request arrives as the connection's first bytes
    (module docstring). The hub's `Subscriber` with `sse = True`."""

    __slots__ = ("answered",)

    sse = True

    def __init__(self, runtime: Runtime | None, connections: MutableSet[Any]) -> None:
        super().__init__(runtime, connections)
        self.answered = False

    def data_received(self, data: bytes) -> None:
        if self.answered or self.closed:
            return  # a GET has no body: anything after the head is not ours to read
        try:
            self._request(data)
        except Exception:  # one connection's bug must not leave it half-open
            log.exception("sse error; closing the connection")
            self.abort()

    @property
    def queued(self) -> int:
        """Bytes written and not yet taken by the kernel (what a slow reader holds here)."""
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    # -- what the server and the hub call ------------------------------------------------

    def shutdown(self) -> None:
        """The server is stopping: end the stream with a reconnect hint."""
        self.drop(1012, "service restart: reconnect with your cursor")

    def drop(self, code: int, reason: str) -> None:
        """Leave the hub and end the stream. A restart (1001/1012) ends it cleanly with a
        short, jittered `retry:` (the browser reconnects elsewhere); anything else (too
        slow, an error), or a reader that is not reading, is cut."""
        if self.closed or self.transport is None:
            return
        if code not in RESTART_CODES or self.blocked_since or self.channel is None:
            if code not in RESTART_CODES:
                log.info("sse reader dropped: %s", reason)
            self.abort()
            return
        self.closed = True
        self._leave()
        self._end(self.transport, b"")

    # -- the request -----------------------------------------------------------------------

    def _request(self, data: bytes) -> None:
        """Gather the request head (it may arrive in pieces), then answer it."""
        try:
            whole = self._whole_head(data)
        except HeadTooLarge:
            self._refuse(HTTPError(431, "too_large", "request headers too large"))
            return
        if whole is None:
            return
        self.answered = True
        try:
            self._answer(whole[0])
        except HTTPError as exc:
            self._refuse(exc)

    def _answer(self, head: bytes) -> None:
        """Check the request as the ASGI route does, then subscribe (or refuse: HTTPError)."""
        runtime, transport = self.runtime, self.transport
        assert transport is not None
        try:
            request = parse_request(head)
        except ValueError as exc:
            raise HTTPError(400, "bad_request", str(exc)) from None
        if runtime is None or not runtime.started or runtime.draining:
            # Going away (or not yet serving): come back soon, to another node. A status
            # other than 200 would make the browser's EventSource give up for good.
            self.closed = True
            self._end(transport, stream_head(runtime.settings.frame_ancestors
                                             if runtime else "'none'") + b"\r\n")
            return
        headers = request.headers
        hosts, origins = headers.get_all("Host"), headers.get_all("Origin")
        if len(hosts) != 1:
            raise HTTPError(400, "bad_request", "one Host header is required", field="Host")
        if len(origins) > 1:
            raise HTTPError(400, "bad_request", "repeated header: Origin", field="Origin")
        origin = origins[0] if origins else None
        path, _, query = request.path.partition("?")
        name = path[len("/sse/"):]
        channel = runtime.hub.channel(name) if "/" not in name else None
        if channel is None:
            raise HTTPError(404, "not_found", f"no channel {name!r}", field="channel")
        if not runtime.origin_allowed(origin, hosts[0]):
            log.info("sse origin refused: %s", origin)
            raise HTTPError(403, "forbidden", "this origin may not read the ticker "
                            "(TICKER_ALLOWED_ORIGINS)", field="Origin")
        last = headers.get_all("Last-Event-ID")
        values = parse_qs(query).get("cursor") if query else None
        cursor = (resume.check_cursor(last[0] if last else None, "Last-Event-ID")
                  or resume.check_cursor(values[0] if values else None, "cursor"))
        peer = transport.get_extra_info("peername")
        forwarded = ", ".join(headers.get_all("X-Forwarded-For")) or None
        address = runtime.proxies.client(str(peer[0]) if peer else "unknown", forwarded)
        if not runtime.ws_cap.admit(address):
            raise HTTPError(429, "too_many_connections",
                            "too many open connections from your address")
        self.address = address
        response = stream_head(runtime.settings.frame_ancestors)
        if origin is not None:
            response += b"access-control-allow-origin: " + origin.encode("latin-1") + b"\r\n"
        response += b"x-request-id: " + request_id(headers).encode() + b"\r\n\r\n"
        self.channel = channel
        runtime.connections_changed(channel.info.name, +1)
        resume.subscribe(channel, self, cursor,
                         lambda: self.closed or self.channel is not channel,
                         preamble=response + chunk(retry_field(RETRY_MS)))

    def _refuse(self, exc: HTTPError) -> None:
        """An error instead of the stream, in JSON as every endpoint answers; the connection
        ends with it."""
        transport = self.transport
        assert transport is not None
        self.closed = True
        self._leave()
        body = json.dumps(exc.as_dict()).encode()
        lines = [f"HTTP/1.1 {exc.status} {HTTPStatus(exc.status).phrase}".encode(),
                 b"content-type: application/json", b"content-length: %d" % len(body),
                 b"cache-control: no-store", b"connection: close"]
        lines += [f"{k}: {v}".encode("latin-1") for k, v in exc.headers.items()]
        if self.runtime is not None:
            lines += [k + b": " + v
                      for k, v in security_headers(self.runtime.settings.frame_ancestors)]
        transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        transport.close()

    def _end(self, transport: asyncio.Transport, head: bytes) -> None:
        """The end of the stream, with a reconnect hint: a clean end of the chunked body
        (not a cut), then the connection closes once it is out (not waiting for ever)."""
        hint = retry_field(random.randint(*RESTART_RETRY_MS))
        transport.write(head + chunk(hint) + LAST_CHUNK)
        transport.close()
        asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)


def request_id(headers: Headers) -> str:
    """The client's or proxy's X-Request-ID if it is a sane token, else a new one (as
    ticker.transport.requestid does for every other request)."""
    given = headers.get_all("X-Request-ID")
    if given and requestid.VALID.match(given[0].encode("latin-1")):
        return given[0]
    return requestid.new_id()


routes = [
    Route("/sse/{channel}", stream, methods=["GET"]),
]
