"""How a connection reaches the websocket endpoint: ticker.transport.websocket.TickerHttp.

A `GET /ws/...` upgrade skips uvicorn's HTTP parser and goes straight to TickerWebSocket;
everything else (and an upgrade whose first segment is too short to tell) goes through
uvicorn as before. Either way the reader gets the same answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import struct
from collections.abc import Callable

import httpx
import pytest
from websockets.protocol import OPEN

from tests.conftest import TIMEOUT, Server, make_settings, running_server
from tests.e2e.rawws import RawClient, client_frame
from tests.e2e.ticker_node import node
from ticker.ops import uvicorn_adapter
from ticker.transport import upgrade
from ticker.transport import websocket as wsserver
from ticker.transport.websocket import TickerWebSocket

REQUEST = (b"GET /ws/en HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
ACCEPT = b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


async def connected(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def read_until(sock: socket.socket, buffer: bytearray, n: int) -> None:
    loop = asyncio.get_running_loop()
    while len(buffer) < n:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), TIMEOUT)
        if not chunk:
            raise ConnectionError(f"closed after {bytes(buffer)!r}")
        buffer += chunk


async def response_head(sock: socket.socket, buffer: bytearray) -> bytes:
    loop = asyncio.get_running_loop()
    while b"\r\n\r\n" not in buffer:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), TIMEOUT)
        if not chunk:
            raise ConnectionError(f"closed after {bytes(buffer)!r}")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    return head


async def server_frame(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """One unfragmented server frame (the hub never fragments)."""
    await read_until(sock, buffer, 2)
    n, head = buffer[1] & 0x7F, 2
    if n == 126:
        await read_until(sock, buffer, 4)
        n, head = struct.unpack("!H", buffer[2:4])[0], 4
    await read_until(sock, buffer, head + n)
    opcode, payload = buffer[0] & 0x0F, bytes(buffer[head:head + n])
    del buffer[:head + n]
    return opcode, payload


@pytest.mark.parametrize(
    "cut",
    [
        [6],  # "GET /w": too short to tell, so uvicorn parses it and replays it to us
        [REQUEST.index(b"Connection:")],  # the Upgrade header came, the request is not whole
        [REQUEST.index(b"Upgrade:")],  # no Upgrade header yet: uvicorn's path
        [20, 60, 100, len(REQUEST) - 1],  # in many pieces
        [],  # in one piece, the common case
    ],
)
async def test_an_upgrade_in_any_number_of_pieces_is_answered(
    server: Server, cut: list[int]
) -> None:
    sock = await connected(server.port)
    loop = asyncio.get_running_loop()
    try:
        start = 0
        for end in [*cut, len(REQUEST)]:
            await loop.sock_sendall(sock, REQUEST[start:end])
            await asyncio.sleep(0.05)  # a segment of its own
            start = end
        buffer = bytearray()
        head = await response_head(sock, buffer)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert ACCEPT in head
        opcode, payload = await server_frame(sock, buffer)
        assert opcode == 0x1
        snapshot = json.loads(payload)
        assert (snapshot["type"], snapshot["channel"]) == ("snapshot", "en")
        assert server.runtime.hub.connections() == 1
    finally:
        sock.close()


async def answer(port: int, request: bytes) -> bytes:
    """The server's answer to `request` on a fresh connection: its head and what follows in
    the same segment."""
    sock = await connected(port)
    try:
        await asyncio.get_running_loop().sock_sendall(sock, request)
        buffer = bytearray()
        head = await response_head(sock, buffer)
        if head.startswith(b"HTTP/1.1 101 "):
            assert (await server_frame(sock, buffer))[0] == 0x1  # the snapshot
        else:
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await read_until(sock, buffer, length)
        return head + bytes(buffer)
    finally:
        sock.close()


async def test_a_kind_of_request_the_library_accepted_gets_the_same_answers_after(
    server: Server,
) -> None:
    # ticker.transport.upgrade: once the library has accepted a kind of request, the same
    # kind is answered without it; a key it would refuse, a kind it has not seen and a head
    # that is not plain still get the library's own answers.
    bad_key = REQUEST.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"dGhlIHNhbXBsZSBub25jZQ=")
    odd = REQUEST.replace(b"Upgrade: websocket", b"Upgrade: websocket, h2c")
    not_plain = REQUEST.replace(b"Upgrade: websocket", b"Upgrade: websocket ")
    upgrade.accepted.clear()
    upgrade.heads.clear()
    before = [await answer(server.port, r) for r in (bad_key, odd)]
    assert not upgrade.accepted and not upgrade.heads
    first = await answer(server.port, REQUEST)  # the library accepts: the kind is kept
    assert len(upgrade.accepted) == 1 and not upgrade.heads
    assert first.startswith(b"HTTP/1.1 101 ") and ACCEPT in first
    key = base64.b64encode(b"sixteen bytes ok").decode().encode()
    again = await answer(server.port, REQUEST.replace(b"dGhlIHNhbXBsZSBub25jZQ==", key))
    assert ACCEPT.split(b": ")[0] + b": " + upgrade.accept_key(key) in again
    assert len(upgrade.heads) == 1  # answered by its kind: the head is kept but for its key
    key = base64.b64encode(b"another 16 bytes").decode().encode()
    third = await answer(server.port, REQUEST.replace(b"dGhlIHNhbXBsZSBub25jZQ==", key))
    assert ACCEPT.split(b": ")[0] + b": " + upgrade.accept_key(key) in third
    after = [await answer(server.port, r) for r in (bad_key, odd)]
    assert [a.split(b"\r\n")[0] for a in after] == [b"HTTP/1.1 400 Bad Request",
                                                   b"HTTP/1.1 426 Upgrade Required"]
    strip = re.compile(rb"Date: [^\r]*\r\n")
    assert [strip.sub(b"", a) for a in after] == [strip.sub(b"", b) for b in before]
    assert (await answer(server.port, not_plain)).startswith(b"HTTP/1.1 101 ")
    assert len(upgrade.accepted) == 2  # not plain, but the library took it: another kind
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while server.runtime.hub.connections():  # every reader closed its end: all let go
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)


async def test_a_protocol_failing_on_the_first_bytes_handed_to_it_closes_the_connection(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    # The hand-over runs inside TickerHttp's own data_received: a failure of the protocol
    # it handed the connection to is logged and the connection closed, as uvloop would.
    def broken(self: object, data: bytes) -> None:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(uvicorn_adapter.UvicornEventStream, "data_received", broken)
    sock = await connected(server.port)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, b"GET /sse/en HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            rest = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)
        except ConnectionResetError:
            rest = b""
        assert rest == b""  # closed
    finally:
        sock.close()
    assert "UvicornEventStream failed on a request's first bytes" in caplog.text
    assert "broken on purpose" in caplog.text


async def test_frames_sent_with_the_request_are_read(server: Server) -> None:
    sock = await connected(server.port)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, REQUEST + client_frame(0x9, b"hi"))
        buffer = bytearray()
        assert (await response_head(sock, buffer)).startswith(b"HTTP/1.1 101 ")
        assert (await server_frame(sock, buffer))[0] == 0x1  # the snapshot
        assert await server_frame(sock, buffer) == (0xA, b"hi")  # the pong
    finally:
        sock.close()


async def test_an_oversized_request_in_pieces_is_refused(server: Server) -> None:
    sock = await connected(server.port)
    loop = asyncio.get_running_loop()
    try:
        head = REQUEST.split(b"\r\n\r\n")[0] + b"\r\n"
        await loop.sock_sendall(sock, head)
        filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        # Headers that never end, just past the 8 KiB cap (and no further, so the server's
        # close is not answered with a reset that could race our read).
        for _ in range(-(-(8192 - len(head)) // len(filler))):
            await asyncio.sleep(0.01)  # a segment of its own
            await loop.sock_sendall(sock, filler)
        answer = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)
        assert answer.startswith(b"HTTP/1.1 431 ")  # Request Header Fields Too Large
        assert server.runtime.hub.connections() == 0
    finally:
        sock.close()


async def test_an_oversized_request_in_one_piece_is_refused_too(server: Server) -> None:
    """The cap is on the head, however it arrives: whole in one segment (as on loopback,
    whose segments hold 64 KiB) it gets the same 431 as in pieces (as from a phone)."""
    sock = await connected(server.port)
    loop = asyncio.get_running_loop()
    try:
        head = REQUEST.split(b"\r\n\r\n")[0] + b"\r\n"
        await loop.sock_sendall(sock, head + b"X-Filler: " + b"a" * 8192 + b"\r\n\r\n")
        answer = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)
        assert answer.startswith(b"HTTP/1.1 431 ")  # Request Header Fields Too Large
        assert server.runtime.hub.connections() == 0
    finally:
        sock.close()


async def test_a_plain_get_of_a_websocket_path_is_answered_by_the_app(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http) as http:
        response = await http.get("/ws/en")
    # RFC 6455 4.2.1: not an upgrade; 426 says what is needed, and the body where else to go.
    assert response.status_code == 426 and response.headers["upgrade"] == "websocket"
    assert "/sse/" in response.json()["message"]
    # The app's answer (its security headers), not the websocket endpoint's.
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_silent_connection_is_closed_at_shutdown(redis_url: str, prefix: str) -> None:
    async with running_server(make_settings(redis_url, prefix)) as server:
        sock = await connected(server.port)
        await asyncio.sleep(0.05)
        await server.stop()
        loop = asyncio.get_running_loop()
        try:
            assert await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT) == b""
        finally:
            sock.close()


async def test_with_websockets_off_an_upgrade_is_answered_by_the_app(
    redis_url: str, prefix: str
) -> None:
    # ws="none": like behind a proxy that drops websockets; nothing may upgrade.
    async with node(make_settings(redis_url, prefix), ws="none") as server:
        sock = await connected(server.port)
        try:
            await asyncio.get_running_loop().sock_sendall(sock, REQUEST)
            head = await response_head(sock, bytearray())
            assert head.startswith(b"HTTP/1.1 426 ")  # what a proxy that drops Upgrade gets
            assert b"x-content-type-options: nosniff" in head.lower()
        finally:
            sock.close()


async def test_a_finished_handshake_holds_no_timer(server: Server) -> None:
    # The handshake deadline is armed only while a request is incomplete, and cancelled when
    # it completes: 10,000 readers must not carry 10,000 live timers (docs/performance.md).
    loop = asyncio.get_running_loop()
    whole, pieces = await connected(server.port), await connected(server.port)
    try:
        await loop.sock_sendall(whole, REQUEST)
        await loop.sock_sendall(pieces, REQUEST[:60])
        await asyncio.sleep(0.05)
        await loop.sock_sendall(pieces, REQUEST[60:])
        for sock in (whole, pieces):
            buffer = bytearray()
            assert (await response_head(sock, buffer)).startswith(b"HTTP/1.1 101 ")
        subscribers = list(server.runtime.hub.channels["en"].writers)
        assert len(subscribers) == 2
        assert all(getattr(conn, "deadline", "missing") is None for conn in subscribers)
    finally:
        whole.close()
        pieces.close()


async def eventually(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_an_idle_reader_holds_no_protocol_object(server: Server) -> None:
    # The OPEN-state ServerProtocol exists only while the client's bytes are not yet whole
    # frames or a fragmented message is open (ticker.transport.websocket's docstring: memory).
    client = await RawClient.connect(server.port, "/ws/en")
    try:
        assert (await client.message())["type"] == "snapshot"
        (conn,) = server.runtime.hub.channel("en").writers  # type: ignore[union-attr]
        assert isinstance(conn, TickerWebSocket) and conn.conn is None
        send = client.loop.sock_sendall
        pong = client_frame(0xA, b"keepalive")
        await send(client.sock, pong[:3])  # half a frame: the parser must keep it
        await eventually(lambda: conn.conn is not None)
        await send(client.sock, pong[3:])
        await eventually(lambda: conn.conn is None)
        # Kept for the next client that speaks (every reader pongs each ping interval).
        spare = wsserver.SPARE[-1]
        assert spare.state is OPEN
        await send(client.sock, client_frame(0x1, b"hel", fin=False))  # an open message
        await asyncio.sleep(0.05)
        assert conn.conn is spare  # reused, not built again
        await send(client.sock, client_frame(0x0, b"lo"))
        await eventually(lambda: conn.conn is None)
        # And the connection is still a working one: a ping is answered.
        await send(client.sock, client_frame(0x9, b"still?"))
        assert await asyncio.wait_for(client.frame(), TIMEOUT) == (0xA, b"still?")
    finally:
        client.close()


@pytest.mark.parametrize("cursor", ["x", "1-0x", "9" * 70, "1-2-3", "%D9%A1-0"])
async def test_a_malformed_cursor_is_refused_alike_on_the_websocket_and_on_sse(
        server: Server, cursor: str) -> None:
    """One rule for a resume cursor (ticker.transport.resume): 400 naming it, on both."""
    sock = await connected(server.port)
    loop = asyncio.get_running_loop()
    try:
        target = f"/ws/en?cursor={cursor}".encode()
        await loop.sock_sendall(sock, REQUEST.replace(b"/ws/en", target))
        buffer = bytearray()
        head = await response_head(sock, buffer)
        assert head.startswith(b"HTTP/1.1 400 "), head
        while True:  # the body, then the server closes
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)
            if not chunk:
                break
            buffer += chunk
        assert b"cursor must be a cursor" in buffer
    finally:
        sock.close()
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        answer = await http.get(f"/sse/en?cursor={cursor}")
    assert answer.status_code == 400
    assert answer.json()["field"] == "cursor"
    assert server.runtime.hub.connections() == 0
    assert not server.runtime.ws_cap.open  # no per-address slot was taken
