"""Every use of uvicorn beyond its public API (`uvicorn.Config`, `uvicorn.Server.run/serve`).

No other module of ticker imports from `uvicorn.protocols`, `uvicorn.server` or
`uvicorn.supervisors`, nor touches an undocumented attribute or method of uvicorn's objects.
Each internal used here is listed with why; `tests/test_uvicorn_adapter.py` has a contract
test per internal that fails with a message naming it when a uvicorn release changes it.
uvicorn is pinned by uv.lock to the release those tests last passed on.

1. **The protocol-class contract** (`Config(http=cls, ws=cls)` accepts classes; how uvicorn
   constructs them is not documented): uvicorn calls `cls(config=, server_state=,
   app_state=)`, then `connection_made`, and at shutdown calls `shutdown()` on every object
   in `server_state.connections`. `UvicornWebSocket` and `TickerHttp` are such classes.
   Why: the websocket endpoint is a plain `asyncio.Protocol` whose transport the hub writes
   pre-encoded frames to; an ASGI websocket costs a task and an await per reader and send.
2. **`uvicorn.protocols.http.httptools_impl.HttpToolsProtocol`** and
   **`Config.ws_protocol_class`** (`TickerHttp`): a connection's first bytes choose its
   protocol; a `GET /ws/...` upgrade stays with `TickerHttp`, itself our websocket class,
   without being parsed by httptools, turned into an ASGI scope, re-serialised and parsed
   again (`Config.ws_protocol_class` None: websockets are off); everything else is handed
   to uvicorn's own httptools protocol, created and fed exactly as uvicorn would.
   Why: that detour was about half of the server's CPU per new reader (docs/performance.md,
   "Routing upgrades before uvicorn parses them", where the decision is recorded).
3. **`Server.main_loop` / `Server.on_tick(counter)` / `Server.should_exit`**
   (`TickerServer`): uvicorn's loop wakes ten times a second to look at `should_exit`; ours
   sleeps until the next aligned second or until `should_exit` is set. Why: an idle node
   should not wake twenty times a second (docs/performance.md, idle wake-ups).
4. **`Server.servers`, `Server.lifespan.state`, `Server.startup`, `Server.shutdown`**
   (`TickerServer`): between closing the listeners and uvicorn's own connection shutdown,
   the runtime drains (readers told 1012 to reconnect elsewhere, /readyz 503); once started
   as its own process, the heap is frozen for the GC. Why: a rolling restart must lose no
   reader (docs/operations.md, shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # internal 2

from ticker.process import ticks
from ticker.transport import reader
from ticker.transport.sse import TickerEventStream
from ticker.transport.websocket import TickerWebSocket

if TYPE_CHECKING:
    from ticker.node.runtime import Runtime

log = logging.getLogger("ticker.http")
WS_REQUEST = b"GET /ws/"  # how a reader's upgrade request starts
SSE_REQUEST = b"GET /sse/"  # how a reader's event-stream request starts


class UvicornConstructed:
    """A reader's protocol class constructed the way uvicorn constructs a `ws=` class
    (internal 1): the runtime from the app's lifespan state, and the server's connections."""

    __slots__ = ()

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        runtime: Runtime | None = app_state.get("ticker")
        super().__init__(runtime, server_state.connections)  # type: ignore[call-arg]


class UvicornWebSocket(UvicornConstructed, TickerWebSocket):
    """`TickerWebSocket`, uvicorn's `ws=` class."""

    __slots__ = ()


class UvicornEventStream(UvicornConstructed, TickerEventStream):
    """`TickerEventStream`, handed its connection by `TickerHttp`."""

    __slots__ = ()


class SilentPeers:
    """Connections that have not sent a byte yet, closed after `reader.HANDSHAKE_TIMEOUT`.

    One sweep a second (on the aligned tick, ticker.process.ticks) for all of them, armed only while
    there are any, instead of a timer per connection: arming and cancelling a libuv timer
    for every new reader was a measurable part of the connect path (docs/performance.md).
    A silent peer is therefore closed between 10 and 11 s after it connected.
    """

    def __init__(self) -> None:
        self.since: dict[TickerHttp, float] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # where the sweep is armed

    def add(self, peer: TickerHttp) -> None:
        loop = self.loop
        # A server process has one loop, running while peers connect; peers of a loop that
        # has stopped (a test's, or a worker's before a fork) are gone with it. Not asked
        # for the running loop each time: in Python 3.11 that is a getpid() system call.
        if loop is None or not loop.is_running():
            loop = self.loop = asyncio.get_running_loop()
            self.since.clear()
            loop.call_later(ticks.until_next(1.0, loop.time()), self.sweep, loop)
        self.since[peer] = loop.time()

    def discard(self, peer: TickerHttp) -> None:
        self.since.pop(peer, None)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        limit = reader.HANDSHAKE_TIMEOUT
        for peer in [p for p, since in self.since.items() if now - since >= limit]:
            del self.since[peer]
            peer.silent()
        if self.since:
            loop.call_later(ticks.until_next(1.0, loop.time()), self.sweep, loop)
        else:
            self.loop = None


silent_peers = SilentPeers()


