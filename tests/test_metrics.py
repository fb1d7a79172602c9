"""/metrics: the exposition format (parsed by Prometheus's own parser), the values behind it on a
real server, the latency histogram over real observations, and the sharing of series between
workers."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import httpx
import prometheus_client
import websockets
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from tests.conftest import Server, make_settings, recv_json, recv_until, running_server
from tests.e2e.rawws import RawClient
from ticker.core.channels import Channel
from ticker.core.hub import Hub
from ticker.node.metrics import (
    DEMAND_WINDOW,
    SharedMetrics,
    WorkerCollector,
    exposition,
    labelled,
    latency_histogram,
    merge,
    private_registry,
)
from ticker.node.runtime import Runtime
from ticker.node.worker import Worker
from ticker.redis.keys import Keys

Samples = dict[str, list[tuple[dict[str, str], float]]]

# The `le` labels of ticker_publish_to_write_seconds, as this server has always spelt them.
LE = ("0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
      "5", "10", "+Inf")


def parse(text: str | bytes) -> Samples:
    """sample name -> [(labels, value)], through prometheus_client's text parser."""
    if isinstance(text, bytes):
        text = text.decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    found = [v for lab, v in samples[name] if all(lab.get(k) == x for k, x in labels.items())]
    assert found, f"{name} {labels} not in {samples.get(name)}"
    return sum(found)


