"""Faults of real networks (issue 18), with real components: a redis-server, ticker nodes (real
uvicorn), real websocket and SSE readers, each checked for loss, duplicates and order.

- A partition between a node and Redis: Redis runs in a network namespace of its own, and the
  partition makes every packet between the two vanish (tests/e2e/netns.py: no reset, no ICMP).
  The node's readers are told `stale`, its publishes answer 503 and /readyz 503, each within
  `BOUND`; when it heals the node carries on by itself and every reader gets what it missed.
- 300 ms of latency each way and lost segments between a node and Redis during a burst, made
  by a user-space relay (`fleet.SlowLink`: this kernel has no netem): everything arrives, in
  order, once, and latency alone never makes the node stale or unready.
- A partition between readers and a node: the websocket readers live in a network namespace
  and vanish without a FIN or a reset. The node's pings find them within two ping intervals,
  and their memory, hub entries and per-address slots are let go: the same address may open
  as many connections again, and each reader resumes by cursor with nothing lost. SSE readers
  have no pings: the kernel drops them once a heartbeat has gone unacknowledged for
  `TICKER_CLIENT_TIMEOUT`, beside a node with that setting off that does not. A websocket
  reader set aside as slow is not pinged either: the same timeout drops it, or the slow-reader
  sweep (`TICKER_SLOW_TIMEOUT`), each shown on a node with the other off.

The figures each test measures are printed (`pytest -s`) and kept in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.conftest import TIMEOUT, RedisServer, make_settings, running_server
from tests.e2e.fleet import (
    Reader,
    SlowLink,
    SSEReader,
    check_exact,
    publish_burst,
    start_readers,
    stop_readers,
    wait_for,
)
from tests.e2e.netns import Netns, netns, redis_inside  # noqa: F401 (the fixture)
from tests.e2e.ticker_node import node as ticker_node
from ticker.redis.connection import connect as redis_client
from ticker.redis.connection import reply_timeout
from ticker.redis.keys import Keys
from ticker.redis.tokens import Tokens
from ticker.transport.websocket import TickerWebSocket

# What the node promises in a partition from Redis, at the production settings
# (TICKER_READ_BLOCK_MS=1000, TICKER_REDIS_TIMEOUT=2): readers told stale, publishing 503 and
# /readyz 503 within the reply timeout (3 s); the test allows 5 s.
BOUND = 5.0


def report(what: str, seconds: float) -> None:
    print(f"[partition] {what}: {seconds:.2f} s", flush=True)


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    """The answer to `request` (not sent until awaited here) and how long it took."""
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def status_after(http: httpx.AsyncClient, path: str, status: int, since: float) -> float:
    """Seconds from `since` until GET `path` answers `status`."""
    while time.monotonic() - since < TIMEOUT:
        if (await http.get(path)).status_code == status:
            return time.monotonic() - since
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never answered {status}")


async def until(predicate: Callable[[], bool], what: str, since: float,
                timeout: float = TIMEOUT) -> float:
    """Seconds from `since` until `predicate` holds."""
    await wait_for(predicate, what, timeout)
    return time.monotonic() - since


async def test_partition_from_redis_readers_told_stale_publish_503_then_nothing_lost(
    netns: Netns, tmp_path: Path, prefix: str  # noqa: F811 (the fixture)
) -> None:
    tcp_url, unix_url = redis_inside(netns, tmp_path)
    keys = Keys(prefix)
    key = keys.stream("en")
    # The test's own client, and node B's, reach Redis by its Unix socket: no partition there.
    redis = redis_client(unix_url)
    cut_node = make_settings(tcp_url, prefix, read_block_ms=1000)  # production timers
    assert cut_node.redis_timeout == 2.0
    try:
        token = await Tokens(redis, keys).create("partition")
        auth = {"Authorization": f"Bearer {token}"}
        async with running_server(cut_node) as node_a, \
                running_server(make_settings(unix_url, prefix)) as node_b, \
                httpx.AsyncClient(base_url=node_a.http, timeout=TIMEOUT) as http_a, \
                httpx.AsyncClient(base_url=node_b.http, timeout=TIMEOUT) as http_b:
            readers = [
                *await start_readers(6, lambda c: node_a.ws("en", c)),
                *await start_readers(3, lambda _: node_a.http + "/sse/en", kind=SSEReader),
            ]
            others = await start_readers(2, lambda c: node_b.ws("en", c))

            def publish(http: httpx.AsyncClient, text: str) -> Awaitable[httpx.Response]:
                return http.post("/api/channels/en/items", json={"text": text}, headers=auth)

            try:
                for n in range(10):
                    r = await publish(http_a, f"before {n}")
                    assert r.status_code == 201, r.text
                last = r.json()["cursor"]
                await wait_for(lambda: all(x.cursor == last for x in readers), "items before")

                netns.cut()
                cut_at = time.monotonic()
                # A publish on the cut node at once: its Redis connection hangs.
                first, first_took = await timed(publish(http_a, "during (A)"))
                assert first.status_code == 503, first.text
                assert first.json()["error"] == "unavailable"
                report("publish on the cut node answered 503 after", first_took)
                stale_after = await until(lambda: all(x.stale == [True] for x in readers),
                                          "readers told stale", cut_at, BOUND + 1)
                report("every reader (6 websocket, 3 SSE) told stale after", stale_after)

                readyz_after = await status_after(http_a, "/readyz", 503, cut_at)
                report("/readyz 503 after", readyz_after)
                ready = (await http_a.get("/readyz")).json()
                assert ready["redis"] == "down" and "Timeout" in ready["last_error"]

                # The partition lasts 8 s: publishing on A keeps failing fast; the newsroom
                # goes on through node B, whose readers see it live.
                took: list[float] = [first_took]
                during: list[str] = []
                n = 0
                while time.monotonic() - cut_at < 8.0:
                    r, seconds = await timed(publish(http_a, "during (A)"))
                    assert r.status_code == 503, r.text
                    took.append(seconds)
                    for _ in range(4):
                        r = await publish(http_b, f"during (B) {n}")
                        assert r.status_code == 201, r.text
                        during.append(r.json()["cursor"])
                        n += 1
                    await asyncio.sleep(0.5)
                report(f"slowest of {len(took)} publishes on the cut node (all 503)", max(took))
                assert max(stale_after, readyz_after, *took) < BOUND
                assert all(x.stale == [True] for x in readers)
                assert all(not x.stale for x in others)
                assert all(x.cursor == during[-1] for x in others)

                netns.heal()
                healed_at = time.monotonic()
                back = await until(lambda: all(x.stale == [True, False] for x in readers),
                                   "readers told the feed is back", healed_at)
                caught_up = await until(lambda: all(x.cursor == during[-1] for x in readers),
                                        "what they missed", healed_at)
                report("after the heal, every reader told stale:false after", back)
                report("after the heal, every reader had all it missed after", caught_up)
                await wait_for(lambda: node_a.runtime.ready, "node A ready again")
                assert (await http_a.get("/readyz")).status_code == 200
                for n in range(5):
                    r = await publish(http_a, f"after {n}")
                    assert r.status_code == 201, r.text
                last = r.json()["cursor"]
                await wait_for(lambda: all(x.cursor == last for x in (*readers, *others)),
                               "the items after")
                await check_exact([*readers, *others], redis, key)
                # Nobody reconnected: the readers kept their ticker through the partition.
                assert all(x.connections == 1 for x in (*readers, *others))
                # What A answered 503 was never written, and nothing was written twice.
                texts = [fields[b"text"] for _, fields in await redis.xrange(key)]
                assert b"during (A)" not in texts
                assert len(texts) == len(set(texts)) == 10 + len(during) + 5
            finally:
                await stop_readers([*readers, *others])
    finally:
        await redis.aclose()


async def test_a_command_given_up_in_a_partition_is_not_written_when_it_heals(
    netns: Netns, tmp_path: Path  # noqa: F811 (the fixture)
) -> None:
    """An XADD that timed out during a partition stays unwritten after the network heals: the
    kernel would otherwise retransmit it for minutes and Redis would apply it late (TCP_USER_
    TIMEOUT, ticker/redis/connection.py). Without the option this test fails (tried)."""
    tcp_url, unix_url = redis_inside(netns, tmp_path)
    client, local = redis_client(tcp_url), redis_client(unix_url)
    try:
        assert await client.ping()
        netns.cut()
        started = time.monotonic()
        try:
            await client.xadd("orphan", {"text": "given up"})
            raise AssertionError("the XADD went through a partition")
        except RedisTimeoutError:
            pass
        took = time.monotonic() - started
        report("an XADD in a partition gave up after", took)
        assert reply_timeout() - 0.1 < took < BOUND
        await asyncio.sleep(2.0)  # the partition lasts on past the kernel's own timeout
        netns.heal()
        await asyncio.sleep(3.0)  # long enough for a retransmission to land
        assert await local.xlen("orphan") == 0
        assert await client.xadd("orphan", {"text": "after"})  # and the client works again
        assert await local.xlen("orphan") == 1
    finally:
        await client.aclose()
        await local.aclose()


async def test_300_ms_each_way_and_lost_segments_to_redis_during_a_burst(
    redis_server: RedisServer, redis: Redis, prefix: str
) -> None:
    link = await SlowLink(redis_server.port, delay=0.3, loss=0.05, stall=(0.2, 0.4)).start()
    keys = Keys(prefix)
    key = keys.stream("en")
    token = await Tokens(redis, keys).create("slowlink")
    auth = {"Authorization": f"Bearer {token}"}
    # Production timers: the XREAD BLOCK is 1 s, a reply is awaited 2 s beyond it.
    settings = make_settings(f"redis://127.0.0.1:{link.port}/0", prefix, read_block_ms=1000)
    try:
        async with running_server(settings) as node, \
                httpx.AsyncClient(base_url=node.http, timeout=TIMEOUT) as http:
            readers = [
                *await start_readers(20, lambda c: node.ws("en", c)),
                *await start_readers(5, lambda _: node.http + "/sse/en", kind=SSEReader),
            ]
            unready: list[float] = []

            async def watch() -> None:
                while True:
                    if not node.runtime.ready:
                        unready.append(time.monotonic())
                    await asyncio.sleep(0.05)

            took: list[float] = []

            async def through_the_node(worker: int) -> None:
                for n in range(6):
                    r, seconds = await timed(http.post(
                        "/api/channels/en/items", json={"text": f"desk {worker}-{n}"},
                        headers=auth))
                    assert r.status_code == 201, r.text
                    took.append(seconds)

            watcher = asyncio.create_task(watch())
            try:
                started = time.monotonic()
                # The wires XADD straight into Redis while six desks publish through the node:
                # everything the node reads and writes crosses the slow link.
                desks = [asyncio.create_task(through_the_node(w)) for w in range(6)]
                wired = await publish_burst(redis, key, 300, batch=10, pause=0.1, label="wire")
                await asyncio.gather(*desks)
                done = time.monotonic()
                rows = await redis.xrevrange(key, count=1)
                last = rows[0][0].decode()
                await wait_for(lambda: all(x.cursor == last for x in readers),
                               "every reader has the whole burst", 30)
                lag = time.monotonic() - done
            finally:
                watcher.cancel()
            hub = node.runtime.hub.counters
            written = sum(hub.latency_counts)
            report(f"burst of {len(wired)} XADDs and {len(took)} HTTP publishes took",
                   done - started)
            report("HTTP publish through the link, median", statistics.median(took))
            report("HTTP publish through the link, slowest", max(took))
            report("mean publish-to-write on the node", hub.latency_sum / written)
            report("last reader complete after the last publish", lag)
            print(f"[partition] the link relayed {link.chunks} chunks, held back "
                  f"{link.stalled} ({100 * link.stalled / link.chunks:.1f} %)", flush=True)
            await check_exact(readers, redis, key)
            assert len(wired) + len(took) == 336
            # Latency is not an outage: no reader was told stale, the node stayed ready, and
            # nobody was disconnected.
            assert all(x.stale == [] for x in readers)
            assert unready == []
            assert all(x.connections == 1 for x in readers)
            assert link.stalled > 0 and min(took) > 4 * link.delay  # it was slow indeed
            await stop_readers(readers)
    finally:
        await link.close()


def from_inside(space: Netns, port: int) -> Callable[[], Awaitable[socket.socket]]:
    """Connections from the namespace to a node on the host: the readers' address is
    space.inside."""

    async def connect() -> socket.socket:
        sock = space.socket_inside()
        try:
            await asyncio.get_running_loop().sock_connect(sock, (space.host, port))
        except OSError:
            sock.close()
            raise
        return sock

    return connect


async def open_connections(http: httpx.AsyncClient) -> int:
    """`ticker_connections` of the node: its open websockets and SSE streams."""
    text = (await http.get("/metrics")).text
    return int(sum(s.value for f in text_string_to_metric_families(text)
                   for s in f.samples if s.name == "ticker_connections"))


async def back_after_heal(space: Netns, readers: Sequence[Reader], last: str) -> None:
    """Heal; the readers give up on their dead connections (as a browser does after a while)
    and reconnect from the same address with their cursors (`?cursor=` or Last-Event-ID):
    all of them must fit again and reach `last`, what they missed included."""
    space.heal()
    for r in readers:
        await r.stop()
        r.start()
    await wait_for(lambda: all(r.cursor == last for r in readers),
                   "the readers back, with what they missed")


def websockets_alive() -> int:
    """Server-side websocket objects still in memory (after a collection)."""
    gc.collect()
    return sum(isinstance(o, TickerWebSocket) for o in gc.get_objects())


async def test_readers_cut_off_without_a_close_are_found_by_pings_and_let_go(
    netns: Netns, redis_url: str, redis: Redis, prefix: str  # noqa: F811 (the fixture)
) -> None:
    cap = 8  # TICKER_MAX_CONNECTIONS_PER_IP: the readers fill it
    interval = 1.0  # TICKER_PING_INTERVAL (20 s in production)
    key = Keys(prefix).stream("en")
    settings = make_settings(redis_url, prefix, host=netns.host, ping_interval=interval,
                             max_connections_per_ip=cap)
    baseline = websockets_alive()
    async with running_server(settings) as node, \
            httpx.AsyncClient(base_url=f"http://{netns.host}:{node.port}") as http:
        runtime, hub = node.runtime, node.runtime.hub

        def url(cursor: str | None) -> str:
            return f"ws://{netns.host}:{node.port}/ws/en" + (f"?cursor={cursor}" if cursor else "")

        inside = from_inside(netns, node.port)

        async def open_readers() -> int:
            return await open_connections(http)

        readers = [Reader(url, sock=inside).start() for _ in range(cap)]
        try:
            await wait_for(lambda: all(r.first_cursor is not None for r in readers),
                           "the readers' snapshots")
            assert runtime.ws_cap.open == {netns.inside: cap}
            before = await publish_burst(redis, key, 5, label="before")
            await wait_for(lambda: all(r.cursor == before[-1] for r in readers), "before")
            await asyncio.sleep(2.5 * interval)  # pings come and are answered
            assert hub.counters.pings_missed == 0 and hub.connections() == cap
            assert websockets_alive() == baseline + cap

            netns.cut()  # the readers vanish: no FIN, no reset, nothing more from them
            cut_at = time.monotonic()
            during = await publish_burst(redis, key, 5, label="during")  # into the void
            found = await until(lambda: hub.connections() == 0, "half-open readers dropped",
                                cut_at)
            report(f"{cap} half-open readers found by pings (interval {interval:.0f} s) after",
                   found)
            assert found < 2 * interval + 1.0  # two intervals, on the once-a-second tick
            assert hub.counters.pings_missed == cap
            assert runtime.ws_cap.open == {} and runtime.per_channel["en"] == 0
            assert await open_readers() == 0
            assert websockets_alive() == baseline  # their memory is let go
            assert all(r.connections == 1 and r.closes == [] for r in readers)  # unaware

            await back_after_heal(netns, readers, during[-1])
            assert all(r.connections == 2 and r.missed == [len(during)] for r in readers)
            assert runtime.ws_cap.open == {netns.inside: cap} and await open_readers() == cap
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(url(None), sock=await inside(),
                                              open_timeout=TIMEOUT):
                    pass
            assert refused.value.response.status_code == 429  # the cap still holds
            after = await publish_burst(redis, key, 5, label="after")
            await wait_for(lambda: all(r.cursor == after[-1] for r in readers), "after")
            await check_exact(readers, redis, key)
        finally:
            netns.heal()  # so that a reader stopped after a failure closes at once
            await stop_readers(readers)


async def test_sse_readers_cut_off_without_a_close_are_dropped_by_the_client_timeout(
    netns: Netns, redis_url: str, redis: Redis, prefix: str  # noqa: F811 (the fixture)
) -> None:
    """SSE has no pings: a half-open stream is found by the kernel, once its heartbeats go
    unacknowledged for `TICKER_CLIENT_TIMEOUT` (TCP_USER_TIMEOUT, set on the listening
    socket). A second node with the setting off (0) is the control: its half-open streams
    are still counted open long after the first node has let its own go."""
    cap, heartbeat, timeout = 6, 1.0, 2.0  # production: 15 s heartbeats, a 30 s timeout
    key = Keys(prefix).stream("en")
    settings = make_settings(redis_url, prefix, host=netns.host, sse_heartbeat=heartbeat,
                             client_timeout=timeout, max_connections_per_ip=cap)
    async with ticker_node(settings) as node, \
            ticker_node(settings.with_(client_timeout=0.0)) as control, \
            httpx.AsyncClient(base_url=f"http://{netns.host}:{node.port}") as http, \
            httpx.AsyncClient(base_url=f"http://{netns.host}:{control.port}") as http_control:
        runtime = node.runtime

        def stream_of(port: int) -> Callable[[str | None], str]:
            return lambda cursor: f"http://{netns.host}:{port}/sse/en"

        readers = [SSEReader(stream_of(node.port), sock=from_inside(netns, node.port)).start()
                   for _ in range(cap)]
        others = [SSEReader(stream_of(control.port),
                            sock=from_inside(netns, control.port)).start() for _ in range(2)]
        try:
            await wait_for(lambda: all(r.first_cursor is not None for r in readers + others),
                           "the readers' snapshots")
            assert runtime.ws_cap.open == {netns.inside: cap}
            assert await open_connections(http) == cap
            before = await publish_burst(redis, key, 5, label="before")
            await wait_for(lambda: all(r.cursor == before[-1] for r in readers + others),
                           "before")

            netns.cut()  # the readers vanish: no FIN, no reset; nothing is published now
            cut_at = time.monotonic()
            found = await until(lambda: runtime.ws_cap.open == {}, "half-open streams dropped",
                                cut_at)
            report(f"{cap} half-open SSE readers dropped (heartbeat {heartbeat:.0f} s, "
                   f"client timeout {timeout:.0f} s) after", found)
            # A heartbeat within `heartbeat`, unacknowledged for `timeout`: dropped.
            assert found < heartbeat + timeout + 1.0
            assert await open_connections(http) == 0 and runtime.per_channel["en"] == 0
            assert all(r.connections == 1 for r in readers)  # they never knew
            # The control still counts its streams open: only the kernel's ~15 min would end
            # them.
            await asyncio.sleep(1.0)
            assert control.runtime.ws_cap.open == {netns.inside: 2}
            assert await open_connections(http_control) == 2

            during = await publish_burst(redis, key, 5, label="during")
            await back_after_heal(netns, readers, during[-1])
            assert all(r.connections == 2 and r.resets == 0 for r in readers)
            assert runtime.ws_cap.open == {netns.inside: cap}
            assert await open_connections(http) == cap
            after = await publish_burst(redis, key, 5, label="after")
            await wait_for(lambda: all(r.cursor == after[-1] for r in readers), "after")
            await check_exact(readers, redis, key)
        finally:
            netns.heal()
            await stop_readers(readers + others)


async def test_half_open_readers_set_aside_as_slow_are_dropped_by_timeout_or_sweep(
    netns: Netns, redis_url: str, redis: Redis, prefix: str  # noqa: F811 (the fixture)
) -> None:
    """A half-open websocket that is sent more than its kernel buffers and
    `TICKER_CLIENT_BUFFER` hold is *set aside* as slow, and set-aside readers are not pinged.
    Two ways let it go, each shown on a node of its own with the other way off: the kernel,
    once the unacknowledged data is `TICKER_CLIENT_TIMEOUT` old (TCP_USER_TIMEOUT), and the
    slow-reader sweep, once it has been set aside `TICKER_SLOW_TIMEOUT`."""
    per_node, timeout = 4, 2.0  # production: both timeouts 30 s
    key = Keys(prefix).stream("en")
    # Small buffers, so that a burst fills the kernel's and the transport's quickly; pings
    # every 20 s (production), so that none is due during the test.
    base = make_settings(redis_url, prefix, host=netns.host, client_buffer=8 * 1024,
                         socket_sndbuf=4096, max_connections_per_ip=per_node)
    kernel_settings = base.with_(client_timeout=timeout, slow_timeout=600.0)
    sweep_settings = base.with_(client_timeout=0.0, slow_timeout=timeout)
    baseline = websockets_alive()
    async with ticker_node(kernel_settings) as by_kernel, \
            ticker_node(sweep_settings) as by_sweep:
        nodes = (by_kernel, by_sweep)

        def url_of(port: int) -> Callable[[str | None], str]:
            return lambda cursor: (f"ws://{netns.host}:{port}/ws/en"
                                   + (f"?cursor={cursor}" if cursor else ""))

        readers = {n.port: [Reader(url_of(n.port), sock=from_inside(netns, n.port)).start()
                            for _ in range(per_node)] for n in nodes}
        everyone = [r for group in readers.values() for r in group]
        try:
            await wait_for(lambda: all(r.first_cursor is not None for r in everyone),
                           "the readers' snapshots")
            before = await publish_burst(redis, key, 5, label="before")
            await wait_for(lambda: all(r.cursor == before[-1] for r in everyone), "before")
            assert websockets_alive() == baseline + 2 * per_node

            netns.cut()  # the readers vanish: no FIN, no reset, nothing more from them
            cut_at = time.monotonic()  # what is sent from now on is never acknowledged
            # More than the kernel's send buffer and the transport's limit hold: set aside.
            during = await publish_burst(redis, key, 300, batch=50, label="during")
            for n in nodes:
                await until(lambda n=n: n.runtime.hub.counters.blocked == per_node,
                            "every half-open reader set aside", cut_at)
                assert n.runtime.hub.connections() == per_node  # not dropped yet

            found = await asyncio.gather(*(
                until(lambda hub=n.runtime.hub: hub.connections() == 0,
                      "set-aside half-open readers dropped", cut_at) for n in nodes))
            dropped = {n.port: seconds for n, seconds in zip(nodes, found, strict=True)}
            report(f"{per_node} set-aside half-open readers dropped by the kernel "
                   f"(client timeout {timeout:.0f} s) after", dropped[by_kernel.port])
            report(f"{per_node} set-aside half-open readers dropped by the slow sweep "
                   f"(slow timeout {timeout:.0f} s) after", dropped[by_sweep.port])
            # The kernel: the timeout, and its retransmission timer's backoff before it looks.
            assert timeout <= dropped[by_kernel.port] < 2 * timeout + 1.0
            # The sweep: the timeout, on the once-a-second housekeeping tick.
            assert timeout <= dropped[by_sweep.port] < timeout + 1.5
            assert by_kernel.runtime.hub.counters.slow_dropped == 0
            assert by_sweep.runtime.hub.counters.slow_dropped == per_node
            for n in nodes:
                assert n.runtime.hub.counters.pings_missed == 0
                assert n.runtime.ws_cap.open == {} and n.runtime.per_channel["en"] == 0
                async with httpx.AsyncClient(base_url=f"http://{netns.host}:{n.port}") as http:
                    assert await open_connections(http) == 0
            assert websockets_alive() == baseline  # their memory is let go
            assert all(r.connections == 1 for r in everyone)  # they never knew

            await back_after_heal(netns, everyone, during[-1])
            assert all(r.connections == 2 and r.resets == 0 for r in everyone)
            assert all(n.runtime.ws_cap.open == {netns.inside: per_node} for n in nodes)
            after = await publish_burst(redis, key, 5, label="after")
            await wait_for(lambda: all(r.cursor == after[-1] for r in everyone), "after")
            await check_exact(everyone, redis, key)
        finally:
            netns.heal()
            await stop_readers(everyone)
