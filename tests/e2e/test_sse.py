"""`/sse/{channel}` with a plain SSE client (httpx streaming, no library): the same messages
as the websocket, `id:` = cursor, `Last-Event-ID` resume, bounded slow readers, heartbeats,
origin checks and a clean end when the node shuts down."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import websockets
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, make_settings, running_server
from tests.e2e.sseclient import SSEStream
from tests.e2e.ticker_node import node, start_node
from ticker.core.hub import ChannelHub
from ticker.redis.keys import Keys
from ticker.transport.sse import RETRY_MS


async def until(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def texts(msg: dict[str, Any]) -> list[str]:
    return [e["item"]["text"] for e in msg.get("events", []) if e["op"] == "publish"]


async def test_snapshot_first_then_live_events_with_the_cursor_as_event_id(
    server: Server, token: str
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        r = await http.post("/api/channels/en/items", headers=auth, json={"text": "First <b>&"})
        first = r.json()["id"]
        async with http.stream("GET", "/sse/en") as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert response.headers["cache-control"] == "no-cache, no-transform"
            assert response.headers["x-accel-buffering"] == "no"
            assert "content-length" not in response.headers
            events = SSEStream(response)
            hint = await events.block()
            assert hint.retry == RETRY_MS and not hint.data
            event_id, snap = await events.message()
            assert snap["type"] == "snapshot" and snap["reset"] is False
            assert event_id == snap["cursor"] == first
            assert [it["text"] for it in snap["items"]] == ["First <b>&"]
            assert snap["channel_info"]["name"] == "en"

            r = await http.post("/api/channels/en/items", headers=auth, json={"text": "Second"})
            second = r.json()["id"]
            event_id, msg = await events.message()
            assert msg["type"] == "events" and event_id == msg["cursor"] == second
            assert texts(msg) == ["Second"] and "missed" not in msg

            r = await http.post(f"/api/channels/en/items/{first}/kill", headers=auth, json={})
            event_id, msg = await events.message()
            assert msg["events"] == [{"op": "kill", "cursor": event_id, "id": first}]
        # The reader went away: the server noticed and let go of it.
        await until(lambda: server.runtime.hub.channels["en"].subscribers() == 0)
        assert server.runtime.per_channel["en"] == 0


async def test_last_event_id_resumes_with_the_exact_missed_count_and_beats_the_query_cursor(
    server: Server, redis: Redis, prefix: str
) -> None:
    key = Keys(prefix).stream("en")
    await redis.xadd(key, {"text": "before"})
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        async with http.stream("GET", "/sse/en") as response:
            last_id, snap = await SSEStream(response).message()
        assert last_id == snap["cursor"]
        missed = [f"while away {n}" for n in range(3)]
        for text in missed:
            await redis.xadd(key, {"text": text})
        # What a browser's EventSource does on reconnect: the same URL (with the ?cursor= it
        # was opened with, here older) plus Last-Event-ID, which wins.
        async with http.stream("GET", "/sse/en?cursor=0-0",
                               headers={"Last-Event-ID": last_id or ""}) as response:
            event_id, msg = await SSEStream(response).message()
        assert msg["type"] == "events" and msg["missed"] == 3
        assert texts(msg) == missed and event_id == msg["cursor"]
        # The query cursor alone (the widget switching from its websocket) resumes too.
        async with http.stream("GET", "/sse/en?cursor=0-0") as response:
            _, msg = await SSEStream(response).message()
        assert msg["missed"] == 4 and texts(msg) == ["before", *missed]
        # Up to date: nothing missed.
        async with http.stream("GET", f"/sse/en?cursor={msg['cursor']}") as response:
            _, msg = await SSEStream(response).message()
        assert msg == {**msg, "type": "events", "missed": 0, "events": []}
        await until(lambda: server.runtime.hub.connections() == 0)  # every reader let go


async def test_a_cursor_from_a_node_that_is_ahead_waits_for_this_node_to_catch_up(
    server: Server, redis: Redis, prefix: str
) -> None:
    ahead = f"{int(time.time() * 1000) + 60_000}-0"
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http, \
            http.stream("GET", "/sse/en", headers={"Last-Event-ID": ahead}) as response:
        events = SSEStream(response)
        # Another node already read this entry; ours reads it a moment later.
        await redis.xadd(Keys(prefix).stream("en"), {"text": "from the future"}, id=ahead)
        event_id, msg = await events.message()
        assert msg["type"] == "events" and msg["missed"] == 0 and event_id == ahead
        await redis.xadd(Keys(prefix).stream("en"), {"text": "next"})
        _, msg = await events.message()
        assert texts(msg) == ["next"]


async def test_a_cursor_older_than_the_window_gets_a_reset_snapshot_and_junk_is_a_400(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    async with running_server(make_settings(redis_url, prefix, stream_maxlen=8)) as server:
        key = Keys(prefix).stream("en")
        ids = [await redis.xadd(key, {"text": f"item {n}"}) for n in range(20)]
        old = ids[0].decode()
        async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
            await until(lambda: server.runtime.hub.channels["en"].state.cursor == ids[-1].decode())
            async with http.stream("GET", "/sse/en", headers={"Last-Event-ID": old}) as response:
                event_id, msg = await SSEStream(response).message()
            assert msg["type"] == "snapshot" and msg["reset"] is True
            assert event_id == msg["cursor"] == ids[-1].decode()
            assert msg["items"][0]["text"] == "item 19"

            for headers, query, field in (({"Last-Event-ID": "yesterday"}, "", "Last-Event-ID"),
                                          ({}, "?cursor=1-2-3", "cursor"),
                                          ({}, "?cursor=" + "9" * 70, "cursor")):
                r = await http.get("/sse/en" + query, headers=headers)
                assert r.status_code == 400, r.text
                assert r.json()["field"] == field and r.json()["error"] == "bad_request"


async def test_unknown_channel_is_a_404_and_origins_are_checked(
    redis_url: str, prefix: str
) -> None:
    settings = make_settings(redis_url, prefix, allowed_origins="https://news.example")
    async with running_server(settings) as server, \
            httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        r = await http.get("/sse/nope")
        assert r.status_code == 404 and r.json()["field"] == "channel"

        r = await http.get("/sse/en", headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and r.json()["field"] == "Origin"
        assert "access-control-allow-origin" not in r.headers

        async with http.stream("GET", "/sse/en", headers={"Origin": "https://news.example"}) \
                as response:
            assert response.status_code == 200
            assert response.headers["access-control-allow-origin"] == "https://news.example"
            assert response.headers["vary"] == "Origin"
            assert "access-control-allow-credentials" not in response.headers
            _, msg = await SSEStream(response).message()
            assert msg["type"] == "snapshot"

        # Our own origin needs no grant; the polling snapshot follows the same rule.
        async with http.stream("GET", "/sse/en", headers={"Origin": server.http}) as response:
            assert response.status_code == 200
        r = await http.get("/api/channels/en/snapshot", headers={"Origin": "https://news.example"})
        assert r.headers["access-control-allow-origin"] == "https://news.example"
        assert r.headers["vary"] == "Origin"
        r = await http.get("/api/channels/en/snapshot", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers

        r = await http.head("/sse/en")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")


async def test_sse_streams_count_against_the_per_address_cap_shared_with_websockets(
    redis_url: str, prefix: str
) -> None:
    settings = make_settings(redis_url, prefix, max_connections_per_ip=2)
    async with node(settings) as server, \
            httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        ws = await websockets.connect(server.ws())
        async with http.stream("GET", "/sse/en") as first:
            # Kept: an SSEStream collected as garbage closes its line iterator, and with it
            # the connection.
            events = SSEStream(first)
            await events.message()
            r = await http.get("/sse/ar")
            assert r.status_code == 429 and r.json()["error"] == "too_many_connections"
            assert server.runtime.ws_cap.open["127.0.0.1"] == 2  # the refused one took none
            await ws.close()
            await until(lambda: server.runtime.ws_cap.open["127.0.0.1"] == 1)
            async with http.stream("GET", "/sse/ar") as second:
                assert second.status_code == 200
                await SSEStream(second).message()
        await until(lambda: not server.runtime.ws_cap.open)


async def test_an_idle_stream_gets_comment_heartbeats(redis_url: str, prefix: str) -> None:
    async with running_server(make_settings(redis_url, prefix, sse_heartbeat=0.2)) as server, \
            httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http, \
            http.stream("GET", "/sse/en") as response:
        events = SSEStream(response)
        await events.message()
        started = time.monotonic()
        beats = [await events.block(2.0) for _ in range(3)]
        assert all(b.comments == ["keepalive"] and not b.data for b in beats)
        elapsed = time.monotonic() - started
        assert 0.4 < elapsed < 2.0, elapsed


class RawReader:
    """An SSE reader on a raw socket with a tiny receive buffer, that can stop reading."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, path: str) -> RawReader:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        # A small limit: the StreamReader stops reading from the socket (like a stalled
        # browser) instead of buffering megabytes on our side.
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head
        return cls(reader, writer)

    async def messages(self) -> list[dict[str, Any]]:
        """The data messages of the next chunk (whole events per chunk)."""
        size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await self.reader.readexactly(size + 2)
        return [json.loads(line[6:]) for line in chunk.split(b"\n") if line.startswith(b"data: ")]


