"""The websocket endpoint `/ws/{channel}`: a uvicorn websocket protocol class.

uvicorn parses HTTP and hands every `Upgrade: websocket` request to this class (`ws=` in its
Config) on the same port as the Starlette app. The handshake and inbound frames go through
the `websockets` sans-I/O core (`ServerProtocol`); outbound frames skip it entirely: the hub
writes pre-encoded bytes straight to the transport. That is what makes the fan-out cost
close to the raw floor (docs/fanout.md), where the per-connection ASGI path costs twice as
much CPU and memory.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from ticker.protocol import close_frame

if TYPE_CHECKING:
    from ticker.hub import ChannelHub
    from ticker.runtime import Runtime

log = logging.getLogger("ticker.ws")

MAX_INBOUND = 1024
CLOSE_GRACE = 5.0  # seconds a closing peer gets to read our close frame
AHEAD_RETRIES = 20  # x 0.1 s: how long a cursor from a node that is ahead of us may wait


def now_ms() -> int:
    return int(time.time() * 1000)


class TickerWebSocket(asyncio.Protocol):
    """One reader's websocket. Constructed by uvicorn with the upgrade request replayed."""

    __slots__ = (
        "app_state", "awaiting_pong", "blocked_since", "channel", "closed", "cursor", "proto",
        "runtime", "server_state", "transport", "write",
    )

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.server_state = server_state
        self.app_state = app_state
        self.runtime: Runtime | None = app_state.get("ticker")
        self.transport: asyncio.Transport | None = None
        self.proto: ServerProtocol | None = None
        self.channel: ChannelHub | None = None
        self.awaiting_pong = False
        self.blocked_since = 0.0
        self.closed = False
        self.cursor: str | None = None

    sse = False  # the hub frames our messages as websocket frames

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.write = transport.write
        self.server_state.connections.add(self)
        limit = self.runtime.settings.client_buffer if self.runtime else 256 * 1024
        transport.set_write_buffer_limits(high=limit, low=limit // 4)
        sndbuf = self.runtime.settings.socket_sndbuf if self.runtime else 0
        if sndbuf:
            # Bounds the kernel's memory per reader too (autotuning on loopback takes MBs).
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.proto = ServerProtocol(max_size=MAX_INBOUND)

    def data_received(self, data: bytes) -> None:
        proto = self.proto
        if proto is None:
            return
        try:
            handshaking = proto.state is State.CONNECTING
            proto.receive_data(data)
            for event in proto.events_received():
                if isinstance(event, Request):
                    self._handshake(proto, event)
                elif isinstance(event, Frame):
                    self._frame(proto, event)
            self._flush(proto)
            if handshaking and proto.state is State.OPEN and self.channel is not None:
                self._subscribe(self.channel, self.cursor, AHEAD_RETRIES)
        except Exception:  # one connection's bug must not leave it half-open
            log.exception("websocket error; closing the connection")
            self.drop(1011, "internal error")

    def eof_received(self) -> bool | None:
        if self.proto is not None:
            self.proto.receive_eof()
            self._flush(self.proto)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._leave()
        self.server_state.connections.discard(self)
        self.proto = None

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
        self._leave()
        transport = self.transport
        if code in (1011, 1013) or self.blocked_since:
            transport.abort()  # its buffer is not draining: a close frame would never arrive
            return
        if self.proto is not None and self.proto.state is State.OPEN:
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

    def _handshake(self, proto: ServerProtocol, request: Request) -> None:
        runtime = self.runtime
        response: Response
        if runtime is None or not runtime.started:
            response = proto.reject(503, "Starting up: try again in a moment.\n")
        else:
            parts = urlsplit(request.path)
            name = parts.path[len("/ws/"):] if parts.path.startswith("/ws/") else None
            channel = runtime.hub.channel(name) if name else None
            origin = request.headers.get("Origin")
            if channel is None:
                response = proto.reject(404, "No such channel.\n")
            elif not runtime.origin_allowed(origin, request.headers.get("Host")):
                log.info("websocket origin refused: %s", origin)
                response = proto.reject(403, "Origin not allowed.\n")
            else:
                response = proto.accept(request)
                if response.status_code == 101:
                    self.channel = channel
                    values = parse_qs(parts.query).get("cursor")
                    self.cursor = values[0][:64] if values else None
                    runtime.connections_changed(channel.info.name, +1)
        proto.send_response(response)

    def _subscribe(self, channel: ChannelHub, cursor: str | None, retries: int) -> None:
        if self.closed:
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

    def _frame(self, proto: ServerProtocol, frame: Frame) -> None:
        if frame.opcode is Opcode.PONG:
            self.awaiting_pong = False
        elif frame.opcode is Opcode.BINARY:
            proto.fail(1003, "binary frames are not accepted")
        elif frame.opcode is Opcode.CLOSE:
            self._leave()
        # Text frames are a tiny optional control channel; nothing needs an answer yet.

    def _flush(self, proto: ServerProtocol) -> None:
        transport = self.transport
        if transport is None:
            return
        for chunk in proto.data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                # The sans-I/O core asks to half-close: we are done with this socket.
                self.closed = True
                self._leave()
                transport.close()
                return
        if proto.state is State.CLOSED and not self.closed:
            self.closed = True
            self._leave()
            transport.close()
