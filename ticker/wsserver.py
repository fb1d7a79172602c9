"""The websocket endpoint `/ws/{channel}`: a uvicorn websocket protocol class.

`TickerWebSocket` serves one reader's websocket on the same port as the Starlette app. It
gets its upgrade request one of two ways: `TickerHttp` (uvicorn's `http=` class) sees the
first bytes of every connection and hands a `GET /ws/...` upgrade over as it is, or uvicorn's
own HTTP protocol (`ws=` in its Config) parses some other upgrade and replays its bytes. We
check the handshake ourselves (ticker.wsframes: small, pure, RFC 6455) and then never encode
a frame per connection: the hub writes the same pre-encoded bytes straight to every
transport. That is what keeps the fan-out and the connect cost near the raw floor
(docs/fanout.md, docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ticker.protocol import OP_PING, close_frame, frame
from ticker.wsframes import (
    MAX_REQUEST,
    OP_BINARY,
    OP_CLOSE,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    HandshakeError,
    ProtocolError,
    close_code,
    handshake,
)

if TYPE_CHECKING:
    from ticker.hub import ChannelHub
    from ticker.runtime import Runtime

log = logging.getLogger("ticker.ws")

MAX_INBOUND = 1024  # bytes per client message: readers send nothing but tiny control
INBOUND_WINDOW = 10.0  # seconds
INBOUND_LIMIT = 50  # client frames per window before the connection is closed (1008)
CLOSE_GRACE = 5.0  # seconds a closing peer gets to read our close frame
HANDSHAKE_TIMEOUT = 10.0  # seconds a new connection gets to send its whole request
AHEAD_RETRIES = 20  # x 0.1 s: how long a cursor from a node that is ahead of us may wait
OP_PONG_OUT = 0xA
WS_REQUEST = b"GET /ws/"  # how a reader's upgrade request starts (TickerHttp)


def now_ms() -> int:
    return int(time.time() * 1000)


class TickerWebSocket(asyncio.Protocol):
    """One reader's websocket. Constructed by uvicorn with the upgrade request replayed."""

    __slots__ = (
        "address", "awaiting_pong", "blocked_since", "channel", "closed", "cursor", "deadline",
        "inbound", "inbound_since", "pending", "reader", "runtime", "server_state", "transport",
        "write",
    )

    sse = False  # the hub frames our messages as websocket frames

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.server_state = server_state
        self.runtime: Runtime | None = app_state.get("ticker")
        self.transport: asyncio.Transport | None = None
        self.reader: FrameReader | None = None  # set once the handshake succeeded
        self.channel: ChannelHub | None = None
        self.address: str | None = None  # counted against the per-address cap
        self.awaiting_pong = False
        self.blocked_since = 0.0
        self.closed = False
        self.cursor: str | None = None
        self.inbound = 0
        self.inbound_since = 0.0
        self.pending = b""  # the start of an upgrade request that came in pieces
        self.deadline: asyncio.TimerHandle | None = None  # for the rest of that request

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.write = transport.write
        self.server_state.connections.add(self)
        runtime = self.runtime
        if runtime is not None:
            limit = runtime.settings.client_buffer
            transport.set_write_buffer_limits(high=limit, low=limit // 4)
            sndbuf = runtime.settings.socket_sndbuf
            if sndbuf:
                # Bounds the kernel's memory per reader too (loopback autotuning takes MBs).
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)

    def _handshake_deadline(self) -> None:
        if self.reader is None and not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        try:
            if self.reader is not None:
                self._frames(self.reader, data)
            elif not self.closed:
                self._request(data)
        except Exception:  # one connection's bug must not leave it half-open
            log.exception("websocket error; closing the connection")
            self.drop(1011, "internal error")

    def eof_received(self) -> bool | None:
        self._leave()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self._leave()
        self.server_state.connections.discard(self)

    def pause_writing(self) -> None:
        if self.channel is not None:
            self.channel.block(self, time.monotonic())

    def resume_writing(self) -> None:
        if self.channel is not None and not self.closed:
            self.channel.unblock(self, now_ms())

    # -- what uvicorn and the hub call ---------------------------------------------------

    def shutdown(self) -> None:
        """uvicorn is stopping: close with 1012 so the client resumes on another node."""
        self.drop(1012, "service restart: reconnect with your cursor")

    def drop(self, code: int, reason: str) -> None:
        """Leave the hub and close. A stuck peer is aborted: its buffer will not drain."""
        if self.closed or self.transport is None:
            return
        self.closed = True
        transport = self.transport
        blocked = self.blocked_since
        self._leave()
        if code in (1011, 1013) or blocked or self.reader is None:
            transport.abort()  # its buffer is not draining: a close frame would never arrive
            return
        transport.write(close_frame(code, reason))
        transport.close()
        # A peer that stops reading now would hold the socket open forever: bound it.
        asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)

    # -- internals -----------------------------------------------------------------------

    def _leave(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.unsubscribe(self)
            if self.runtime is not None:
                self.runtime.connections_changed(channel.info.name, -1)
        address, self.address = self.address, None
        if address is not None and self.runtime is not None:
            self.runtime.ws_cap.release(address)

    def _refuse(self, error: HandshakeError) -> None:
        assert self.transport is not None
        self.closed = True
        self.transport.write(error.response())
        self.transport.close()

    def _request(self, data: bytes) -> None:
        """Gather the upgrade request (it may arrive in pieces), then answer it."""
        buffer = self.pending + data if self.pending else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_REQUEST:
                self._refuse(HandshakeError(400, "Request headers too large."))
            else:
                self.pending = buffer
                if self.deadline is None:
                    # A peer that never finishes its upgrade request must not hold a socket
                    # forever. Armed only here: a whole request (the usual case) costs no
                    # timer, which is ~4 µs of the connect path (docs/performance.md).
                    self.deadline = asyncio.get_running_loop().call_later(
                        HANDSHAKE_TIMEOUT, self._handshake_deadline)
            return
        self.pending = b""
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self._handshake(buffer[:end + 4])
        rest = buffer[end + 4:]
        if rest and self.reader is not None and not self.closed:
            self._frames(self.reader, rest)

    def _handshake(self, data: bytes) -> None:
        runtime = self.runtime
        if runtime is None or not runtime.started or runtime.draining:
            self._refuse(HandshakeError(503, "Not serving: try again in a moment.",
                                        (("Retry-After", "1"),)))
            return
        try:
            request = handshake(data)
        except HandshakeError as error:
            self._refuse(error)
            return
        if not request.path.startswith("/ws/"):
            self._refuse(HandshakeError(404, "No websocket here."))
            return
        channel = runtime.hub.channel(request.path[4:])
        if channel is None:
            self._refuse(HandshakeError(404, "No such channel."))
            return
        if not runtime.origin_allowed(request.origin, request.host):
            log.info("websocket origin refused: %s", request.origin)
            self._refuse(HandshakeError(403, "Origin not allowed."))
            return
        assert self.transport is not None
        peer = self.transport.get_extra_info("peername")
        address = runtime.proxies.client(str(peer[0]) if peer else "unknown",
                                         request.forwarded_for)
        if not runtime.ws_cap.admit(address):
            self._refuse(HandshakeError(429, "Too many connections from your address.",
                                        (("Retry-After", "10"),)))
            return
        self.address = address
        if request.query:
            values = parse_qs(request.query).get("cursor")
            self.cursor = values[0][:64] if values else None
        self.reader = FrameReader(MAX_INBOUND)
        self.channel = channel
        runtime.connections_changed(channel.info.name, +1)
        accept = request.accept()
        if not channel.subscribe(self, self.cursor, now_ms(), preamble=accept):
            self.write(accept)  # the cursor is ahead of us: answer now, subscribe soon
            self._subscribe(channel, self.cursor, AHEAD_RETRIES)

    def _subscribe(self, channel: ChannelHub, cursor: str | None, retries: int) -> None:
        if self.closed or self.channel is not channel:
            return
        if channel.subscribe(self, cursor, now_ms()):
            return
        if retries <= 0:
            # Still ahead of us after waiting: a cursor we cannot place gets a fresh snapshot.
            channel.subscribe(self, None, now_ms())
            return
        asyncio.get_running_loop().call_later(
            0.1, self._subscribe, channel, cursor, retries - 1
        )

    def _frames(self, reader: FrameReader, data: bytes) -> None:
        try:
            messages = reader.feed(data)
        except ProtocolError as error:
            self.drop(error.code, error.reason)
            return
        if not messages:
            return
        now = time.monotonic()
        if now - self.inbound_since > INBOUND_WINDOW:
            self.inbound_since = now
            self.inbound = 0
        self.inbound += len(messages)
        if self.inbound > INBOUND_LIMIT:
            self.drop(1008, "too many messages")
            return
        for opcode, payload in messages:
            if opcode == OP_PONG:
                self.awaiting_pong = False
            elif opcode == OP_PING:
                if not self.blocked_since:  # a reader that does not read gets no pongs
                    self.write(frame(payload, OP_PONG_OUT))
            elif opcode == OP_CLOSE:
                code = close_code(payload)
                self._close_reply(1000 if code is None or code >= 3000 or code in (
                    1005, 1006, 1015) else code)
                return
            elif opcode == OP_BINARY:
                self.drop(1003, "binary messages are not accepted")
                return
            elif opcode == OP_TEXT:
                pass  # a tiny optional control channel; nothing needs an answer yet

    def _close_reply(self, code: int) -> None:
        """The client closed: echo its code, leave, and let the TCP connection end."""
        if self.closed or self.transport is None:
            return
        self.closed = True
        self._leave()
        self.transport.write(close_frame(code))
        self.transport.close()


class TickerHttp(asyncio.Protocol):
    """uvicorn's `http=` protocol class: a connection's first bytes choose its protocol.

    A request that starts `GET /ws/` and has an `Upgrade` header goes straight to the
    websocket class (`TickerWebSocket`, uvicorn's `ws=`), bytes as they came. Through
    uvicorn's httptools protocol the same request would be parsed into an ASGI scope,
    recognised as an upgrade, re-serialised, replayed to the websocket class and parsed
    again, and would leave a reference cycle (protocol <-> parser) for the garbage collector:
    that was about half of the server's CPU per new websocket (docs/performance.md).
    Everything else, including an upgrade whose first segment is too short to tell, gets
    uvicorn's own `HttpToolsProtocol`, created and fed exactly as uvicorn would have; with
    websockets off (`ws="none"`) every request does.
    """

    __slots__ = ("app_state", "config", "deadline", "server_state", "transport")

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.transport: asyncio.Transport | None = None
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.server_state.connections.add(self)  # uvicorn's shutdown reaches silent peers
        # A peer that connects and says nothing is closed (uvicorn's keep-alive timeout
        # only starts once a protocol of its own has the connection). Cancelled as soon as
        # bytes come: a timer that fires costs more than one cancelled (docs/performance.md).
        self.deadline = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT,
                                                              self._silent_deadline)

    def _silent_deadline(self) -> None:
        if self.transport is not None:
            self.server_state.connections.discard(self)
            self.transport.close()
            self.transport = None

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.server_state.connections.discard(self)
        protocol: asyncio.Protocol
        upgrade = self.config.ws_protocol_class  # None: websockets are off (`ws="none"`)
        if upgrade is not None and data.startswith(WS_REQUEST) \
                and b"\nupgrade:" in data.lower():
            protocol = upgrade(config=self.config, server_state=self.server_state,
                               app_state=self.app_state)
        else:
            protocol = HttpToolsProtocol(config=self.config, server_state=self.server_state,
                                         app_state=self.app_state)
        self.transport = None
        # Switched first: a callback the first bytes cause (pause_writing) reaches the new one.
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(data)

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.server_state.connections.discard(self)

    def shutdown(self) -> None:
        """uvicorn is stopping and this peer never sent a byte: close."""
        if self.transport is not None:
            self.transport.close()
