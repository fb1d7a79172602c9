"""A reader's connection as the server and the hub see it, websocket or SSE alike.

An `asyncio.Protocol` that the hub writes to straight (`write` is its transport's own, bound
once), that is *blocked* when its transport's buffer passes `TICKER_CLIENT_BUFFER` (the hub
stops writing to it) and caught up when the buffer drains, and that gives back its hub entry,
its share of `ticker_connections` and its per-address slot exactly once, however it ends (a
close, a cut, a drop by the hub, the server stopping). `TickerWebSocket` and
`TickerEventStream` add their protocol: the request, and what goes out first and last.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import MutableSet
from typing import TYPE_CHECKING, Any, Final

from ticker.core.clock import now_ms

if TYPE_CHECKING:
    from ticker.core.hub import ChannelHub
    from ticker.node.runtime import Runtime

MAX_REQUEST: Final = 8192  # bytes of a reader's request head, headers included
HANDSHAKE_TIMEOUT: Final = 10.0  # seconds a new connection gets to send its whole request


class HeadTooLarge(Exception):
    """A request head longer than MAX_REQUEST (answered 431)."""


class ReaderConnection(asyncio.Protocol):
    """What websocket and SSE readers share (module docstring)."""

    __slots__ = ("address", "blocked_since", "channel", "closed", "connections", "deadline",
                 "partial", "runtime", "transport", "write")

    sse = False  # the hub's framing: websocket frames, or SSE events (a subclass says)
    awaiting_pong = False  # only websockets are pinged (theirs is a slot of its own)

    def __init__(self, runtime: Runtime | None, connections: MutableSet[Any]) -> None:
        self.runtime = runtime
        self.connections = connections  # the server's live connections (shutdown reaches us)
        self.transport: asyncio.Transport | None = None
        self.channel: ChannelHub | None = None  # subscribed to the hub
        self.address: str | None = None  # counted against the per-address cap
        self.blocked_since = 0.0
        self.closed = False  # left the hub: nothing more goes out but the protocol's end
        # For the rest of a request that came in pieces (and the websocket's closing handshake).
        self.deadline: asyncio.TimerHandle | None = None
        self.partial = b""  # the start of a request head that came in pieces

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._attach(transport)
        self._reader_buffers()

    def _attach(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = transport  # type: ignore[assignment]
        self.write = transport.write  # type: ignore[attr-defined]
        self.connections.add(self)

    def _reader_buffers(self) -> None:
        """A reader's write buffer limit (`TICKER_CLIENT_BUFFER`) and kernel send buffer."""
        runtime, transport = self.runtime, self.transport
        if runtime is None or transport is None:
            return
        limit = runtime.settings.client_buffer
        transport.set_write_buffer_limits(high=limit, low=limit // 4)
        sndbuf = runtime.settings.socket_sndbuf
        if sndbuf:
            # Bounds the kernel's memory per reader too (loopback autotuning takes MBs).
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)

    def _whole_head(self, data: bytes) -> tuple[bytes, bytes] | None:
        """The request head (through its blank line) and what came after it, once the head is
        whole; None until then. A head may arrive in pieces, as slowly as it likes for
        HANDSHAKE_TIMEOUT: then the connection is aborted, so a peer that never finishes
        cannot hold a socket. The timer is armed only for a head in pieces: one that comes
        whole (the usual case) costs none (docs/performance.md). Raises HeadTooLarge."""
        buffer = self.partial + data if self.partial else data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_REQUEST:
                raise HeadTooLarge
            self.partial = buffer
            if self.deadline is None:
                self.deadline = asyncio.get_running_loop().call_later(
                    HANDSHAKE_TIMEOUT, self._head_too_slow)
            return None
        if end + 4 > MAX_REQUEST:
            raise HeadTooLarge
        if self.partial:
            self.partial = b""
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None
        return buffer[:end + 4], buffer[end + 4:]

    def _head_too_slow(self) -> None:
        self.deadline = None
        if self.partial and not self.closed:
            self.abort()

    def eof_received(self) -> bool | None:
        self._leave()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self._leave()
        self.connections.discard(self)

    def pause_writing(self) -> None:
        if self.channel is not None:
            self.channel.block(self, time.monotonic())

    def resume_writing(self) -> None:
        if self.channel is not None and not self.closed:
            self.channel.unblock(self, now_ms())

    def drop(self, code: int, reason: str) -> None:
        """Leave the hub and end the connection the protocol's way (the hub's slow sweep,
        a draining node)."""
        raise NotImplementedError

    def abort(self) -> None:
        self.closed = True
        self._leave()
        if self.transport is not None:
            self.transport.abort()

    def _leave(self) -> None:
        """Out of the hub, off the connection count and the per-address cap (idempotent)."""
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.unsubscribe(self)
            if self.runtime is not None:
                self.runtime.connections_changed(channel.info.name, -1)
        address, self.address = self.address, None
        if address is not None and self.runtime is not None:
            self.runtime.ws_cap.release(address)
