"""Redis stopped for 10 s and for 30 s, then restarted (AOF: its data survives).

Connected readers keep their connection and are told the feed is stale, then that it is back;
publishing answers 503 meanwhile and /readyz 503; afterwards every reader has every event
exactly once, including those written just before Redis went away.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TIMEOUT, make_settings, running_server, start_redis
from tests.e2e.fleet import check_exact, publish_burst, start_readers, stop_readers, wait_for
from ticker.redis.connection import connect as redis_client
from ticker.redis.keys import Keys
from ticker.redis.tokens import Tokens


def metric(text: str, name: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text)
               for s in f.samples if s.name == name)


@pytest.mark.parametrize("outage", [10.0, 30.0])
async def test_redis_outage_readers_told_stale_publish_503_then_nothing_lost(
    tmp_path: Path, prefix: str, outage: float
) -> None:
    aof = ("--appendonly", "yes", "--appendfsync", "always")
    redis_server = start_redis(tmp_path, None, *aof)
    port = redis_server.port
    keys = Keys(prefix)
    key = keys.stream("en")
    redis = redis_client(redis_server.url)
    try:
        token = await Tokens(redis, keys).create("outage")
        auth = {"Authorization": f"Bearer {token}"}
        async with running_server(make_settings(redis_server.url, prefix)) as server, \
                httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
            readers = await start_readers(10, lambda c: server.ws("en", c))
            try:
                for n in range(10):
                    r = await http.post("/api/channels/en/items", json={"text": f"before {n}"},
                                        headers=auth)
                    assert r.status_code == 201
                # The last ones go in straight before Redis stops: the node may not have
                # read them yet. They are on disk (AOF, fsync always).
                tail = await publish_burst(redis, key, 5, batch=5, label="just before")
                redis_server.stop()
                down_at = time.monotonic()

                await wait_for(lambda: all(r.stale == [True] for r in readers),
                               "readers told the feed is stale")
                r = await http.post("/api/channels/en/items", json={"text": "during"},
                                    headers=auth)
                assert r.status_code == 503 and r.json()["error"] == "unavailable"
                ready = await http.get("/readyz")
                assert ready.status_code == 503 and ready.json()["redis"] == "down"
                text = (await http.get("/metrics")).text
                assert metric(text, "ticker_stale") == 1
                assert metric(text, "ticker_reader_up") == 0
                assert metric(text, "ticker_redis_errors_total") >= 2  # reader and api
                # Publishing keeps failing fast, for the whole outage (never a hang).
                while time.monotonic() - down_at < outage:
                    asked = time.monotonic()
                    r = await http.post("/api/channels/en/items", json={"text": "during"},
                                        headers=auth)
                    assert r.status_code == 503
                    assert time.monotonic() - asked < 1.0
                    await asyncio.sleep(1.0)

                restarted = start_redis(tmp_path, port, *aof)
                redis_server = restarted
                await wait_for(lambda: all(r.stale == [True, False] for r in readers),
                               "readers told the feed is back", TIMEOUT)
                await wait_for(lambda: all(r.cursor == tail[-1] for r in readers),
                               "the entries written before the stop")
                for n in range(10):
                    r = await http.post("/api/channels/en/items", json={"text": f"after {n}"},
                                        headers=auth)
                    assert r.status_code == 201, r.text
                last = r.json()["cursor"]
                await wait_for(lambda: all(r.cursor == last for r in readers), "the last item")
                assert (await http.get("/readyz")).status_code == 200
                await check_exact(readers, redis, key)
                # Nobody was disconnected: the readers kept their ticker throughout.
                assert all(r.connections == 1 for r in readers)
                assert len(await redis.xrange(key)) == 25  # the AOF kept everything
            finally:
                await stop_readers(readers)
    finally:
        await redis.aclose()
        redis_server.stop()
