"""Fault scenarios: Redis killed and restarted with AOF, a reader that stops reading, 1% of
readers stalled, a reconnect storm. Each reader is checked by the verifier."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import websockets
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, free_port, make_settings, running_server, start_redis
from tests.e2e.rawws import RawClient
from tests.e2e.verifier import Record, verify, visible_events
from ticker.redis.connection import connect as redis_client
from ticker.redis.keys import Keys
from ticker.redis.tokens import Tokens


async def wait_until(predicate: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.02)


async def wake_up(stuck: RawClient, record: Record, cursor: str, server: Any) -> None:
    """A reader that stopped reading reads again: what had reached it, up to the server's
    close, then it reconnects with its last cursor and takes the resume frame."""
    try:
        while True:
            msg = await asyncio.wait_for(stuck.message(), 2)
            record.take(msg)
            cursor = msg.get("cursor", cursor)
    except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
        pass
    stuck.close()
    async with websockets.connect(server.ws(cursor=cursor)) as ws:
        record.take(json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))


async def test_every_acknowledged_publish_survives_redis_kill_9_with_aof(
    tmp_path: Path, prefix: str
) -> None:
    port = free_port()
    aof = ("--appendonly", "yes", "--appendfsync", "always")
    redis_proc = start_redis(tmp_path, port, *aof)
    url = redis_proc.url
    client = redis_client(url)
    try:
        token = await Tokens(client, Keys(prefix)).create("aof")
        async with running_server(make_settings(url, prefix)) as server:
            async with websockets.connect(server.ws()) as ws:
                cursor = json.loads(await ws.recv())["cursor"]
            acked: list[str] = []
            async with httpx.AsyncClient(base_url=server.http) as http:
                for n in range(30):
                    r = await http.post("/api/channels/en/items", json={"text": f"aof {n}"},
                                        headers={"Authorization": f"Bearer {token}"})
                    assert r.status_code == 201
                    acked.append(r.json()["id"])
            os.kill(redis_proc.process.pid, signal.SIGKILL)  # a crash, not a clean shutdown
            redis_proc.process.wait()
            redis_proc = start_redis(tmp_path, port, *aof)
            rows: Any = await client.xrange(Keys(prefix).stream("en"))
            assert [i.decode() for i, _ in rows] == acked
            await wait_until(lambda: server.runtime.reader.ready, "reader back")
            async with websockets.connect(server.ws(cursor=cursor)) as ws:
                frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert frame["missed"] == 30
            assert [e["cursor"] for e in frame["events"]] == acked
    finally:
        await client.aclose()
        redis_proc.stop()


async def test_a_reader_that_stops_reading_is_dropped_and_resumes_with_nothing_lost(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    # The production default drops a reader stuck for 30 s; scaled down here to 1 s, and the
    # reader stays stuck for twice that, as in "stops reading for 60 s".
    settings = make_settings(redis_url, prefix, client_buffer=16384, socket_sndbuf=16384,
                             slow_timeout=1.0)
    key = Keys(prefix).stream("en")
    async with running_server(settings) as server:
        stuck = await RawClient.connect(server.port, "/ws/en")
        record = Record()
        first = await stuck.message()
        record.take(first)
        pipe = redis.pipeline(transaction=False)
        for n in range(300):
            pipe.xadd(key, {"text": f"{n:03d} " + "z" * 250})
        await pipe.execute()
        hub = server.runtime.hub
        await wait_until(lambda: hub.counters.slow_dropped >= 1, "the stuck reader dropped")
        await asyncio.sleep(1.0)  # still not reading: twice the timeout in all
        # It wakes up: reads what had reached it, then resumes from its last cursor.
        await wake_up(stuck, record, first["cursor"], server)
        verify(record, await visible_events(redis, key), allow_resets=False)
        assert len(record.segments[0][1]) == 300


async def test_a_reader_that_stops_reading_for_60_s_under_production_timers(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    """The scenario at full length, with the production slow-reader timeout (30 s): a reader
    stops reading for 60 s while the desk keeps publishing (an item every half second). It is
    set aside once its buffers are full, dropped 30 s later, and when it reads again it gets
    what had reached it and resumes by cursor with nothing lost; a healthy reader beside it
    gets every item within a second of its publishing, throughout."""
    settings = make_settings(redis_url, prefix, client_buffer=16384, socket_sndbuf=16384)
    assert settings.slow_timeout == 30.0  # the default, not scaled down
    key = Keys(prefix).stream("en")
    pad = {"link": "https://example.com/" + "p" * 1800}  # ~2 KB frames: full in a few items
    async with running_server(settings) as server:
        hub = server.runtime.hub
        channel = hub.channels["en"]
        stuck = await RawClient.connect(server.port, "/ws/en")
        stuck_record = Record()
        first = await stuck.message()
        stuck_record.take(first)
        healthy = await websockets.connect(server.ws())
        healthy_record = Record()
        healthy_record.take(json.loads(await healthy.recv()))
        sent: dict[str, float] = {}  # text -> when it was published
        late: list[float] = []

        async def read_healthy() -> None:
            while True:
                msg = json.loads(await healthy.recv())
                healthy_record.take(msg)
                now = time.monotonic()
                late.extend(now - sent[e["item"]["text"]] for e in msg.get("events", ())
                            if e["op"] == "publish" and e["item"]["text"] in sent)

        reading = asyncio.create_task(read_healthy())
        started = time.monotonic()
        blocked_at = dropped_at = None
        # A busy minute first (its buffers fill at once), then the steady pace.
        for n in range(40):
            sent[f"live {n:03d}"] = time.monotonic()
            await redis.xadd(key, {"text": f"live {n:03d}", **pad})
        n = 40
        while (now := time.monotonic()) - started < 60.0:
            sent[f"live {n:03d}"] = now
            await redis.xadd(key, {"text": f"live {n:03d}", **pad})
            n += 1
            if blocked_at is None and channel.blocked:
                blocked_at = time.monotonic()
            if dropped_at is None and hub.counters.slow_dropped:
                dropped_at = time.monotonic()
            await asyncio.sleep(0.5)
        assert blocked_at is not None and blocked_at - started < 3  # set aside when full
        assert dropped_at is not None
        assert 29.0 <= dropped_at - blocked_at <= 32.0, dropped_at - blocked_at  # after 30 s
        # 60 s later it reads again: what had reached it, then the server's close, then a
        # resume by cursor that brings everything since.
        await wake_up(stuck, stuck_record, first["cursor"], server)
        await asyncio.sleep(0.5)
        reading.cancel()
        await healthy.close()
    events = await visible_events(redis, key)
    assert len(events) == n >= 150
    verify(stuck_record, events, allow_resets=False)
    verify(healthy_record, events, allow_resets=False)
    assert sum(len(got) for _, got in stuck_record.segments) == n
    assert len(late) == n and max(late) < 1.0, max(late)  # the healthy reader never waited


async def test_one_percent_of_readers_stalled_leaves_the_rest_unharmed(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    cap = 16384
    settings = make_settings(redis_url, prefix, client_buffer=cap, socket_sndbuf=cap)
    key = Keys(prefix).stream("en")
    async with running_server(settings) as server:
        healthy = [await websockets.connect(server.ws()) for _ in range(297)]
        for ws in healthy:
            await ws.recv()

        async def round_trip(label: str) -> float:
            """Publish 10 big items at once; time until every healthy reader has them."""
            t0 = time.monotonic()
            pipe = redis.pipeline(transaction=False)
            for n in range(10):
                pipe.xadd(key, {"text": f"{label} {n} " + "q" * 250})
            await pipe.execute()

            async def one(ws: Any) -> None:
                seen = 0
                while seen < 10:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                    seen += len(msg.get("events", []))

            await asyncio.gather(*(one(ws) for ws in healthy))
            return time.monotonic() - t0

        before = statistics.median([await round_trip(f"a{i}") for i in range(5)])
        stalled = [await RawClient.connect(server.port, "/ws/en") for _ in range(3)]
        for client in stalled:
            await client.message()
        during = [await round_trip(f"b{i}") for i in range(15)]
        channel = server.runtime.hub.channels["en"]
        assert len(channel.blocked) == 3  # all three stalled readers were set aside
        buffered = [c.transport.get_write_buffer_size()  # type: ignore[attr-defined]
                    for c in channel.blocked]
        assert max(buffered) <= cap + 8192  # server memory per stalled reader is capped
        # The healthy readers' latency is unchanged (generous margin: a shared 2-core box).
        assert statistics.median(during[5:]) < max(3 * before, before + 0.05)
        for client in stalled:
            client.close()
        for ws in healthy:
            await ws.close()


async def test_a_reconnect_storm_settles_quickly_with_nothing_lost(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    key = Keys(prefix).stream("en")
    async with running_server(make_settings(redis_url, prefix)) as server:
        await redis.xadd(key, {"text": "before the storm"})
        await wait_until(lambda: server.runtime.hub.channels["en"].state.items, "first item")
        clients = [await websockets.connect(server.ws()) for _ in range(500)]
        cursors = [json.loads(await ws.recv())["cursor"] for ws in clients]
        await asyncio.gather(*(ws.close() for ws in clients))
        ids = [(await redis.xadd(key, {"text": f"while away {n}"})).decode()
               for n in range(20)]
        await wait_until(lambda: server.runtime.hub.channels["en"].state.cursor == ids[-1],
                         "node caught up")
        t0 = time.monotonic()

        async def resume(cursor: str) -> list[str]:
            async with websockets.connect(server.ws(cursor=cursor)) as ws:
                msg = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert msg["type"] == "events" and msg["missed"] == 20
            return [e["cursor"] for e in msg["events"]]

        results = await asyncio.gather(*(resume(c) for c in cursors))
        settled = time.monotonic() - t0
        assert all(r == ids for r in results)
        # 500 reconnects, handshakes included, from one client process on 2 shared cores.
        assert settled < 3.0, f"storm settled in {settled:.2f}s"