class Fixed(Collector):
    """A collector of the families it was given."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def gauge(name: str, number: float, **labels: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, "A gauge.", labels=list(labels))
    family.add_metric(list(labels.values()), number)
    return family


def text_of(families: list[Metric]) -> str:
    return generate_latest(private_registry(Fixed(families))).decode()


# -- the format -------------------------------------------------------------------------------


def test_workers_series_merge_into_one_family_each_with_labels_escaped() -> None:
    weird = 'a "quoted"\\back\nslash'
    zero = labelled([gauge("t_g", 1.5, channel=weird),
                     HistogramMetricFamily("t_h", "A histogram.",
                                           buckets=[("0.1", 1), ("+Inf", 2)], sum_value=0.3)],
                    "0")
    one = labelled([gauge("t_g", 2, channel="en")], "1")
    text = text_of(merge([zero, one]))
    assert text.count("# TYPE t_g gauge") == 1
    lines = text.splitlines()
    # Both workers' t_g samples sit under the one HELP/TYPE, before the next family.
    assert lines.index("# TYPE t_h histogram") > max(
        i for i, line in enumerate(lines) if line.startswith("t_g{"))
    samples = parse(text)
    assert value(samples, "t_g", channel=weird, worker="0") == 1.5
    assert value(samples, "t_g", channel="en", worker="1") == 2
    assert value(samples, "t_h_count", worker="0") == 2
    assert text.endswith("\n")


def test_latency_histogram_over_real_observations() -> None:
    hub = Hub([Channel(name="en", lang="en", dir="ltr", title="Breaking")])
    ch = hub.channels["en"]
    now_ms = int(time.time() * 1000)

    def entry(age_ms: int) -> tuple[str, dict[bytes, bytes]]:
        return f"{now_ms - age_ms}-0", {b"text": f"{age_ms} ms old".encode()}

    # A node folding its backlog at start observes nothing.
    ch.apply([entry(60_000)], now_ms, live=False)
    ch.observe(time.time())
    assert sum(hub.counters.latency_counts) == 0
    # Ages mid-bucket (this test may be slow by 100 ms and still pass); the last entry's ID
    # is a minute ahead of this clock (a skewed publisher): counted as 0 s.
    ages = [30_000, 3_000, 350, 150, -60_000]
    ch.apply([entry(age) for age in ages], now_ms)
    ch.observe(time.time())
    samples = parse(text_of(labelled([latency_histogram(hub.counters)], "0")))
    buckets = {lab["le"]: v for lab, v in samples["ticker_publish_to_write_seconds_bucket"]}
    assert list(buckets) == list(LE)
    assert buckets == {"0.001": 1, "0.0025": 1, "0.005": 1, "0.01": 1, "0.025": 1, "0.05": 1,
                       "0.1": 1, "0.25": 2, "0.5": 3, "1": 3, "2.5": 3, "5": 4, "10": 4,
                       "+Inf": 5}
    assert value(samples, "ticker_publish_to_write_seconds_count", worker="0") == 5
    observed = value(samples, "ticker_publish_to_write_seconds_sum", worker="0")
    assert 33.5 <= observed < 33.5 + 4 * 0.1


def test_shared_metrics_round_trip_and_skip_broken_files(tmp_path: Path) -> None:
    zero, one = SharedMetrics(tmp_path, 0), SharedMetrics(tmp_path, 1)
    written = labelled([
        gauge("t_conn", 7, channel="en"),
        CounterMetricFamily("t_events_total", "Events.", 3),
        HistogramMetricFamily("t_h", "H.", buckets=[("0.5", 4), ("+Inf", 5)], sum_value=1.5),
        gauge("t_max", math.inf),
    ], "1")
    one.write(written, now=100.0)
    zero.write(labelled([gauge("t_conn", 3, channel="en")], "0"), now=100.0)
    (tmp_path / "worker-9.json").write_text("{not json")
    (tmp_path / "worker-8.json").write_text(
        '{"worker": 8, "at": 1, "families": [{"name": "t_x", "type": "nonsense", '
        '"help": "", "samples": []}]}')
    (tmp_path / "worker-7.json").write_text('{"worker": 7, "at": 1}')
    others = zero.others()  # itself excluded, the broken files skipped
    assert [(worker, at) for worker, at, _ in others] == [(1, 100.0)]
    assert others[0][2] == written  # names, types, help, samples, labels, values (inf too)
    assert not list(tmp_path.glob(".worker-*.tmp"))  # written atomically
    one.remove(1)
    assert zero.others() == []


async def test_a_scrape_answers_for_every_worker(tmp_path: Path, redis_url: str,
                                                 prefix: str) -> None:
    settings = make_settings(redis_url, prefix)
    clients = [Redis.from_url(redis_url) for _ in range(3)]
    zero, one, two = (Runtime(settings, client, Worker(index, tmp_path))
                      for index, client in enumerate(clients))
    try:
        now_ms = int(time.time() * 1000)
        one.hub.channels["en"].apply(
            [(f"{now_ms - 350}-0", {b"text": b"a"}), (f"{now_ms - 150}-0", {b"text": b"b"})],
            now_ms)
        one.hub.channels["en"].observe(now_ms / 1000)
        for runtime, written in ((one, time.time() - 0.5), (two, time.time())):
            shared = SharedMetrics.of(runtime.worker)
            assert shared is not None
            shared.write(WorkerCollector(runtime).collect(), now=written)
        (tmp_path / "worker-9.json").write_text("{not json")  # skipped
        text = exposition(zero).decode()
    finally:
        for client in clients:
            await client.aclose()
    types = [line for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(types) == len(set(types))  # each family once, every worker's samples under it
    samples = parse(text)
    for name in ("ticker_ready", "ticker_publish_to_write_seconds_count",
                 "process_resident_memory_bytes", "process_open_fds",
                 "ticker_metrics_age_seconds"):
        assert [lab["worker"] for lab, _ in samples[name]] == ["0", "1", "2"], name
    assert [(lab["channel"], lab["transport"], lab["worker"])
            for lab, _ in samples["ticker_connections"]] == [
        (ch, transport, worker) for worker in "012" for ch in ("en", "ar")
        for transport in ("ws", "sse")]
    assert value(samples, "ticker_events_total", worker="1") == 2
    assert value(samples, "ticker_events_total", worker="0") == 0
    assert value(samples, "ticker_publish_to_write_seconds_bucket", le="0.1", worker="1") == 0
    assert value(samples, "ticker_publish_to_write_seconds_bucket", le="0.25", worker="1") == 1
    assert value(samples, "ticker_publish_to_write_seconds_bucket", le="0.5", worker="1") == 2
    assert value(samples, "ticker_on_air_items", channel="en", worker="1") == 2
    assert value(samples, "ticker_metrics_age_seconds", worker="0") == 0
    assert 0.5 <= value(samples, "ticker_metrics_age_seconds", worker="1") < 5
    assert 0 <= value(samples, "ticker_metrics_age_seconds", worker="2") < 5


# -- a real server ----------------------------------------------------------------------------


async def scrape(server: Server) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with httpx.AsyncClient(base_url=server.http) as http:
        r = await http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(r.text)


async def test_metrics_count_what_happens(
    server: Server, redis: Redis, prefix: str, token: str
) -> None:
    keys = Keys(prefix)
    en = [await websockets.connect(server.ws("en")) for _ in range(3)]
    ar = await websockets.connect(server.ws("ar"))
    try:
        for ws in [*en, ar]:
            await recv_json(ws)
        before = await scrape(server)
        assert value(before, "ticker_connections", channel="en", transport="ws") == 3
        assert value(before, "ticker_connections", channel="ar", transport="ws") == 1
        assert value(before, "ticker_connections", channel="en", transport="sse") == 0
        assert value(before, "ticker_ready") == 1 and value(before, "ticker_reader_up") == 1
        assert value(before, "ticker_stale") == 0 and value(before, "ticker_draining") == 0

        async with httpx.AsyncClient(base_url=server.http) as http:
            for n in range(5):
                r = await http.post("/api/channels/en/items", json={"text": f"item {n}"},
                                    headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 201
        last = r.json()["cursor"]
        await redis.xadd(keys.stream("en"), {"text": "two\nlines"})  # invalid
        for ws in en:
            await recv_until(ws, lambda f: f.get("cursor") == last)
        after = await scrape(server)
        assert value(after, "ticker_events_total") - value(before, "ticker_events_total") == 5
        assert value(after, "ticker_deliveries_total") - \
            value(before, "ticker_deliveries_total") >= 15
        assert value(after, "ticker_publish_to_write_seconds_count") >= 5
        buckets = [v for lab, v in after["ticker_publish_to_write_seconds_bucket"]]
        assert buckets == sorted(buckets)  # cumulative
        assert value(after, "ticker_publish_to_write_seconds_bucket", le="+Inf") == \
            value(after, "ticker_publish_to_write_seconds_count")
        assert [lab["le"] for lab, _ in after["ticker_publish_to_write_seconds_bucket"]] == \
            list(LE)
        assert value(after, "ticker_on_air_items", channel="en") == 5
        assert value(after, "ticker_channel_last_event_timestamp_seconds", channel="en") > 1e9
        assert value(after, "process_open_fds") > 4
        assert value(after, "process_resident_memory_bytes") > 1e6
        assert value(after, "process_max_fds") >= value(after, "process_open_fds")
        assert value(after, "process_cpu_seconds_total") > 0
        assert 0 < value(after, "process_start_time_seconds") <= time.time()
        # Every series has its worker label ("0": a single process), and nothing of ours went
        # into the library's global registry.
        assert all(lab.get("worker") == "0" for series in after.values() for lab, _ in series)
        assert not [family.name for family in prometheus_client.REGISTRY.collect()
                    if family.name.startswith("ticker_")]

        # The invalid entry: rejected, dead-lettered once, both counted.
        async def dead_lettered() -> dict[str, list[tuple[dict[str, str], float]]]:
            while True:
                got = await scrape(server)
                if value(got, "ticker_dead_letters_total") >= 1:
                    return got
                await asyncio.sleep(0.02)

        got = await asyncio.wait_for(dead_lettered(), 5)
        assert value(got, "ticker_rejected_entries_total") == 1
        assert value(got, "ticker_dead_letters_total") == 1
        assert (await redis.xlen(keys.deadletter)) == 1
    finally:
        for ws in [*en, ar]:
            await ws.close()


async def test_metrics_count_slow_readers(redis_url: str, prefix: str, redis: Redis) -> None:
    settings = make_settings(redis_url, prefix, client_buffer=4096, socket_sndbuf=4096)
    async with running_server(settings) as server:
        stalled = await RawClient.connect(server.port, "/ws/en", rcvbuf=2048)
        try:
            await stalled.message()
            key = Keys(prefix).stream("en")
            for n in range(40):
                await redis.xadd(key, {"text": f"{n} " + "x" * 250})

            async def blocked() -> float:
                while True:
                    got = await scrape(server)
                    if value(got, "ticker_slow_blocks_total") >= 1:
                        return value(got, "ticker_blocked_connections", channel="en")
                    await asyncio.sleep(0.02)

            assert await asyncio.wait_for(blocked(), 5) == 1
        finally:
            stalled.close()


async def test_redis_errors_are_counted_by_component(prefix: str) -> None:
    from tests.conftest import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with running_server(make_settings(dead, prefix), wait_ready=False) as server:
        async with httpx.AsyncClient(base_url=server.http) as http:
            r = await http.post("/api/channels/en/items", json={"text": "x"},
                                headers={"Authorization": "Bearer tkr_x"})
            assert r.status_code == 503
            got = await scrape(server)
        assert value(got, "ticker_redis_errors_total", component="api") == 1
        assert value(got, "ticker_redis_errors_total", component="reader") >= 1
        assert value(got, "ticker_reader_up") == 0 and value(got, "ticker_ready") == 0
        assert value(got, "ticker_reader_seconds_since_read") == -1  # never read


def test_workers_write_their_series_only_while_someone_scrapes(tmp_path: Path) -> None:
    zero, one = SharedMetrics(tmp_path, 0), SharedMetrics(tmp_path, 1)
    assert not one.wanted()  # nobody ever scraped: the workers write nothing
    assert zero.demand() is True  # a first scrape: the others were not writing, wait for them
    assert one.wanted()
    assert zero.demand() is False  # scrapes keep coming: their files are fresh
    scraped = (tmp_path / "scraped").stat().st_mtime
    assert one.wanted(now=scraped + DEMAND_WINDOW - 1)
    assert not one.wanted(now=scraped + DEMAND_WINDOW + 1)  # a quiet spell: they stop
