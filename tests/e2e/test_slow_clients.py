"""A client that stops reading delays no one, costs bounded memory, and loses nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import websockets
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, make_settings, recv_json, running_server
from tests.e2e.rawws import RawClient
from ticker.redis.keys import Keys

BUFFER = 16 * 1024


def texts(frame: dict[str, Any]) -> list[str]:
    return [e["item"]["text"] for e in frame.get("events", []) if e["op"] == "publish"]


async def test_stalled_client_is_bounded_and_caught_up_exactly(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    settings = make_settings(redis_url, prefix, client_buffer=BUFFER, slow_timeout=30.0,
                             socket_sndbuf=BUFFER)
    async with running_server(settings) as server:
        stalled = await RawClient.connect(server.port, "/ws/en")
        assert (await stalled.message())["type"] == "snapshot"
        readers = [await websockets.connect(server.ws()) for _ in range(20)]
        for ws in readers:
            await recv_json(ws)
        key = Keys(prefix).stream("en")
        expected = [f"{n:04d} " + "x" * 270 for n in range(400)]
        got: list[list[str]] = [[] for _ in readers]
        latencies: list[float] = []

        async def drain(i: int, ws: Any) -> None:
            while len(got[i]) < len(expected):
                got[i] += texts(await recv_json(ws))

        drains = [asyncio.create_task(drain(i, ws)) for i, ws in enumerate(readers)]
        for start in range(0, len(expected), 20):
            t0 = time.monotonic()
            pipe = redis.pipeline(transaction=False)
            for text in expected[start:start + 20]:
                pipe.xadd(key, {"text": text})
            await pipe.execute()
            target = start + 20
            while min(len(g) for g in got) < target:
                await asyncio.sleep(0.002)
                assert time.monotonic() - t0 < TIMEOUT
            latencies.append(time.monotonic() - t0)
        await asyncio.wait_for(asyncio.gather(*drains), TIMEOUT)
        assert all(g == expected for g in got)
        # The stalled one did not hold anyone up: every batch reached all 20 promptly.
        assert sorted(latencies)[len(latencies) // 2] < 0.5

        hub = server.runtime.hub
        channel = hub.channels["en"]
        assert hub.counters.blocked >= 1
        assert len(channel.blocked) == 1
        conn = next(iter(channel.blocked))
        transport = conn.transport  # type: ignore[attr-defined]
        # Memory is bounded: the queue stopped at the cap (plus the frame that crossed it).
        assert transport.get_write_buffer_size() <= BUFFER + 8192

        # It reads again: it gets everything it missed, in order, exactly once.
        seen: list[str] = []
        while len(seen) < len(expected):
            seen += texts(await asyncio.wait_for(stalled.message(), TIMEOUT))
        assert seen == expected
        assert not channel.blocked and conn in channel.writers
        stalled.close()
        for ws in readers:
            await ws.close()


async def test_client_stalled_too_long_is_dropped(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    settings = make_settings(redis_url, prefix, client_buffer=BUFFER, slow_timeout=1.0,
                             socket_sndbuf=BUFFER)
    async with running_server(settings) as server:
        stalled = await RawClient.connect(server.port, "/ws/en")
        await stalled.message()
        key = Keys(prefix).stream("en")
        pipe = redis.pipeline(transaction=False)
        for n in range(300):
            pipe.xadd(key, {"text": f"{n} " + "y" * 270})
        await pipe.execute()
        hub = server.runtime.hub
        deadline = time.monotonic() + TIMEOUT
        while hub.counters.slow_dropped < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert hub.connections() == 0
        stalled.close()
