"""Reach: per-item connection counts, flushed to a Redis hash every second, summed over nodes,
kept through a Redis outage, and served by the API."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest
import websockets
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.conftest import (
    TIMEOUT,
    Server,
    free_port,
    make_settings,
    recv_json,
    recv_until,
    running_server,
)
from ticker.core.hub import Hub
from ticker.process.settings import parse_channels
from ticker.redis.connection import connect as redis_client
from ticker.redis.keys import Keys
from ticker.redis.reach import RETENTION_MS, Reach


def hub_with(counts: dict[str, dict[str, int]]) -> Hub:
    hub = Hub(parse_channels("en,ar"))
    for channel, items in counts.items():
        hub.channels[channel].reach.update(items)
    return hub


async def test_flush_adds_to_the_hash_and_starts_counting_afresh(
    redis: Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    hub = hub_with({"en": {"1-0": 3, "2-0": 1}, "ar": {"5-0": 2}})
    reach = Reach(redis, hub, keys)
    assert await reach.flush() == 3
    assert hub.channels["en"].reach == Counter() and hub.channels["ar"].reach == Counter()
    hub.channels["en"].reach["1-0"] += 4
    assert await reach.flush() == 1
    assert await reach.flush() == 0  # nothing new: no command at all
    assert await redis.hgetall(keys.reach("en")) == {b"1-0": b"7", b"2-0": b"1"}
    assert await redis.hgetall(keys.reach("ar")) == {b"5-0": b"2"}
    assert reach.flushes == 2 and reach.written == 4


async def test_counts_survive_a_failed_flush(redis: Redis, prefix: str) -> None:
    keys = Keys(prefix)
    hub = hub_with({"en": {"1-0": 3}})
    dead = redis_client(f"redis://127.0.0.1:{free_port()}/0")
    try:
        reach = Reach(dead, hub, keys)
        with pytest.raises(RedisConnectionError):
            await reach.flush()
        assert reach.errors == 1 and reach.carry == {"en": Counter({"1-0": 3})}
        hub.channels["en"].reach["1-0"] += 2  # counted meanwhile
        assert reach.pending("en", "1-0") == 5
        reach.redis = redis  # Redis is back
        assert await reach.flush() == 1
        assert reach.carry == {}
        assert await redis.hget(keys.reach("en"), "1-0") == b"5"
    finally:
        await dead.aclose()


async def test_totals_include_what_is_not_flushed_yet_and_prune_drops_old_items(
    redis: Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    hub = hub_with({})
    reach = Reach(redis, hub, keys)
    now = int(time.time() * 1000)
    old, recent = f"{now - RETENTION_MS - 1000}-0", f"{now - 1000}-0"
    await redis.hset(keys.reach("en"), mapping={old: 9, recent: 4, "junk": 1})
    hub.channels["en"].reach[recent] += 2
    assert await reach.totals("en", [recent, old, recent, "9-9"]) == \
        {recent: 6, old: 9, "9-9": 0}
    assert await reach.prune(now) == 2
    assert await redis.hgetall(keys.reach("en")) == {recent.encode(): b"4"}


async def test_reach_is_summed_over_nodes_and_served_by_the_api(
    redis_url: str, prefix: str, redis: Redis, token: str
) -> None:
    settings = make_settings(redis_url, prefix)
    async with running_server(settings) as a, running_server(settings) as b, \
            httpx.AsyncClient(base_url=a.http) as http:
        readers = [await websockets.connect(a.ws()) for _ in range(3)] + \
            [await websockets.connect(b.ws()) for _ in range(2)]
        try:
            for ws in readers:
                await recv_json(ws)
            r = await http.post("/api/channels/en/items", json={"text": "Counted"},
                                headers={"Authorization": f"Bearer {token}"})
            item = r.json()["id"]
            for ws in readers:
                await recv_until(ws, lambda f: f.get("cursor") == item)
            assert await wait_total(http, token, item, 5) == 5
            # A reader that arrives later sees it in its snapshot: that counts too.
            async with websockets.connect(b.ws()) as late:
                snap = await recv_json(late)
                assert [i["id"] for i in snap["items"]] == [item]
                assert await wait_total(http, token, item, 6) == 6
            # The channel view: every on-air item, or the ids asked for.
            r = await http.get("/api/channels/en/reach",
                               headers={"Authorization": f"Bearer {token}"})
            assert r.json() == {"channel": "en", "reach": {item: 6}}
            r = await http.get(f"/api/channels/en/reach?ids={item},1-0",
                               headers={"Authorization": f"Bearer {token}"})
            assert r.json()["reach"] == {item: 6, "1-0": 0}
            assert int(await redis.hget(Keys(prefix).reach("en"), item) or 0) == 6
        finally:
            for ws in readers:
                await ws.close()


async def wait_total(http: httpx.AsyncClient, token: str, item: str, want: int) -> int:
    deadline = time.monotonic() + TIMEOUT
    while True:
        r = await http.get(f"/api/channels/en/items/{item}/reach",
                           headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        got = int(r.json()["reach"])
        if got >= want or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)



async def test_reach_api_checks_its_input(server: Server, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.http) as http:
        r = await http.get("/api/channels/en/items/1-0/reach")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = await http.get("/api/channels/en/items/not-an-id/reach", headers=auth)
        assert r.status_code == 404 and r.json()["field"] == "item"
        r = await http.get("/api/channels/xx/items/1-0/reach", headers=auth)
        assert r.status_code == 404 and r.json()["field"] == "channel"
        r = await http.get("/api/channels/en/reach?ids=1-0,bad", headers=auth)
        assert r.status_code == 422 and r.json()["field"] == "ids"
        many = ",".join(f"{n}-0" for n in range(101))
        r = await http.get(f"/api/channels/en/reach?ids={many}", headers=auth)
        assert r.status_code == 422 and r.json()["field"] == "ids"
        r = await http.get("/api/channels/en/items/1-0/reach", headers=auth)
        assert r.status_code == 200 and r.json() == {"channel": "en", "id": "1-0", "reach": 0}
