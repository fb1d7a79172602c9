"""Hostile websocket clients get the right close code; everyone else is unaffected."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
import websockets
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, make_settings, recv_json, running_server
from tests.e2e.rawws import RawClient, client_frame
from ticker.redis.keys import Keys


async def closed_with(client: RawClient) -> int:
    """Read until the server's close frame; return its code."""
    while True:
        opcode, payload = await asyncio.wait_for(client.frame(), TIMEOUT)
        if opcode == 0x8:
            code: int = struct.unpack("!H", payload[:2])[0]
            return code


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        (client_frame(0x1, b"\xff\xfe\xfd"), 1007),
        (client_frame(0x2, b"binary"), 1003),
        (client_frame(0x1, b"x" * 5000), 1009),
        (bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 40), 1009),
        (client_frame(0x1, b"unmasked", mask=False), 1002),
        (client_frame(0x1, b"a" * 700, fin=False) + client_frame(0x0, b"a" * 700), 1009),
        (client_frame(0x9, b"x", fin=False), 1002),
        (b"".join(client_frame(0x9, b"flood") for _ in range(200)), 1008),
        (b"".join(client_frame(0x1, b"{}") for _ in range(100)), 1008),
    ],
)
async def test_hostile_frames_are_closed_with_the_right_code(
    server: Server, redis: Redis, prefix: str, attack: bytes, code: int
) -> None:
    async with websockets.connect(server.ws()) as bystander:
        await recv_json(bystander)
        client = await RawClient.connect(server.port, "/ws/en", rcvbuf=1 << 20)
        assert (await client.message())["type"] == "snapshot"
        await client.loop.sock_sendall(client.sock, attack)
        assert await closed_with(client) == code
        client.close()
        # The bystander is unaffected and the hub still delivers.
        await redis.xadd(Keys(prefix).stream("en"), {"text": "still here"})
        frame = await recv_json(bystander)
        assert frame["events"][0]["item"]["text"] == "still here"
    assert server.runtime.hub.connections() == 0


async def test_fragmented_text_within_the_cap_is_accepted(server: Server) -> None:
    client = await RawClient.connect(server.port, "/ws/en")
    await client.message()
    await client.loop.sock_sendall(client.sock, client_frame(0x1, b'{"a"', fin=False)
                                   + client_frame(0x9, b"p") + client_frame(0x0, b":1}"))
    opcode, payload = await asyncio.wait_for(client.frame(), TIMEOUT)
    assert (opcode, payload) == (0xA, b"p")  # the ping in between was answered
    client.close()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /ws/en HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Version: 13\r\n\r\n", b"400"),
        (b"GET /ws/en HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 7\r\n\r\n",
         b"426"),
        (b"GET /ws/nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n\r\n",
         b"404"),
        (b"GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n\r\n",
         b"404"),
    ],
)
async def test_bad_upgrades_get_an_http_error_not_a_hang(
    server: Server, raw: bytes, status: bytes
) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        await loop.sock_sendall(sock, raw)
        answer = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)
        assert answer.split(b" ")[1] == status
        assert await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT) == b""


async def test_connections_per_address_are_capped(redis_url: str, prefix: str) -> None:
    settings = make_settings(redis_url, prefix, max_connections_per_ip=3)
    async with running_server(settings) as server:
        held = [await websockets.connect(server.ws()) for _ in range(3)]
        with pytest.raises(websockets.InvalidStatus) as caught:
            await websockets.connect(server.ws())
        assert caught.value.response.status_code == 429
        await held[0].close()
        await asyncio.sleep(0.1)
        again = await websockets.connect(server.ws())  # a slot was freed
        assert (await recv_json(again))["type"] == "snapshot"
        for ws in (again, *held[1:]):
            await ws.close()


async def test_http_requests_per_address_are_rate_limited(redis_url: str, prefix: str) -> None:
    import httpx

    settings = make_settings(redis_url, prefix, rate_limit=5.0, rate_burst=10)
    async with running_server(settings) as server, \
            httpx.AsyncClient(base_url=server.http) as http:
        statuses = [(await http.get("/api/channels")).status_code for _ in range(15)]
        assert statuses[:10] == [200] * 10
        assert statuses[-1] == 429
        refused = await http.get("/api/channels")
        assert refused.json()["error"] == "rate_limited"
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["x-content-type-options"] == "nosniff"
        # Probes are never throttled.
        probes = [(await http.get("/healthz")).status_code for _ in range(20)]
        assert probes == [200] * 20
        await asyncio.sleep(0.5)  # 5/s refills a couple of tokens
        assert (await http.get("/api/channels")).status_code == 200


async def test_silent_and_half_sent_connections_are_closed(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ticker.transport import reader

    monkeypatch.setattr(reader, "HANDSHAKE_TIMEOUT", 0.5)
    loop = asyncio.get_running_loop()
    partial = (b"GET /ws/en HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\n")  # never finished
    for first in (b"", partial):
        with socket.socket() as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", server.port))
            if first:
                await loop.sock_sendall(sock, first)
            t0 = loop.time()
            try:
                closed = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)
            except ConnectionResetError:
                closed = b""
            assert closed == b""
            assert loop.time() - t0 < 3
