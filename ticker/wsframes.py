"""The websocket wire format on the server side (RFC 6455), sans I/O and small.

The hub writes pre-encoded frames straight to sockets (ticker.protocol.frame); this module
does the rest: the opening handshake (`handshake`) and reading what clients send
(`FrameReader`). Both are pure: bytes in, values out. They replace the general-purpose
`websockets.ServerProtocol` on the hot connect path, which cost about half of the server's
CPU per new connection and ~2 KiB per idle connection (docs/performance.md); the accept key
still comes from `websockets.utils.accept_key`.

Readers send almost nothing, so the reader is strict and tiny: client frames must be masked,
messages are capped (1 KiB by default), fragmented messages are reassembled within the cap,
text must be UTF-8, control frames must be short and unfragmented.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Final

from websockets.utils import accept_key

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

MAX_REQUEST: Final = 8192


class HandshakeError(Exception):
    """The request cannot be upgraded: answer `status` with `text` (and extra headers)."""

    def __init__(self, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers

    def response(self) -> bytes:
        reason = {400: "Bad Request", 403: "Forbidden", 404: "Not Found",
                  426: "Upgrade Required", 429: "Too Many Requests",
                  503: "Service Unavailable"}.get(self.status, "Error")
        body = (self.text + "\n").encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers)
        return (f"HTTP/1.1 {self.status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
                ).encode() + body


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A valid upgrade request: its target and the headers we use (names lower-cased)."""

    path: str
    query: str
    host: str | None
    origin: str | None
    forwarded_for: str | None
    key: str

    def accept(self) -> bytes:
        """The 101 response. No extension or subprotocol is ever negotiated."""
        return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_key(self.key).encode() + b"\r\n\r\n")


def handshake(request: bytes) -> Upgrade:
    """Parse and check an HTTP/1.1 upgrade request (RFC 6455 §4.2.1); raise HandshakeError."""
    if len(request) > MAX_REQUEST:
        raise HandshakeError(400, "Request headers too large.")
    try:
        text = request.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise HandshakeError(400, "Bad request.") from None
    head, _, _ = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "GET" or parts[2] != "HTTP/1.1":
        raise HandshakeError(400, "A websocket upgrade is a GET over HTTP/1.1.")
    target = parts[1]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError(400, "Malformed header line.")
        name = name.strip().lower()
        value = value.strip()
        # Repeated headers are joined, as HTTP allows for list-valued ones.
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "websocket" not in headers.get("upgrade", "").lower():
        raise HandshakeError(426, "Upgrade: websocket is required.",
                             (("Upgrade", "websocket"),))
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if "upgrade" not in tokens:
        raise HandshakeError(400, "Connection: Upgrade is required.")
    if headers.get("sec-websocket-version") != "13":
        raise HandshakeError(426, "Only websocket version 13 is supported.",
                             (("Sec-WebSocket-Version", "13"),))
    key = headers.get("sec-websocket-key", "")
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:
        raise HandshakeError(400, "Sec-WebSocket-Key must be 16 bytes in base64.")
    path, _, query = target.partition("?")
    return Upgrade(path=path, query=query, host=headers.get("host"),
                   origin=headers.get("origin"), forwarded_for=headers.get("x-forwarded-for"),
                   key=key)


class ProtocolError(Exception):
    """The client broke the protocol: close with `code` (1002, 1003, 1007, 1009)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def unmask(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


class FrameReader:
    """Incremental parser of client frames. `feed(data)` returns complete messages.

    A message is `(opcode, payload)`: OP_TEXT (UTF-8 checked), OP_BINARY, OP_CLOSE, OP_PING,
    OP_PONG. Raises ProtocolError on anything RFC 6455 forbids or over `max_size`.
    """

    __slots__ = ("buffer", "first", "fragments", "max_size")

    def __init__(self, max_size: int = 1024) -> None:
        self.max_size = max_size
        self.buffer = b""
        self.fragments: list[bytes] | None = None  # a fragmented message in progress
        self.first = OP_TEXT  # the opcode of that message

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buffer + data if self.buffer else data
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b0 & 0x70:
                raise ProtocolError(1002, "reserved bits set (no extension was negotiated)")
            if not b1 & 0x80:
                raise ProtocolError(1002, "client frames must be masked")
            opcode = b0 & 0x0F
            fin = bool(b0 & 0x80)
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                (n,) = struct.unpack_from("!H", buf, pos + 2)
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                (n,) = struct.unpack_from("!Q", buf, pos + 2)
                head = 10
            if opcode >= 0x8:
                if n > 125 or not fin:
                    raise ProtocolError(1002, "control frames must be short and whole")
            elif n > self.max_size:
                raise ProtocolError(1009, f"messages are limited to {self.max_size} bytes")
            if end - pos < head + 4 + n:
                break
            mask = buf[pos + head:pos + head + 4]
            payload = unmask(buf[pos + head + 4:pos + head + 4 + n], mask)
            pos += head + 4 + n
            self._message(opcode, fin, payload, out)
        self.buffer = buf[pos:] if pos < end else b""
        if len(self.buffer) > self.max_size + 14:
            raise ProtocolError(1009, f"messages are limited to {self.max_size} bytes")
        return out

    def _message(self, opcode: int, fin: bool, payload: bytes,
                 out: list[tuple[int, bytes]]) -> None:
        if opcode >= 0x8:
            if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                raise ProtocolError(1002, f"unknown control opcode {opcode:#x}")
            out.append((opcode, payload))
            return
        if opcode == OP_CONT:
            if self.fragments is None:
                raise ProtocolError(1002, "continuation without a message")
            self.fragments.append(payload)
            if sum(map(len, self.fragments)) > self.max_size:
                raise ProtocolError(1009, f"messages are limited to {self.max_size} bytes")
            if not fin:
                return
            whole = b"".join(self.fragments)
            opcode = self.first
            self.fragments = None
        elif opcode in (OP_TEXT, OP_BINARY):
            if self.fragments is not None:
                raise ProtocolError(1002, "a new message began inside a fragmented one")
            if not fin:
                self.fragments = [payload]
                self.first = opcode
                return
            whole = payload
        else:
            raise ProtocolError(1002, f"unknown opcode {opcode:#x}")
        if opcode == OP_TEXT:
            try:
                whole.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(1007, "text frames must be UTF-8") from None
        out.append((opcode, whole))


def close_code(payload: bytes) -> int | None:
    """The code of a close frame's payload, None when it has none."""
    if len(payload) >= 2:
        code: int = struct.unpack("!H", payload[:2])[0]
        return code
    return None
