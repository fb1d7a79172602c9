"""The websocket endpoint `/ws/{channel}`: one reader's connection, an `asyncio.Protocol`.

The protocol work is the `websockets` package's sans-I/O layer (`websockets.server.
ServerProtocol`), driven from here the way its documentation describes:

- **The opening handshake.** The request head is parsed by httptools (uvicorn's HTTP parser)
  into the library's `Request`, and `ServerProtocol.process_request` checks it against RFC
  6455 section 4.2.1 (method, protocol, `Upgrade`, `Connection`, the key, the WebSocket
  version) and computes the accept key; a request it refuses gets the library's own answer
  (`accept()`: 400, 405, 426 or 505 with the reason). What the library leaves to the server
  is done here: the `Host` header (RFC 6455 4.1), whether this node is serving, the path and
  channel, the origin, the per-address cap, and `Sec-WebSocket-Version: 13` on a version we do
  not speak (section 4.4). A plain request of a kind the library has accepted before on this
  process skips the parse and the library's checks, and one seen before but for its key
  is not read again (ticker.transport.upgrade: the same answer, for a fraction of the cost
  when readers arrive one by one).
- **Every inbound frame.** A `ServerProtocol` in the OPEN state parses what the client sends:
  masking, reserved bits, opcodes, fragmentation, UTF-8, the 1 KiB message cap, close codes
  and the closing handshake. It answers pings and close frames itself, and fails the
  connection with the RFC's code (1002, 1007, 1009) on a violation.
- **Closing.** Ours goes through the same object (`send_close`): the client's close frame is
  then awaited, and the TCP connection is closed by us once it arrives, as RFC 6455 section
  7.1.1 asks of a server (or after `CLOSE_GRACE` seconds).

What is not per connection stays as it was: the hub writes the same pre-encoded frame
(ticker.core.framing.frame) straight to every transport, as `websockets.broadcast()` does, so
the fan-out never goes through a protocol object.

Memory: readers send almost nothing (a pong per ping interval), so the OPEN-state protocol is
taken when the client's bytes arrive and let go again whenever everything received so far
has been parsed into whole frames and no fragmented message is open; an idle reader holds
none. One let go in that state is as good as new, so a few are kept (`SPARE`) for the next
client that speaks (docs/performance.md).

uvicorn constructs this class through ticker.ops.uvicorn_adapter, the one module that knows its
protocol-class contract.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import time
from collections.abc import Callable, MutableSet
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import parse_qs

import httptools
from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake, InvalidHeader, InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import CLOSED, OPEN
from websockets.server import ServerProtocol

from ticker.core.errors import HTTPError
from ticker.transport import resume, upgrade
from ticker.transport.reader import HeadTooLarge, ReaderConnection

if TYPE_CHECKING:
    from ticker.node.runtime import Runtime

log = logging.getLogger("ticker.ws")
# The library logs every closed connection at INFO and, when DEBUG is on, every frame: one
# logger for all connections, quiet unless an operator asks for it.
protocol_log = logging.getLogger("ticker.ws.protocol")
protocol_log.setLevel(logging.WARNING)

MAX_INBOUND: Final = 1024  # bytes per client message: readers send nothing but tiny control
INBOUND_WINDOW: Final = 10.0  # seconds
INBOUND_LIMIT: Final = 50  # client frames per window before the connection is closed (1008)
CLOSE_GRACE: Final = 5.0  # seconds a closing peer gets to answer our close frame


utf8_decoder = codecs.getincrementaldecoder("utf-8")
# The handshake checks need no state of a connection: one instance does them for all, so a
# new connection costs no protocol object until the client sends frames (module docstring).
VALIDATOR: Final = ServerProtocol(logger=protocol_log)
# OPEN-state protocols between frames, to reuse: every reader answers a ping each interval,
# and building a protocol for each pong cost more than parsing the pong (docs/performance.md).
SPARE: list[ServerProtocol] = []
SPARE_MAX: Final = 64
SWITCHING: Final = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: ")



def wire_size(frame: Frame) -> int:
    """How many bytes a client frame with this payload takes on the wire (RFC 6455 5.2).

    Client frames are masked (4 bytes of key) and no extension is ever negotiated, so the
    payload is what was sent. A client that encodes a length in more bytes than needed makes
    its frames look bigger than this, which only keeps its protocol object a little longer.
    """
    n = len(frame.data)
    return 6 + n + (0 if n < 126 else 2 if n < 65536 else 8)


def short_reason(reason: str) -> str:
    """A close reason that fits a control frame (125 bytes with the code), cut without
    splitting a character: a peer fails the connection on invalid UTF-8 (RFC 6455 5.5.1)."""
    return reason.encode()[:120].decode("utf-8", "ignore")


class RequestHead:
    """What httptools reports of one request's head, gathered for `parse_request`."""

    __slots__ = ("headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers = Headers()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1")] = value.decode("latin-1")


