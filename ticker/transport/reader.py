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
from typing import TYPE_CHECKING, Any

from ticker.core.clock import now_ms

if TYPE_CHECKING:
    from ticker.core.hub import ChannelHub
    from ticker.node.runtime import Runtime


class ReaderConnection(asyncio.Protocol):
    """What websocket and SSE readers share (module docstring)."""

    __slots__ = ("address", "blocked_since", "channel", "closed", "connections", "deadline",
                 "runtime", "transport", "write")

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
