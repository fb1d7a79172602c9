"""RFC 6455 conformance of `/ws/{channel}`: Autobahn|Testsuite cases, ported, on a real socket.

Autobahn|Testsuite (autobahntestsuite 25.10.1, `autobahntestsuite/case/`) needs Python 2.7, so
its fuzzing-client cases are ported here: the same frames, sent in the same chops (one write,
one write per frame for its `sync=True`, or n-octet writes for its `chopsize=n`), against a
real uvicorn over a real socket. Test ids are the case numbers.

This server is a broadcast ticker: it never echoes, accepts small UTF-8 text from readers and
refuses binary (1003). So an Autobahn "the message is echoed" becomes "the connection is still
open": a ping is answered with its payload, and a close is answered with a close. Autobahn's
"echo of the first message, then the connection is failed" (3.2, 4.1.3, ...) becomes "failed,
and the ping sent after the bad frame gets no pong".

Ported:
  1.1.1-1.1.5 (text up to 128 bytes: 7- and 16-bit lengths), 1.1.6-1.1.8 (64 KiB: over the
  1 KiB inbound limit, 1009), 1.2.1-1.2.5 (binary: 1003); 2.1-2.11 (pings and pongs);
  3.1-3.7 (RSV bits); 4.1.1-4.2.5 (reserved opcodes); 5.1-5.20 (fragmentation; 5.19/5.20
  wait 0.2 s instead of 1 s); 6.1.x-6.4.x and a representative set of 6.5-6.23 (UTF-8);
  7.1.1-7.1.5, 7.3.1-7.3.6, 7.5.1, 7.7.1-7.7.13, 7.9.1-7.9.9, 7.13.1-7.13.2 (closing);
  9.1.1 and 9.3.1 cut to the 1 KiB limit (1009). Extras, with ids of their own: the limit at
  exactly 1024/1025 bytes, close codes 1012-1014 (valid per IANA) and 1015 (invalid on the
  wire), unmasked client frames (RFC 6455 5.1), and the handshake (RFC 6455 4.2.1/4.2.2).
Left out:
  1.1.x/9.x echo of large messages and 9.2.x/9.4.x-9.6.x (the server never echoes, caps
  messages at 1 KiB and refuses binary of any size: one case of each is ported); 7.1.6
  (informational: a 256 KiB message, over the limit anyway); the rest of 6.5-6.23 (about 150
  payloads through the same check); 10.1.1 (auto-fragmentation of echoed messages);
  12.x/13.x (permessage-deflate: never negotiated, which the handshake test checks).

Close codes (RFC 6455 7.4): a valid code is answered with a close carrying that code or 1000
(RFC 6455 5.5.1: "typically echos"; the websockets library echoes code and reason); no code is
answered with an empty close or 1000; an invalid code, a 1-byte payload or an over-long
control frame with 1002; a reason that is not UTF-8 with 1007. The server then closes TCP.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import TIMEOUT, RedisServer, Server, make_settings, running_server
from tests.e2e.rawws import RawClient

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
LIMIT = 1024  # the server's inbound message limit (ticker.transport.websocket.MAX_INBOUND)
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- client frames ----------------------------------------------------------------------


@dataclass(frozen=True)
class F:
    """One client frame; masked with a fresh random key each time it is sent."""

    opcode: int
    payload: bytes = b""
    fin: bool = True
    rsv: int = 0  # RSV1-RSV3 as a 3-bit number, as in Autobahn's sendFrame
    mask: bool = True

    def wire(self) -> bytes:
        n = len(self.payload)
        head = bytes([(0x80 if self.fin else 0) | (self.rsv & 7) << 4 | (self.opcode & 0x0F)])
        bit = 0x80 if self.mask else 0
        if n < 126:
            head += bytes([bit | n])
        elif n < 1 << 16:
            head += bytes([bit | 126]) + struct.pack("!H", n)
        else:
            head += bytes([bit | 127]) + struct.pack("!Q", n)
        if not self.mask:
            return head + self.payload
        key = os.urandom(4)
        stream = (key * (n // 4 + 1))[:n]
        masked = (int.from_bytes(self.payload, "big") ^ int.from_bytes(stream, "big"))
        return head + key + masked.to_bytes(n, "big")


def text(payload: bytes, fin: bool = True) -> F:
    return F(OP_TEXT, payload, fin)


def cont(payload: bytes, fin: bool = True) -> F:
    return F(OP_CONT, payload, fin)


def ping(payload: bytes = b"") -> F:
    return F(OP_PING, payload)


def pong(payload: bytes = b"") -> F:
    return F(OP_PONG, payload)


def close(code: int | None = None, reason: bytes = b"") -> F:
    return F(OP_CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


def fragments(payload: bytes, size: int) -> list[F]:
    """A text message in frames of `size` bytes (Autobahn's fragmentSize)."""
    parts = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
    return [F(OP_TEXT if i == 0 else OP_CONT, p, i == len(parts) - 1)
            for i, p in enumerate(parts)]


# -- talking to the server ----------------------------------------------------------------


@pytest.fixture(scope="module")
async def rfc_server(redis_server: RedisServer) -> AsyncIterator[Server]:
    """One real server for the module: every case runs on a connection of its own."""
    prefix = "t" + uuid.uuid4().hex[:10]
    async with running_server(make_settings(redis_server.url, prefix)) as handle:
        yield handle


@pytest.fixture
async def client(rfc_server: Server) -> AsyncIterator[RawClient]:
    """An upgraded connection to /ws/en whose snapshot was read."""
    raw = await asyncio.wait_for(
        RawClient.connect(rfc_server.port, "/ws/en", rcvbuf=1 << 20), TIMEOUT)
    raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # chops stay chops
    assert (await asyncio.wait_for(raw.message(), TIMEOUT))["type"] == "snapshot"
    yield raw
    raw.close()


async def send(client: RawClient, frames: Sequence[F], chop: int | None = None) -> None:
    """Send `frames`: in one write (None), one write per frame (0), or `chop`-octet writes.

    A server that already failed the connection may reset it: that is not an error here.
    """
    data = [f.wire() for f in frames]
    if chop is None:
        chunks, pause = [b"".join(data)], 0.0
    elif chop == 0:
        chunks, pause = data, 0.01
    else:
        whole = b"".join(data)
        chunks, pause = [whole[i:i + chop] for i in range(0, len(whole), chop)], 0.001
    try:
        for i, chunk in enumerate(chunks):
            if i:
                await asyncio.sleep(pause)
            await client.loop.sock_sendall(client.sock, chunk)
    except ConnectionError:
        pass


async def take(client: RawClient, n: int) -> bytes:
    while len(client.buffer) < n:
        chunk = await client.loop.sock_recv(client.sock, 65536)
        if not chunk:
            raise ConnectionError(f"the server closed TCP; unread: {bytes(client.buffer)!r}")
        client.buffer += chunk
    data = bytes(client.buffer[:n])
    del client.buffer[:n]
    return data


async def next_frame(client: RawClient) -> tuple[int, bytes]:
    """The server's next frame, skipping its keepalive pings and broadcast text messages."""

    async def read() -> tuple[int, bytes]:
        while True:
            b0, b1 = await take(client, 2)
            assert not b0 & 0x70, "RSV bits in a server frame (RFC 6455 5.2)"
            assert not b1 & 0x80, "a masked server frame (RFC 6455 5.1)"
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await take(client, 2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await take(client, 8))
            opcode, payload = b0 & 0x0F, await take(client, n)
            if opcode >= 0x8:
                assert b0 & 0x80 and n <= 125, "a fragmented or long control frame (5.5)"
            if opcode not in (OP_PING, OP_TEXT):
                return opcode, payload

    return await asyncio.wait_for(read(), TIMEOUT)


async def close_answer(client: RawClient, reply: bool) -> tuple[int | None, bytes]:
    """The server's close frame as (code, reason); then the server must close TCP (7.1.1).

    Anything but a close first (a pong for a ping sent after a bad frame, say) fails. When
    the server initiated the close (`reply`), the client answers it, as Autobahn's does.
    """
    opcode, payload = await next_frame(client)
    assert opcode == OP_CLOSE, f"expected a close frame, got {opcode:#x} {payload[:60]!r}"
    assert len(payload) != 1, "a close payload of 1 byte (RFC 6455 5.5.1)"
    code = struct.unpack("!H", payload[:2])[0] if payload else None
    reason = payload[2:]
    reason.decode("utf-8")  # the server's own reason is UTF-8
    if reply:
        await send(client, [F(OP_CLOSE, payload[:2])])
    rest = bytes(client.buffer)
    client.buffer.clear()

    async def until_eof() -> None:
        nonlocal rest
        while True:
            try:
                chunk = await client.loop.sock_recv(client.sock, 65536)
            except ConnectionError:
                return
            if not chunk:
                return
            rest += chunk

    await asyncio.wait_for(until_eof(), TIMEOUT)  # TIMEOUT: the server never closed TCP
    assert rest == b"", f"the server sent {rest[:60]!r} after its close frame"
    return code, reason


async def assert_open(client: RawClient) -> None:
    """The connection still works: a ping is answered, and a close 1000 gets a close 1000."""
    probe = b"still open " + os.urandom(6).hex().encode()
    await send(client, [ping(probe)])
    assert await next_frame(client) == (OP_PONG, probe)
    await send(client, [close(1000)])
    assert (await close_answer(client, reply=False))[0] == 1000


# -- the cases ----------------------------------------------------------------------------

HELLO = b"Hello, world!"
KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"  # "κόσμε"
INVALID = KOSME + b"\xed\xa0\x80" + b"edited"  # 6.3.1, 7.5.1: a UTF-16 surrogate at byte 12
UTF8 = "Hello-µ@ßöäüàá-UTF-8!!".encode()
NOTHING = b"non-continuation payload"
FRAGS = [b"fragment%d" % i for i in range(1, 6)]


def case(cid: str, frames: Sequence[F], *rest: Any) -> Any:
    return pytest.param(list(frames), *rest, id=cid)


# Section 6.5-6.23, a representative set: (case, payload hex, valid UTF-8), unfragmented.
UTF8_CASES = [
    ("6.5.1", "68656c6c6f24776f726c64", True), ("6.5.3", "68656c6c6fe282ac776f726c64", True),
    ("6.5.4", "68656c6c6ff0a4ada2776f726c64", True), ("6.5.5", KOSME.hex(), True),
    ("6.6.1", "ce", False), ("6.6.2", "ceba", True), ("6.6.3", "cebae1", False),
    ("6.6.4", "cebae1bd", False), ("6.6.10", "cebae1bdb9cf83cebcce", False),
    ("6.7.1", "00", True), ("6.7.4", "f0908080", True), ("6.8.1", "f888808080", False),
    ("6.8.2", "fc8480808080", False), ("6.9.3", "efbfbf", True), ("6.9.4", "f48fbfbf", True),
    ("6.10.1", "f7bfbfbf", False), ("6.11.1", "ed9fbf", True), ("6.11.3", "efbfbd", True),
    ("6.11.5", "f4908080", False), ("6.12.1", "80", False), ("6.12.7", "80bf80bf80bf", False),
    ("6.12.8", bytes(range(0x80, 0xBF)).hex(), False),
    ("6.13.1", b"".join(bytes([c, 0x20]) for c in range(0xC0, 0xDF)).hex(), False),
    ("6.13.5", "fc20", False), ("6.14.1", "c0", False), ("6.14.3", "f08080", False),
    ("6.14.7", "efbf", False),
    ("6.15.1", "c0e080f08080f8808080fc80808080dfefbff7bfbffbbfbfbffdbfbfbfbf", False),
    ("6.16.1", "fe", False), ("6.16.3", "fefeffff", False), ("6.17.1", "c0af", False),
    ("6.17.3", "f08080af", False), ("6.18.1", "c1bf", False), ("6.18.2", "e09fbf", False),
    ("6.19.1", "c080", False), ("6.19.3", "f0808080", False), ("6.20.1", "eda080", False),
    ("6.20.7", "edbfbf", False), ("6.21.1", "eda080edb080", False),
    ("6.21.8", "edafbfedbfbf", False), ("6.22.1", "efbfbe", True),
    ("6.22.34", "f48fbfbf", True), ("6.23.1", "efbfb9", True), ("6.23.7", "efbfbf", True),
]

# The client does something legal: pings get their pongs (in order) and the connection stays
# open. Arguments: frames, chop.
OPEN = [
    case("1.1.1", [text(b"")], None),
    *(case(f"1.1.{i}", [text(b"*" * n)], None)
      for i, n in ((2, 125), (3, 126), (4, 127), (5, 128))),
    case("2.1", [ping()], None),
    case("2.2", [ping(HELLO)], None),
    case("2.3", [ping(b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff")], None),
    case("2.4", [ping(b"\xfe" * 125)], None),
    case("2.6", [ping(b"\xfe" * 125)], 1),
    case("2.9", [pong(b"unsolicited pong payload"), ping(b"ping payload")], None),
    case("2.10", [ping(b"payload-%d" % i) for i in range(10)], None),
    case("2.11", [ping(b"payload-%d" % i) for i in range(10)], 1),
    *(case(cid, [text(FRAGS[0], fin=False), cont(FRAGS[1])], chop)
      for cid, chop in (("5.3", None), ("5.4", 0), ("5.5", 1))),
    *(case(cid, [text(FRAGS[0], fin=False), ping(b"ping payload"), cont(FRAGS[1])], chop)
      for cid, chop in (("5.6", None), ("5.7", 0), ("5.8", 1))),
    case("6.1.1", [text(b"")], None),
    case("6.1.2", [text(b"", fin=False), cont(b"", fin=False), cont(b"")], None),
    case("6.1.3", [text(b"", fin=False), cont(b"middle frame payload", fin=False), cont(b"")],
         None),
    case("6.2.1", [text(UTF8)], None),
    case("6.2.2", [text("Hello-µ@ßöä".encode(), False), cont("üàá-UTF-8!!".encode())], None),
    case("6.2.3", fragments(UTF8, 1), None),
    case("6.2.4", fragments(KOSME, 1), None),
    *(case(cid, [text(bytes.fromhex(h))], None) for cid, h, valid in UTF8_CASES if valid),
    case("limit-1024", [text(b"*" * LIMIT)], None),
    case("limit-1024-in-fragments", fragments(b"*" * LIMIT, 256), None),
]

# The client breaks the protocol or closes: the server's close code must be one of `codes`.
# Arguments: frames, chop, codes.
P, U, D, BIG = {1002}, {1003}, {1007}, {1009}
BAD_FRAME = [
    (2, F(OP_TEXT, HELLO, rsv=2), None), (3, F(OP_TEXT, HELLO, rsv=3), 0),
    (4, F(OP_TEXT, HELLO, rsv=4), 1),
]
CLOSED = [
    *(case(f"1.1.{i}", [text(b"*" * n)], chop, BIG)
      for i, n, chop in ((6, 65535, None), (7, 65536, None), (8, 65536, 997))),
    *(case(f"1.2.{i}", [F(OP_BINARY, b"\xfe" * n)], None, U)
      for i, n in ((1, 0), (2, 125), (3, 126), (4, 127), (5, 128))),
    case("2.5", [ping(b"\xfe" * 126)], None, P),
    case("2.7", [pong(), close(1000)], None, {1000}),
    case("2.8", [pong(b"unsolicited pong payload"), close(1000)], None, {1000}),
    case("3.1", [F(OP_TEXT, HELLO, rsv=1)], None, P),
    *(case(f"3.{n}", [text(HELLO), bad, ping()], chop, P) for n, bad, chop in BAD_FRAME),
    case("3.5", [F(OP_BINARY, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", rsv=5)], None, P),
    # Autobahn's 3.6 says "Ping" but sends opcode 2 with RSV 6; ported as it is sent.
    case("3.6", [F(OP_BINARY, HELLO, rsv=6)], None, P),
    case("3.7", [F(OP_CLOSE, rsv=7)], None, P),
    *(case(f"4.{group}.1", [F(op)], None, P) for group, op in ((1, 3), (2, 11))),
    *(case(f"4.{group}.2", [F(op, b"reserved opcode payload")], None, P)
      for group, op in ((1, 4), (2, 12))),
    *(case(f"4.{group}.{i}", [text(HELLO), F(op, HELLO if i > 3 else b""), ping()], chop, P)
      for group, base in ((1, 5), (2, 13))
      for i, op, chop in ((3, base, None), (4, base + 1, None), (5, base + 2, 1))),
    case("5.1", [F(OP_PING, FRAGS[0], fin=False), cont(FRAGS[1])], None, P),
    case("5.2", [F(OP_PONG, FRAGS[0], fin=False), cont(FRAGS[1])], None, P),
    *(case(f"5.{i}", [cont(NOTHING, fin=fin), text(HELLO)], chop, P)
      for i, fin, chop in ((9, True, None), (10, True, 0), (11, True, 1), (12, False, None),
                           (13, False, 0), (14, False, 1))),
    case("5.15", [text(FRAGS[0], False), cont(FRAGS[1]), cont(FRAGS[2], False),
                  text(FRAGS[3])], None, P),
    case("5.16", [cont(FRAGS[0], False), text(FRAGS[1], False), cont(FRAGS[2])] * 2, None, P),
    case("5.17", [cont(FRAGS[0]), text(FRAGS[1], False), cont(FRAGS[2])] * 2, None, P),
    case("5.18", [text(FRAGS[0], False), text(FRAGS[1])], None, P),
    case("6.3.1", [text(INVALID)], None, D),
    case("6.3.2", fragments(INVALID, 1), None, D),
    *(case(cid, [text(bytes.fromhex(h))], None, D) for cid, h, valid in UTF8_CASES
      if not valid),
    case("7.1.1", [text(b"Hello World!"), close(1000)], None, {1000}),
    case("7.1.2", [close(1000), close()], None, {1000}),
    case("7.1.3", [close(1000), ping()], None, {1000}),
    case("7.1.4", [close(1000), text(b"Hello World!")], None, {1000}),
    case("7.1.5", [text(FRAGS[0], False), close(1000), cont(FRAGS[1])], None, {1000}),
    case("7.3.1", [close()], None, {None, 1000}),
    case("7.3.2", [F(OP_CLOSE, b"a")], None, P),
    case("7.3.3", [close(1000)], None, {1000}),
    case("7.3.4", [close(1000, b"Hello World!")], None, {1000}),
    case("7.3.5", [close(1000, b"*" * 123)], None, {1000}),
    case("7.3.6", [close(1000, b"*" * 124)], None, P),
    case("7.5.1", [close(1000, INVALID)], None, D),
    *(case(f"7.7.{i}", [close(code)], None, {code, 1000}) for i, code in enumerate(
        (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999), 1)),
    *(case(f"7.7.x-{code}", [close(code)], None, {code, 1000}) for code in (1012, 1013, 1014)),
    *(case(f"7.9.{i}", [close(code)], None, P) for i, code in enumerate(
        (0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999), 1)),
    case("7.9.x-1015", [close(1015)], None, P),
    case("7.13.1", [close(5000)], None, P),
    case("7.13.2", [close(65535)], None, P),
    case("9.1.1", [text(b"BAsd7&jh23" * 6553 + b"BAsd7&")], None, BIG),  # 64 KiB
    case("9.3.1", fragments(b"*" * (2 * LIMIT), 64), None, BIG),  # 4 MiB in 64 B, cut at 2 KiB
    case("limit-1025", [text(b"*" * (LIMIT + 1))], None, BIG),
    case("limit-1025-in-fragments", fragments(b"*" * (LIMIT + 1), 256), None, BIG),
    case("rfc-5.1-unmasked-text", [F(OP_TEXT, HELLO, mask=False)], None, P),
    case("rfc-5.1-unmasked-ping", [F(OP_PING, HELLO, mask=False)], None, P),
    case("rfc-5.1-unmasked-close", [F(OP_CLOSE, struct.pack("!H", 1000), mask=False)], None,
         P),
]


@pytest.mark.parametrize(("frames", "chop"), OPEN)
async def test_legal_frames_keep_the_connection_open(
    client: RawClient, frames: list[F], chop: int | None
) -> None:
    await send(client, frames, chop)
    for f in frames:
        if f.opcode == OP_PING:
            assert await next_frame(client) == (OP_PONG, f.payload)
    await assert_open(client)


@pytest.mark.parametrize(("frames", "chop", "codes"), CLOSED)
async def test_the_server_answers_with_the_right_close(
    client: RawClient, frames: list[F], chop: int | None, codes: set[int | None]
) -> None:
    await send(client, frames, chop)
    code, reason = await close_answer(client, reply=all(f.opcode != OP_CLOSE for f in frames))
    assert code in codes, f"close code {code} ({reason!r}), expected one of {codes}"


@pytest.mark.parametrize("chop", [None, 0], ids=["5.19", "5.20"])
async def test_case_5_19_pings_are_answered_in_the_middle_of_a_message(
    client: RawClient, chop: int | None
) -> None:
    await send(client, [text(FRAGS[0], False), cont(FRAGS[1], False), ping(b"pongme 1!")], chop)
    assert await next_frame(client) == (OP_PONG, b"pongme 1!")  # before the message ended
    await asyncio.sleep(0.2)
    await send(client, [cont(FRAGS[2], False), cont(FRAGS[3], False), ping(b"pongme 2!"),
                        cont(FRAGS[4])], chop)
    assert await next_frame(client) == (OP_PONG, b"pongme 2!")
    await assert_open(client)


@pytest.mark.parametrize(
    ("cuts", "one_frame"),
    [pytest.param((11, 15), False, id="6.4.1"), pytest.param((12, 13), False, id="6.4.2"),
     pytest.param((11, 15), True, id="6.4.3"), pytest.param((12, 13), True, id="6.4.4")],
)
async def test_case_6_4_a_message_turning_invalid_mid_way_gets_1007(
    client: RawClient, cuts: tuple[int, int], one_frame: bool
) -> None:
    # KOSME, then U+110000 (not a code point), then "edited": valid up to byte 12.
    payload = KOSME + b"\xf4\x90\x80\x80" + b"edited"
    a, b = cuts
    if one_frame:  # 6.4.3/6.4.4: three chops of one frame
        whole = text(payload).wire()
        head = len(whole) - len(payload)
        chunks = [whole[:head + a], whole[head + a:head + b], whole[head + b:]]
    else:  # 6.4.1/6.4.2: three frames; a ping after the first shows it was accepted
        chunks = [text(payload[:a], False).wire() + ping(b"A").wire(),
                  cont(payload[a:b], False).wire(), cont(payload[b:]).wire()]
    await client.loop.sock_sendall(client.sock, chunks[0])
    if not one_frame:
        assert await next_frame(client) == (OP_PONG, b"A")
    for chunk in chunks[1:]:
        await asyncio.sleep(0.1)  # Autobahn waits 1 s; fail-fast is not required
        try:
            await client.loop.sock_sendall(client.sock, chunk)
        except ConnectionError:
            break
    assert (await close_answer(client, reply=True))[0] == 1007


# -- the opening handshake (RFC 6455 4.2.1, 4.2.2) ----------------------------------------

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3's example


def accept_of(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def request(*, method: str = "GET", path: str = "/ws/en", version: str = "HTTP/1.1",
            host: str | None = "127.0.0.1", upgrade: str | None = "websocket",
            connection: str | None = "Upgrade", key: str | None = KEY,
            ws_version: str | None = "13", extra: str = "") -> bytes:
    lines = [f"{method} {path} {version}"]
    for name, value in (("Host", host), ("Upgrade", upgrade), ("Connection", connection),
                        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", ws_version)):
        if value is not None:
            lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


async def respond(port: int, raw: bytes) -> tuple[int, dict[str, str]]:
    """Send `raw` on a fresh connection: the response's status and headers (names lower)."""
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, raw)
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), TIMEOUT)
            except ConnectionError:
                chunk = b""
            assert chunk, f"the server closed without an HTTP response (after {buffer!r})"
            buffer += chunk
    lines = buffer.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    protocol, status = lines[0].split(" ")[:2]
    assert protocol.startswith("HTTP/1."), lines[0]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(status), headers


@pytest.mark.parametrize(
    "extra",
    [pytest.param("", id="4.2.2-accept"),
     pytest.param("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                  "Sec-WebSocket-Protocol: chat, superchat\r\n", id="4.2.2-no-extension")],
)
async def test_rfc_4_2_2_a_valid_upgrade_gets_101(rfc_server: Server, extra: str) -> None:
    assert accept_of(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3
    key = base64.b64encode(os.urandom(16)).decode()
    status, headers = await respond(rfc_server.port, request(key=key, extra=extra))
    assert status == 101
    assert headers["sec-websocket-accept"] == accept_of(key)
    assert headers["upgrade"].lower() == "websocket"
    assert "upgrade" in {t.strip().lower() for t in headers["connection"].split(",")}
    assert "sec-websocket-extensions" not in headers  # nothing negotiated: RSV bits stay 0
    assert "sec-websocket-protocol" not in headers


async def test_rfc_4_2_1_header_values_are_case_insensitive(rfc_server: Server) -> None:
    raw = request(upgrade="WebSocket", connection="keep-alive, upgrade")  # as Firefox sends
    assert (await respond(rfc_server.port, raw))[0] == 101


@pytest.mark.parametrize(
    ("raw", "statuses"),
    [
        pytest.param(request(host=None), {400}, id="4.2.1-missing-host"),
        pytest.param(request(method="POST"), {400, 405}, id="4.2.1-post"),
        pytest.param(request(version="HTTP/1.0"), {400, 426, 505}, id="4.2.1-http-1.0"),
        pytest.param(request(upgrade=None), {400, 426}, id="4.2.1-missing-upgrade"),
        pytest.param(request(upgrade="h2c"), {400, 426}, id="4.2.1-upgrade-not-websocket"),
        pytest.param(request(connection=None), {400, 426}, id="4.2.1-missing-connection"),
        pytest.param(request(connection="keep-alive"), {400, 426},
                     id="4.2.1-connection-without-upgrade"),
        pytest.param(request(key=None), {400}, id="4.2.1-missing-key"),
        pytest.param(request(key="not base64 at all!!!!!!="), {400}, id="4.2.1-key-not-base64"),
        pytest.param(request(key=base64.b64encode(b"x" * 15).decode()), {400},
                     id="4.2.1-key-15-bytes"),
        pytest.param(request(key=base64.b64encode(b"x" * 17).decode()), {400},
                     id="4.2.1-key-17-bytes"),
        pytest.param(request(ws_version=None), {400, 426}, id="4.2.1-missing-version"),
        pytest.param(request(path="/ws/nope"), {404}, id="unknown-channel"),
    ],
)
async def test_rfc_4_2_1_a_bad_upgrade_gets_an_http_error(
    rfc_server: Server, raw: bytes, statuses: set[int]
) -> None:
    status, headers = await respond(rfc_server.port, raw)
    assert status in statuses, f"answered {status}, expected one of {statuses}"
    if status == 405:
        assert "GET" in headers.get("allow", ""), "a 405 must say what is allowed (RFC 9110)"


@pytest.mark.parametrize("version", ["8", "12", "14"], ids=lambda v: f"4.2.2-version-{v}")
async def test_rfc_4_2_2_an_unsupported_version_names_version_13(
    rfc_server: Server, version: str
) -> None:
    status, headers = await respond(rfc_server.port, request(ws_version=version))
    assert status in (400, 426)
    # RFC 6455 4.2.2 (and 4.4): the error carries the versions the server supports.
    assert "13" in {v.strip() for v in headers.get("sec-websocket-version", "").split(",")}
