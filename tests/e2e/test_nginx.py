"""Two real ticker nodes behind a real nginx (deploy/nginx.conf) on loopback.

No sticky sessions: a reader whose node dies (kill -9) or drains (SIGTERM, 1012) reconnects
through nginx with its cursor, lands on the other node, and misses nothing and sees nothing
twice. The readers record the cursor of every event and are checked against the stream.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, make_settings, recv_json, recv_until, running_server
from tests.e2e.fleet import (
    Proc,
    Relay,
    check_exact,
    nginx,
    publish_burst,
    start_readers,
    stop_readers,
    ticker,
    wait_for,
)
from ticker.core.items import parse_stream_id
from ticker.redis.keys import Keys

READERS = 40


def open_connections(proc: Proc) -> float:
    text = httpx.get(proc.http + "/metrics", timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text)
               if f.name == "ticker_connections" for s in f.samples)


async def test_kill_9_of_a_node_during_a_burst_loses_and_repeats_nothing(
    tmp_path: Path, redis_url: str, prefix: str, redis: Redis, token: str
) -> None:
    key = Keys(prefix).stream("en")
    common = {"redis_url": redis_url, "key_prefix": prefix}
    with ticker(tmp_path, "a", **common) as a, ticker(tmp_path, "b", **common) as b, \
            nginx(tmp_path / "nginx", [a.port, b.port]) as lb:
        base = f"http://127.0.0.1:{lb}"
        async with httpx.AsyncClient(base_url=base) as http:
            # HTTP through the proxy: publishing works and the request id goes end to end.
            r = await http.post("/api/channels/en/items", json={"text": "Before the burst"},
                                headers={"Authorization": f"Bearer {token}",
                                         "X-Request-ID": "lb-test-1"})
            assert r.status_code == 201, r.text
            assert r.headers["x-request-id"] == "lb-test-1"
            r = await http.get("/readyz")
            assert r.status_code == 200 and len(r.headers["x-request-id"]) == 32  # nginx's id
            assert (await http.get("/metrics")).status_code == 404  # scraped per node only

        # Readers come through nginx, as browsers on the proxy's origin.
        readers = await start_readers(READERS, lambda c: f"ws://127.0.0.1:{lb}/ws/en" + (
            f"?cursor={c}" if c else ""), origin=base)
        try:
            await wait_for(lambda: open_connections(a) + open_connections(b) == READERS,
                           "every reader counted by a node")
            on_a = open_connections(a)
            assert 0 < on_a < READERS, "least_conn spread the readers over both nodes"

            def kill(sent: int) -> None:
                if sent == 100:
                    os.kill(a.proc.pid, signal.SIGKILL)

            ids = await publish_burst(redis, key, 200, batch=10, pause=0.02, during=kill)
            assert a.proc.wait(TIMEOUT) == -signal.SIGKILL
            await wait_for(lambda: all(r.cursor == ids[-1] for r in readers),
                           "every reader has the whole burst", TIMEOUT * 2)
            await check_exact(readers, redis, key)
            assert all(r.cursors == readers[0].cursors for r in readers)  # the same order
            moved = [r for r in readers if r.connections > 1]
            assert len(moved) == on_a, "exactly the killed node's readers reconnected"
            assert all(r.missed for r in moved), "each resumed by cursor"

            # The survivor serves everything: HTTP too.
            async with httpx.AsyncClient(base_url=base) as http:
                r = await http.post("/api/channels/en/items", json={"text": "After the kill"},
                                    headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 201, r.text
            last = r.json()["cursor"]
            await wait_for(lambda: all(r.cursor == last for r in readers), "the last item")
            await check_exact(readers, redis, key)
        finally:
            await stop_readers(readers)


async def test_rolling_restart_of_both_nodes_drains_with_1012_and_loses_nothing(
    tmp_path: Path, redis_url: str, prefix: str, redis: Redis
) -> None:
    """An upgrade, node by node: SIGTERM mid-burst, readers told 1012 move to the other node,
    the node comes back on its port, then the other one goes. Nothing lost, nothing twice."""
    key = Keys(prefix).stream("en")
    common = {"redis_url": redis_url, "key_prefix": prefix, "shutdown_timeout": 3}
    with ticker(tmp_path, "a", **common) as a, ticker(tmp_path, "b", **common) as b, \
            nginx(tmp_path / "nginx", [a.port, b.port]) as lb:
        readers = await start_readers(READERS, lambda c: f"ws://127.0.0.1:{lb}/ws/en" + (
            f"?cursor={c}" if c else ""))
        try:
            await wait_for(lambda: open_connections(a) + open_connections(b) == READERS,
                           "every reader counted")
            on_a = open_connections(a)

            def drain(node: Proc) -> Callable[[int], None]:
                def at(sent: int) -> None:
                    if sent == 60:
                        node.proc.send_signal(signal.SIGTERM)
                return at

            # Upgrade a: SIGTERM mid-burst; its readers are told 1012 and move to b.
            ids = await publish_burst(redis, key, 120, batch=10, pause=0.02, during=drain(a))
            assert a.proc.wait(TIMEOUT) == 0
            await wait_for(lambda: all(r.cursor == ids[-1] for r in readers),
                           "every reader has the first burst", TIMEOUT * 2)
            assert len([r for r in readers if 1012 in r.closes]) == on_a
            await check_exact(readers, redis, key)

            # a comes back on its port; then b is upgraded the same way.
            with ticker(tmp_path, "a2", port=a.port, **common) as a2:
                ids = await publish_burst(redis, key, 120, batch=10, pause=0.02,
                                          during=drain(b))
                assert b.proc.wait(TIMEOUT) == 0
                await wait_for(lambda: all(r.cursor == ids[-1] for r in readers),
                               "every reader has the second burst", TIMEOUT * 2)
                await check_exact(readers, redis, key)
                assert all(1012 in r.closes for r in readers)  # every one moved once
                await wait_for(lambda: open_connections(a2) == READERS,
                               "all readers on the upgraded a")
        finally:
            await stop_readers(readers)


async def test_a_reader_moved_to_a_node_that_is_behind_waits_for_it(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    """The other node's reader is late (its Redis replies are held): the resuming reader is
    not given a reset snapshot; it waits, then gets exactly what it missed."""
    key = Keys(prefix).stream("en")
    relay = await Relay(int(redis_url.rsplit(":", 1)[1].split("/")[0])).start()
    late_url = f"redis://127.0.0.1:{relay.port}/0"
    try:
        async with running_server(make_settings(redis_url, prefix)) as ahead, \
                running_server(make_settings(late_url, prefix)) as behind:
            async with websockets.connect(ahead.ws()) as ws:
                cursor = (await recv_json(ws))["cursor"]
                relay.hold()  # from now on `behind` reads nothing
                ids = await publish_burst(redis, key, 3, batch=3)
                frames = await recv_until(ws, lambda f: f.get("cursor") == ids[-1])
                assert [e["cursor"] for f in frames for e in f["events"]] == ids
                cursor = ids[-1]
            missed = await publish_burst(redis, key, 2, batch=2, label="while moving")
            late = parse_stream_id(behind.runtime.hub.channels["en"].state.cursor)
            assert late is not None and late < parse_stream_id(ids[0])  # type: ignore[operator]

            async with websockets.connect(behind.ws(cursor=cursor)) as ws:
                started = time.monotonic()
                # Its node is behind the cursor: nothing yet (no reset snapshot either).
                try:
                    early = await asyncio.wait_for(ws.recv(), 0.5)
                    raise AssertionError(f"answered before catching up: {early!r}")
                except TimeoutError:
                    pass
                relay.release()
                frame = await recv_json(ws)
                assert frame["type"] == "events" and frame["missed"] == 2, frame
                assert [e["cursor"] for e in frame["events"]] == missed
                assert time.monotonic() - started < 2.5  # within resume.AHEAD_RETRIES x AHEAD_WAIT
                live = await publish_burst(redis, key, 1, batch=1, label="live")
                frame = await recv_json(ws)
                assert [e["cursor"] for e in frame["events"]] == live
    finally:
        relay.release()
        await relay.close()
