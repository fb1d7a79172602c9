"""/metrics: the exposition format (parsed by Prometheus's own parser), the values behind it on a
real server, and the sharing of series between workers."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.conftest import Server, make_settings, recv_json, recv_until, running_server
from tests.e2e.rawws import RawClient
from ticker.metrics import DEMAND_WINDOW, Family, SharedMetrics, fmt, gauge, render
from ticker.store import Keys


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """sample name -> [(labels, value)], through prometheus_client's text parser."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
          **labels: str) -> float:
    found = [v for lab, v in samples[name] if all(lab.get(k) == x for k, x in labels.items())]
    assert found, f"{name} {labels} not in {samples.get(name)}"
    return sum(found)


# -- the format -------------------------------------------------------------------------------


def test_render_escapes_labels_and_keeps_families_together() -> None:
    weird = 'a "quoted"\\back\nslash'
    text = render([
        ("0", [gauge("t_g", "A gauge.", 1.5, channel=weird),
               Family("t_h", "histogram", "A histogram.",
                      [("_bucket", (("le", "0.1"),), 1), ("_bucket", (("le", "+Inf"),), 2),
                       ("_sum", (), 0.3), ("_count", (), 2)])]),
        ("1", [gauge("t_g", "A gauge.", 2, channel="en")]),
    ])
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


def test_number_format() -> None:
    assert (fmt(3), fmt(0.25), fmt(math.inf), fmt(-math.inf), fmt(1e20)) == \
        ("3", "0.25", "+Inf", "-Inf", "1e+20")
    assert fmt(math.nan) == "NaN"


def test_shared_metrics_merge_workers_and_skip_broken_files(tmp_path: Path) -> None:
    zero, one = SharedMetrics(tmp_path, 0), SharedMetrics(tmp_path, 1)
    one.write([gauge("t_conn", "Connections.", 7)], now=100.0)
    zero.write([gauge("t_conn", "Connections.", 3)], now=100.0)
    (tmp_path / "worker-9.json").write_text("{not json")
    others = zero.others()  # itself excluded, the broken file skipped
    assert [(w, at, [f.name for f in fams]) for w, at, fams in others] == \
        [("1", 100.0, ["t_conn"])]
    assert others[0][2][0].samples == [("", (), 7.0)]
    assert not list(tmp_path.glob(".worker-*.tmp"))  # written atomically
    one.remove(1)
    assert zero.others() == []
    # JSON round trip keeps labels and suffixes.
    family = Family("t_h", "histogram", "H.", [("_bucket", (("le", "0.5"),), 4.0)])
    assert Family.from_json(json.loads(json.dumps(family.to_json()))) == family


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
        assert value(after, "ticker_on_air_items", channel="en") == 5
        assert value(after, "ticker_channel_last_event_timestamp_seconds", channel="en") > 1e9
        assert value(after, "process_open_fds") > 4
        assert value(after, "process_resident_memory_bytes") > 1e6

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