async def stall(redis: Redis, key: str, channel: ChannelHub,
                after_batch: Callable[[list[str]], Awaitable[None]]) -> tuple[list[str], int]:
    """Publish until a stalled reader is blocked for good, then 100 items more.

    Loopback lets the kernel take ~4 MB first (so big batches), and while it still takes
    some the reader is blocked and caught up again a few times. Returns (every text
    published, the blocked reader's queue size when it was blocked for the last time).
    """
    expected: list[str] = []
    after_block = queued_at_block = 0
    while after_block < 100:
        assert len(expected) < 20_000, "the stalled reader was never blocked"
        size = 20 if channel.blocked else 250
        batch = [f"{len(expected) + n:05d} " + "x" * 270 for n in range(size)]
        expected += batch
        pipe = redis.pipeline(transaction=False)
        for text in batch:
            pipe.xadd(key, {"text": text})
        await pipe.execute()
        await after_batch(expected)
        after_block = after_block + size if channel.blocked else 0
        if after_block == size:
            queued_at_block = next(iter(channel.blocked)).queued  # type: ignore[attr-defined]
    return expected, queued_at_block


async def test_a_slow_sse_reader_is_bounded_delays_no_one_and_is_caught_up_exactly(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    buffer = 16 * 1024
    settings = make_settings(redis_url, prefix, client_buffer=buffer)
    async with node(settings) as server, \
            httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        slow = await RawReader.connect(server.port, "/sse/en")
        channel = server.runtime.hub.channels["en"]
        await until(lambda: bool(channel.sse_writers))
        key = Keys(prefix).stream("en")
        async with http.stream("GET", "/sse/en") as response:
            fast = SSEStream(response)
            await fast.message()
            got: list[str] = []
            slowest_batch = 0.0

            async def fast_reader_keeps_up(expected: list[str]) -> None:
                nonlocal got, slowest_batch
                t0 = time.monotonic()
                while len(got) < len(expected):
                    got += texts((await fast.message())[1])
                slowest_batch = max(slowest_batch, time.monotonic() - t0)

            expected, queued_at_block = await stall(redis, key, channel, fast_reader_keeps_up)
            assert got == expected
            # The stalled reader held no one up.
            assert slowest_batch < 1.0, slowest_batch

        # It is blocked: off the live set, its queue stopped at the cap plus the one frame
        # that crossed it (a batch of at most 250 events here), and did not grow since.
        assert server.runtime.hub.counters.blocked >= 1
        conn = next(iter(channel.blocked))
        assert conn.sse and conn not in channel.sse_writers
        assert conn.queued == queued_at_block <= buffer + 250 * 600  # type: ignore[attr-defined]

        # It reads again: everything, in order, exactly once; each catch-up says how many
        # events it carries; then it is live.
        seen: list[str] = []
        first: list[dict[str, Any]] = []
        while not first:  # the retry hint (a chunk of its own), then the snapshot
            first = await asyncio.wait_for(slow.messages(), TIMEOUT)
        assert [m["type"] for m in first] == ["snapshot"]
        while len(seen) < len(expected):
            for msg in await asyncio.wait_for(slow.messages(), TIMEOUT):
                assert msg["type"] == "events"
                if "missed" in msg:
                    assert msg["missed"] == len(msg["events"]) > 0
                seen += texts(msg)
        assert seen == expected
        await until(lambda: not channel.blocked)
        assert conn in channel.sse_writers
        await redis.xadd(key, {"text": "live again"})
        assert texts((await asyncio.wait_for(slow.messages(), TIMEOUT))[0]) == ["live again"]
        slow.writer.close()


async def test_a_reader_blocked_too_long_is_dropped_and_let_go(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    settings = make_settings(redis_url, prefix, client_buffer=16 * 1024, slow_timeout=0.5)
    async with node(settings) as server:
        slow = await RawReader.connect(server.port, "/sse/en")
        channel = server.runtime.hub.channels["en"]
        await until(lambda: bool(channel.sse_writers))
        key = Keys(prefix).stream("en")

        async def applied(expected: list[str]) -> None:
            await until(lambda: channel.counters.events >= len(expected))
            await asyncio.sleep(0.02)  # pacing: lets the pump hand over what the kernel takes

        await stall(redis, key, channel, applied)
        # The sweep (once a second) closes it after slow_timeout; nothing of it is kept.
        await until(lambda: server.runtime.hub.counters.slow_dropped == 1)
        assert channel.subscribers() == 0 and server.runtime.per_channel["en"] == 0
        slow.writer.close()


async def test_a_draining_node_ends_every_stream_cleanly_with_a_reconnect_hint(
    redis_url: str, prefix: str
) -> None:
    settings = make_settings(redis_url, prefix)
    server = await start_node(settings)
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http, \
            http.stream("GET", "/sse/en") as response:
        events = SSEStream(response)
        await events.message()
        started = time.monotonic()
        stopping = asyncio.create_task(server.stop())
        rest = await events.rest()  # raises if the stream is cut instead of ended
        assert events.ended
        assert rest and rest[-1].retry is not None and 0 < rest[-1].retry <= 2500
        await stopping
        # Well inside uvicorn's graceful timeout (2 s here): nobody waited for it.
        assert time.monotonic() - started < 1.5


# -- the protocol path (TickerEventStream) and the ASGI route behind it ----------------------


async def raw_exchange(port: int, *parts: bytes, pause: float = 0.0) -> bytes:
    """Send `parts` (with `pause` between them) on a new connection; everything it answers
    until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(pause)
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()


def answer_of(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


async def test_bad_requests_on_the_protocol_path_get_the_same_json_errors(
    server: Server
) -> None:
    host = f"Host: 127.0.0.1:{server.port}\r\n".encode()
    cases = [
        (b"GET /sse/en HTTP/1.1\r\n" + host + b"Content-Length: 5\r\n\r\nhello", 400, None),
        (b"GET /sse/en HTTP/1.1\r\n\r\n", 400, "Host"),
        (b"GET /sse/en HTTP/1.1\r\n" + host + b"Origin: https://a.example\r\n"
         b"Origin: https://b.example\r\n\r\n", 400, "Origin"),
        (b"GET /sse/en/more HTTP/1.1\r\n" + host + b"\r\n", 404, "channel"),
        (b"GET /sse/xx HTTP/1.1\r\n" + host + b"\r\n", 404, "channel"),
        (b"GET /sse/en HTTP/1.1\r\n" + host + b"Last-Event-ID: junk\r\n\r\n", 400,
         "Last-Event-ID"),
        (b"GET /sse/en?cursor=1-2-3 HTTP/1.1\r\n" + host + b"\r\n", 400, "cursor"),
        (b"GET /sse/en HTTP/1.1\r\n" + host + b"X-Pad: " + b"p" * 9000 + b"\r\n\r\n", 431, None),
        (b"GET /sse/en HTTP/1.1\r\n" + host + b"Bad Header\r\n\r\n", 400, None),
    ]
    for request, status, field in cases:
        got, headers, body = answer_of(await raw_exchange(server.port, request))
        assert got == status, (request[:60], body)
        assert body["error"] and body["message"] and body.get("field") == field
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        assert headers["x-content-type-options"] == "nosniff"
    assert not server.runtime.ws_cap.open and server.runtime.per_channel["en"] == 0
    # The node still serves readers.
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http, \
            http.stream("GET", "/sse/en") as response:
        _, msg = await SSEStream(response).message()
        assert msg["type"] == "snapshot"


async def test_a_request_in_pieces_is_served_and_one_never_finished_is_closed(
    server: Server, monkeypatch: Any
) -> None:
    head = f"GET /sse/en HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for part in (head[:14], head[14:30], head[30:]):
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.05)
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"transfer-encoding: chunked" in answer and b"x-request-id: " in answer
    writer.close()

    from ticker.transport import reader
    monkeypatch.setattr(reader, "HANDSHAKE_TIMEOUT", 0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head[:20])  # and never the rest
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed, nothing said
    assert time.monotonic() - started < 2.0
    writer.close()


async def test_with_upgrade_routing_off_the_asgi_route_serves_the_same_stream(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    settings = make_settings(redis_url, prefix, upgrade_routing=False, sse_heartbeat=0.2)
    server = await start_node(settings)
    key = Keys(prefix).stream("en")
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http, \
            http.stream("GET", "/sse/en") as response:
        assert "date" in response.headers  # uvicorn's own response, not the protocol path
        events = SSEStream(response)
        hint = await events.block()
        assert hint.retry == RETRY_MS
        _, snap = await events.message()
        assert snap["type"] == "snapshot"
        await redis.xadd(key, {"text": "through the route"})
        _, msg = await events.message()
        assert texts(msg) == ["through the route"]
        beat = await events.block(2.0)  # the hub's heartbeat, framed by uvicorn this time
        assert beat.comments == ["keepalive"] and not beat.data
        stopping = asyncio.create_task(server.stop())
        rest = await events.rest()
        assert rest and rest[-1].retry is not None
        await stopping