def parse_request(data: bytes) -> Request:
    """A complete request head, parsed by httptools (uvicorn's HTTP parser), as the websockets
    library's `Request` for its handshake checks. Raises ValueError saying what is wrong.

    Why not the library's own parser: it is a generator over a stream reader, which for a whole
    head in hand costs several times as much (docs/performance.md, the connect path).
    """
    head = RequestHead()
    parser = httptools.HttpRequestParser(head)
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        pass  # an upgrade: httptools stops at the end of the head, which is all there is
    except httptools.HttpParserError as exc:
        raise ValueError(f"not a valid HTTP/1.1 request ({exc})") from None
    headers = head.headers
    # get_all, not `in`: a Headers lookup of a missing name raises and catches a KeyError.
    lengths = headers.get_all("Content-Length")
    if headers.get_all("Transfer-Encoding") or (lengths and set(lengths) != {"0"}):
        raise ValueError("a reader's request has no body")
    try:
        path = head.url.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("the request target must be ASCII (percent-encode the rest)") from None
    method = parser.get_method().decode("ascii", "replace")
    return Request(path, headers, method, f"HTTP/{parser.get_http_version()}")


class Refusal(Exception):
    """An upgrade this server will not accept: answered with `status` and `text`."""

    def __init__(self, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers


class TickerWebSocket(ReaderConnection):
    """One reader's websocket: the upgrade request arrives as the connection's first bytes."""

    __slots__ = ("awaiting_pong", "conn", "cursor", "decoder", "fragmented", "inbound",
                 "inbound_since", "unparsed", "upgraded")

    sse = False  # the hub frames our messages as websocket frames

    def __init__(self, runtime: Runtime | None, connections: MutableSet[Any]) -> None:
        super().__init__(runtime, connections)
        self.upgraded = False  # the 101 was sent
        self.conn: ServerProtocol | None = None  # the OPEN-state protocol, while it has work
        self.unparsed = 0  # bytes given to `conn` that are not yet in a whole frame
        self.fragmented = False  # a fragmented message is open in `conn`
        self.decoder: codecs.IncrementalDecoder | None = None  # for a fragmented text message
        self.awaiting_pong = False
        self.cursor: str | None = None
        self.inbound = 0
        self.inbound_since = 0.0

    # -- asyncio.Protocol ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            if self.upgraded:
                self._frames(data)
            elif not self.closed:
                self._request(data)
        except Exception:  # one connection's bug must not leave it half-open
            log.exception("websocket error; closing the connection")
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn = None
        super().connection_lost(exc)

    # -- what the server and the hub call ------------------------------------------------

    def shutdown(self) -> None:
        """The server is stopping: close with 1012 so the client resumes on another node."""
        self.drop(1012, "service restart: reconnect with your cursor")

    def drop(self, code: int, reason: str) -> None:
        """Leave the hub and close with `code`. A stuck peer is aborted: it would never read
        our close frame (1011 keepalive timeout, 1013 too slow, or a full buffer)."""
        if self.closed or self.transport is None:
            return
        if code in (1011, 1013) or self.blocked_since or not self.upgraded:
            self.abort()
            return
        self.closed = True
        self._leave()
        conn = self._protocol()
        # InvalidState: the client's close crossed ours, and the library has answered it.
        with contextlib.suppress(InvalidState):
            conn.send_close(code, short_reason(reason))
        self._flush(conn)

    # -- the opening handshake -------------------------------------------------------------

    def _request(self, data: bytes) -> None:
        """Gather the upgrade request (it may arrive in pieces), then answer it."""
        try:
            whole = self._whole_head(data)
        except HeadTooLarge:
            self._refuse(Refusal(431, "Request headers too large."))
            return
        if whole is None:
            return
        head, rest = whole
        try:
            self._upgrade(head)
        except Refusal as refusal:
            self._refuse(refusal)
            return
        if rest and not self.closed:
            self._frames(rest)  # frames the client sent right behind its request

    def _upgrade(self, head: bytes) -> None:
        """Answer the upgrade request in `head`: from memory when it was answered before but
        for its key and request ID, the quick way when the library has accepted its kind
        before (ticker.transport.upgrade), else the library's way."""
        parts = upgrade.cut(head)  # cut once: looked up, then kept if it is read below
        known = None if parts is None else upgrade.known_head(parts)
        if known is not None:
            self._admit(self._serving(), known[0].target, known[0].get_all, known[1])
            return
        read = upgrade.read_plain(head)
        accept = None if read is None else upgrade.known_accept(read)
        if read is not None and accept is not None:
            if parts is not None:
                upgrade.remember_head(parts[0], read)
            self._admit(self._serving(), read.target, read.get_all, accept)
            return
        try:
            request = parse_request(head)
        except ValueError as exc:
            raise Refusal(400, f"Failed to open a WebSocket connection: {exc}.") from None
        runtime = self._serving()
        try:
            # RFC 6455 4.2.1: method, protocol, Upgrade, Connection, the key, the version.
            accept_header, _, _ = VALIDATOR.process_request(request)
        except InvalidHandshake as exc:
            if isinstance(exc, InvalidHeader) and exc.name == "Sec-WebSocket-Version":
                # RFC 6455 4.4: a version we do not speak is answered with the one we do.
                raise Refusal(426, f"Failed to open a WebSocket connection: {exc}.",
                              (("Sec-WebSocket-Version", "13"),)) from None
            self._answer(VALIDATOR.accept(request))  # the library's status and words
            return
        upgrade.remember(request)
        self._admit(runtime, request.path, request.headers.get_all, accept_header.encode())

    def _serving(self) -> Runtime:
        """The runtime, if this node is serving; else Refusal (503)."""
        runtime = self.runtime
        if runtime is None or not runtime.started or runtime.draining:
            raise Refusal(503, "Not serving: try again in a moment.", (("Retry-After", "1"),))
        return runtime

    def _admit(self, runtime: Runtime, target: str, get_all: Callable[[str], list[str]],
               accept: bytes) -> None:
        """What the library leaves to the server (module docstring), then the 101 and the
        first message in one write. Raises Refusal."""
        hosts, origins = get_all("Host"), get_all("Origin")
        if len(hosts) != 1 or not hosts[0]:
            raise Refusal(400, "One Host header is required (RFC 6455 4.1).")
        if len(origins) > 1:
            raise Refusal(400, "Repeated header: Origin.")
        host, origin = hosts[0], origins[0] if origins else None
        path, _, query = target.partition("?")
        if not path.startswith("/ws/"):
            raise Refusal(404, "No websocket here.")
        channel = runtime.hub.channel(path[4:])
        if channel is None:
            raise Refusal(404, "No such channel.")
        if not runtime.origin_allowed(origin, host):
            log.info("websocket origin refused: %s", origin)
            raise Refusal(403, "Origin not allowed.")
        try:
            values = parse_qs(query).get("cursor") if query else None
            cursor = resume.check_cursor(values[0] if values else None, "cursor")
        except HTTPError as exc:
            raise Refusal(400, f"Failed to open a WebSocket connection: {exc.message}.") from None
        assert self.transport is not None
        peer = self.transport.get_extra_info("peername")
        forwarded = ", ".join(get_all("X-Forwarded-For")) or None
        address = str(peer[0]) if peer else "unknown"
        if forwarded is not None:  # from a trusted proxy, the client it names
            address = runtime.proxies.client(address, forwarded)
        if not runtime.ws_cap.admit(address):
            raise Refusal(429, "Too many connections from your address.",
                          (("Retry-After", "10"),))
        self.address = address
        self.cursor = cursor
        self.upgraded = True
        self.channel = channel
        runtime.connections_changed(channel.info.name, +1)
        resume.subscribe(channel, self, cursor, self._gone, SWITCHING + accept + b"\r\n\r\n")

    def _gone(self) -> bool:
        """The reader left while waiting for this node to catch up with its cursor (a
        websocket's channel never changes: it is None once the reader has left)."""
        return self.closed or self.channel is None

    def _refuse(self, refusal: Refusal) -> None:
        response = VALIDATOR.reject(refusal.status, refusal.text + "\n")
        for name, value in refusal.headers:
            response.headers[name] = value
        self._answer(response)

    def _answer(self, response: Response) -> None:
        """An HTTP error instead of the upgrade; the connection ends with it."""
        assert self.transport is not None
        self.closed = True
        self._leave()
        response.headers["Cache-Control"] = "no-store"
        self.transport.write(response.serialize())
        self.transport.close()

    # -- frames from the client ------------------------------------------------------------

    def _protocol(self) -> ServerProtocol:
        conn = self.conn
        if conn is None:
            conn = self.conn = SPARE.pop() if SPARE else ServerProtocol(
                state=OPEN, max_size=MAX_INBOUND, logger=protocol_log)
            self.unparsed = 0
        return conn

    def _frames(self, data: bytes) -> None:
        conn = self._protocol()
        conn.receive_data(data)
        self.unparsed += len(data)
        frames = cast(list[Frame], conn.events_received())
        if frames and not self.closed:
            now = time.monotonic()
            if now - self.inbound_since > INBOUND_WINDOW:
                self.inbound_since = now
                self.inbound = 0
            self.inbound += len(frames)
        for frame in frames:
            self.unparsed -= wire_size(frame)
            if self.closed:
                continue  # after a close, what the client sends is discarded (RFC 6455 1.4)
            opcode = frame.opcode
            if opcode is Opcode.PONG:
                self.awaiting_pong = False
            elif opcode is Opcode.TEXT or opcode is Opcode.CONT:
                # A tiny optional control channel: nothing is answered, but text must be
                # UTF-8, which the sans-I/O layer leaves to its user (RFC 6455 8.1).
                if not self._utf8(frame):
                    conn.fail(1007, "text must be UTF-8")
                    break
            elif opcode is Opcode.BINARY:
                self.fragmented = not frame.fin
                self.decoder = None
                self.drop(1003, "binary messages are not accepted")
            elif opcode is Opcode.CLOSE:
                self.closed = True  # the library has queued its answer (RFC 6455 5.5.1)
                self._leave()
        if not self.closed and self.inbound > INBOUND_LIMIT:
            self.drop(1008, "too many messages")
        if conn.state is not OPEN:
            self.closed = True
            self._leave()
        self._flush(conn, self._close_during_fragment(conn))
        if conn.state is OPEN and not self.unparsed and not self.fragmented:
            # Between frames: nothing to remember (module docstring). Every byte it was given
            # is in a frame it returned and what it had to send is sent, so it is as good as
            # new for the next connection whose client speaks.
            self.conn = None
            if len(SPARE) < SPARE_MAX:
                SPARE.append(conn)

    def _utf8(self, frame: Frame) -> bool:
        """Whether a text frame (or the continuation of one) is UTF-8 so far. Checked as it
        comes, so a message goes wrong at its first bad byte, not at its end."""
        if frame.opcode is Opcode.TEXT:
            self.fragmented = not frame.fin
            self.decoder = utf8_decoder() if self.fragmented else None
            if self.decoder is None:
                try:
                    bytes(frame.data).decode()
                except UnicodeDecodeError:
                    return False
                return True
        elif self.decoder is None:  # the continuation of a binary message
            self.fragmented = not frame.fin
            return True
        self.fragmented = not frame.fin
        try:
            self.decoder.decode(frame.data, final=frame.fin)
        except UnicodeDecodeError:
            return False
        finally:
            if frame.fin:
                self.decoder = None
        return True

    def _close_during_fragment(self, conn: ServerProtocol) -> bytes | None:
        """The answer to a valid close frame that arrived inside a fragmented message.

        RFC 6455 5.4 lets control frames come between fragments, and a close simply ends the
        connection (Autobahn|Testsuite case 7.1.5: "clean close with normal code"). The
        library instead fails the connection with 1002 "incomplete fragmented message"; the
        one place where we answer differently: the client's close is echoed, as for any
        other close (section 5.5.1).
        """
        received, sent = conn.close_rcvd, conn.close_sent
        if not self.fragmented or received is None or sent is None or sent.code != 1002 \
                or received.code == 1002:
            return None
        payload = b"" if received.code == 1005 else received.serialize()  # 1005: it had none
        return Frame(Opcode.CLOSE, payload).serialize(mask=False)

    def _flush(self, conn: ServerProtocol, close: bytes | None = None) -> None:
        """Write what the library has to send (with `close` instead of its close frame, if
        given); its end-of-stream marker closes the TCP connection (a server closes first,
        RFC 6455 7.1.1)."""
        transport = self.transport
        if transport is None:
            return
        for data in conn.data_to_send():
            if close is not None and data[:1] == b"\x88":
                data = close
            if data:
                # A reader that does not read gets no pongs; a close frame still goes out.
                if not self.blocked_since or self.closed:
                    transport.write(data)
            else:
                self.conn = None
                transport.close()
                return
        if conn.close_expected() and conn.state is not CLOSED and self.deadline is None:
            # We sent a close frame and wait for the client's: not forever.
            self.deadline = asyncio.get_running_loop().call_later(CLOSE_GRACE, transport.abort)
