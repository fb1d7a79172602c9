"""SIGTERM drains: no new connections, every reader closed with 1012 (so it resumes elsewhere),
reach counts flushed, the process gone within a bounded time; the same under a supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from pathlib import Path

import httpx
import websockets
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, recv_json
from tests.e2e.fleet import publish_burst, ticker, wait_for, worker_pids
from tests.e2e.rawws import RawClient
from ticker.redis.keys import Keys

SHUTDOWN = 3.0  # TICKER_SHUTDOWN_TIMEOUT for these processes


async def close_code(ws: websockets.ClientConnection) -> int | None:
    """Read until the server closes; the close code it sent."""
    try:
        async for _ in ws:
            pass
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None
    return ws.close_code


def refuses(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


async def sse_until_end(http: httpx.AsyncClient, url: str, started: asyncio.Event) -> bytes:
    """An SSE reader: the whole stream, once the server ends it."""
    body = b""
    async with http.stream("GET", url) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_bytes():
            body += chunk
            if b"data:" in body:
                started.set()
    return body


async def test_sigterm_closes_readers_with_1012_flushes_reach_and_exits_in_time(
    tmp_path: Path, redis_url: str, prefix: str, redis: Redis
) -> None:
    keys = Keys(prefix)
    with ticker(tmp_path, "node", redis_url=redis_url, key_prefix=prefix,
                shutdown_timeout=SHUTDOWN) as node:
        http = httpx.AsyncClient(timeout=TIMEOUT)
        sse_open = asyncio.Event()
        sse = asyncio.create_task(sse_until_end(http, node.http + "/sse/en", sse_open))
        await asyncio.wait_for(sse_open.wait(), TIMEOUT)
        readers = [await websockets.connect(node.ws()) for _ in range(20)]
        # A reader that stopped reading: its buffers are full when SIGTERM comes, and it
        # must not hold the exit.
        stalled = await RawClient.connect(node.port, "/ws/en", rcvbuf=2048)
        try:
            for ws in readers:
                assert (await recv_json(ws))["type"] == "snapshot"
            await stalled.message()
            [item] = await publish_burst(redis, keys.stream("en"), 1, label="last")
            for ws in readers:
                assert (await recv_json(ws))["events"][0]["cursor"] == item
            await publish_burst(redis, keys.stream("en"), 300, batch=50, pause=0,
                                label="x" * 200)  # fills the stalled reader's buffers

            started = time.monotonic()
            node.proc.send_signal(signal.SIGTERM)
            codes = await asyncio.wait_for(asyncio.gather(*(close_code(ws) for ws in readers)),
                                           TIMEOUT)
            assert codes == [1012] * len(readers)
            assert time.monotonic() - started < 1.0  # the drain comes first, not last
            # The SSE reader's stream ends too, with a reconnect hint (it resumes elsewhere
            # with Last-Event-ID).
            stream = await asyncio.wait_for(sse, TIMEOUT)
            assert stream.rstrip().splitlines()[-1].startswith(b"retry:")
            assert await asyncio.to_thread(node.proc.wait, TIMEOUT) == 0
            elapsed = time.monotonic() - started
            # Bounded: the shutdown timeout, plus at most 2 s of flushing, plus the start of
            # Python's exit; the stalled reader was aborted, not waited for.
            assert elapsed < SHUTDOWN + 2.5, elapsed
            assert refuses(node.port)
        finally:
            stalled.close()
            sse.cancel()
            await http.aclose()
            for ws in readers:
                with contextlib.suppress(Exception):
                    await ws.close()
    log = node.text()
    assert "Shutting down" in log and "Finished server process" in log
    # Every reader was written the last item (20 websockets, the stalled one, the SSE one):
    # the count reached Redis although the process stopped at once (the final flush).
    reach = await redis.hget(keys.reach("en"), item)
    assert reach is not None and int(reach) == 22


async def test_a_draining_node_takes_no_new_connections_but_finishes_requests(
    tmp_path: Path, redis_url: str, prefix: str, token: str
) -> None:
    """While an HTTP request is in flight the node lingers; meanwhile it accepts no one."""
    with ticker(tmp_path, "node", redis_url=redis_url, key_prefix=prefix,
                shutdown_timeout=SHUTDOWN) as node:
        ws = await websockets.connect(node.ws())
        await recv_json(ws)
        # A slow upload keeps one request in flight. `100 Continue` comes when the handler
        # starts reading the body: from then on the request is inside the app.
        body = b'{"text": "Finished in a drain"}'
        sock = socket.create_connection(("127.0.0.1", node.port), timeout=TIMEOUT)
        sock.sendall(b"POST /api/channels/en/items HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + token.encode() + b"\r\n"
                     b"Expect: 100-continue\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        assert (await asyncio.to_thread(sock.recv, 100)).startswith(b"HTTP/1.1 100")
        node.proc.send_signal(signal.SIGTERM)
        assert await close_code(ws) == 1012
        await wait_for(lambda: refuses(node.port), "the listener closed")
        assert node.proc.poll() is None  # still draining the upload
        sock.sendall(body)
        answer = await asyncio.to_thread(sock.recv, 4096)
        assert answer.startswith(b"HTTP/1.1 201"), answer  # the request was completed
        sock.close()
        assert await asyncio.to_thread(node.proc.wait, TIMEOUT) == 0


async def test_sigterm_to_the_supervisor_drains_every_worker_and_stops_redis(
    tmp_path: Path
) -> None:
    """`ticker serve --workers 2` with the embedded Redis: the supervisor owns Redis."""
    with ticker(tmp_path, "sup", workers=2, shutdown_timeout=SHUTDOWN) as sup:
        assert sorted(worker_pids(sup)) == [0, 1]
        redis_port = int(sup.text().split("embedded Redis at redis://127.0.0.1:")[1]
                         .split("/")[0])
        readers = [await websockets.connect(sup.ws()) for _ in range(20)]
        for ws in readers:
            await recv_json(ws)
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(sup.http + "/metrics")).text
        assert 'worker="0"' in metrics and 'worker="1"' in metrics

        started = time.monotonic()
        sup.proc.send_signal(signal.SIGTERM)
        codes = await asyncio.wait_for(asyncio.gather(*(close_code(ws) for ws in readers)),
                                       TIMEOUT)
        assert codes == [1012] * len(readers)
        assert await asyncio.to_thread(sup.proc.wait, TIMEOUT * 2) == 0
        assert time.monotonic() - started < SHUTDOWN + 5
    log = sup.text()
    assert "embedded Redis stopped" in log
    assert log.count("Finished server process") == 2  # both workers ended cleanly
    assert "killing it" not in log
    assert refuses(redis_port) and refuses(sup.port)