class TickerHttp(UvicornWebSocket):
    """uvicorn's `http=` protocol class: a connection's first bytes choose its protocol.

    A request that starts `GET /ws/` and has an `Upgrade` header is a reader's websocket, and
    this object, a `TickerWebSocket`, is that websocket from its first byte: no second
    protocol object and no `transport.set_protocol`, which in uvloop stops and restarts
    reading (two epoll changes for every new reader). A request that starts `GET /sse/` is
    handed to the SSE stream's protocol (`UvicornEventStream`). Everything else, including
    a request whose first segment is too short to tell, is handed to uvicorn's own
    `HttpToolsProtocol`, created and fed exactly as uvicorn would have (internals 1 and 2);
    with websockets off (`ws="none"`) every websocket upgrade is.
    """

    __slots__ = ("app_state", "config", "routed", "server_state")

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        # UvicornConstructed's, one call shorter: every connection comes through here.
        TickerWebSocket.__init__(self, app_state.get("ticker"), server_state.connections)
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.routed = False  # its first bytes have chosen (or it was closed as silent)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # In the server's connections from the start: uvicorn's shutdown reaches silent
        # peers. A reader's buffer limits wait until it is one (another protocol may get
        # the connection).
        self._attach(transport)
        # A peer that connects and says nothing is closed (uvicorn's keep-alive timeout
        # only starts once a protocol of its own has the connection).
        silent_peers.add(self)

    def silent(self) -> None:
        if not self.routed and self.transport is not None:
            self.routed = True
            self.transport.close()

    def _request(self, data: bytes) -> None:
        # Until the upgrade, TickerWebSocket.data_received gives every byte here: the first
        # bytes choose the protocol; a websocket's next ones (the rest of a request that
        # came in pieces) go on to the websocket's own `_request`.
        if self.routed:
            super()._request(data)
            return
        transport = self.transport
        if transport is None:
            return
        self.routed = True
        silent_peers.since.pop(self, None)
        protocol: asyncio.Protocol
        if self.config.ws_protocol_class is not None and data.startswith(WS_REQUEST) \
                and b"\nupgrade:" in data.lower():
            self._reader_buffers()
            super()._request(data)
            return
        if data.startswith(SSE_REQUEST):
            protocol = UvicornEventStream(config=self.config, server_state=self.server_state,
                                          app_state=self.app_state)
        else:
            protocol = HttpToolsProtocol(config=self.config, server_state=self.server_state,
                                         app_state=self.app_state)
        # Handed over: the connection is the other protocol's from now on.
        self.closed = True
        self.transport = None
        self.connections.discard(self)
        # Switched first: a callback the first bytes cause (pause_writing) reaches the new one.
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        try:
            protocol.data_received(data)
        except Exception:  # what uvloop does when a protocol's data_received raises
            log.exception("%s failed on a request's first bytes; closing the connection",
                          type(protocol).__name__)
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        silent_peers.discard(self)
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """uvicorn is stopping: a peer that never sent a byte is closed; a reader is told to
        reconnect elsewhere (`TickerWebSocket.shutdown`)."""
        if self.routed:
            super().shutdown()
        elif self.transport is not None:
            self.routed = True
            self.transport.close()


def set_client_timeout(sock: socket.socket, seconds: float) -> None:
    """`TCP_USER_TIMEOUT` on a listening socket, which every connection it accepts inherits
    (Linux copies the listener's TCP options into each accepted socket, at no cost per
    connect): data a reader has not acknowledged after `seconds` makes the kernel drop the
    connection. That is how a reader that vanished without a FIN or a reset is found when it
    has no pings to miss (an SSE stream, whose heartbeats then go unacknowledged; a websocket
    set aside as slow). 0 leaves the kernel's own limit (its retransmissions, about 15 min)."""
    if seconds > 0 and sock.family in (socket.AF_INET, socket.AF_INET6) \
            and hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(seconds * 1000))


class TickerServer(uvicorn.Server):
    """uvicorn's server, with the drain step between closing the listeners and uvicorn's own
    connection shutdown, an idle main loop, the heap frozen once started when it owns the
    process (internals 3 and 4), and `TICKER_CLIENT_TIMEOUT` on its listening sockets."""

    owns_process = False
    _should_exit = False
    _exit_wake: asyncio.Event | None = None
    _exit_loop: asyncio.AbstractEventLoop | None = None

    def __init__(self, config: uvicorn.Config, *, client_timeout: float) -> None:
        super().__init__(config)
        self.client_timeout = client_timeout

    # uvicorn's main loop wakes ten times a second to look at `should_exit` (a signal
    # handler or a test sets it); ours sleeps until the next aligned second (the Date header
    # is refreshed once a second) or until `should_exit` is set.
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
        """`ticker serve` and each worker: this server is the process (tests embed it in
        their own event loop with `serve()` instead)."""
        self.owns_process = True
        super().run(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        for sock in sockets or ():  # a worker's: set before it listens
            set_client_timeout(sock, self.client_timeout)
        await super().startup(sockets)
        for server in self.servers:  # uvicorn's own from host and port: set as it starts
            for sock in server.sockets:
                set_client_timeout(sock, self.client_timeout)
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
