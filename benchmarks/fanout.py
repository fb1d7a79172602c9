"""Fan-out benchmark: ticker against a naive Starlette app, a Node.js ``ws`` server and a raw
asyncio floor.

For each number of clients (``--clients 1000,10000,50000``) and each server under test
(``--servers ticker,ticker:2,naive,raw,node``; ``:N`` = N processes sharing the port), on a private
redis-server, with the clients spread over load-gen worker processes (``loadgen.py``) and
127.0.0.x source addresses, it measures:

- idle memory: server RSS after connecting N clients minus before, per connection;
- connect cost: server CPU while the N clients connect (until each has its snapshot) / N, and
  connections per second;
- single items: ``--items`` XADDs ``--interval`` apart; publish→receive latency of every
  delivery (p50/p99/max), the time until the last client had each item (median over items),
  server CPU during the phase / deliveries;
- bursts: ``--burst-items`` XADDs in one pipeline; the time until every client has them all,
  deliveries/s, server CPU / deliveries (median over ``--bursts``);
- spread bursts: ``--burst-items`` XADDs evenly over ``--spread`` seconds; the time from the
  last XADD until every client has them all, server CPU / deliveries, frames per client;
- a reconnect storm: every client drops its connection at once (RST), ``--storm-items`` are
  published meanwhile, every client reconnects with ``?cursor=`` its last cursor; the time
  until every client has every missed item, server CPU per reconnection, what was lost;
- stalled readers (``--phases stall``, issue 8): ``--stall-fraction`` of the clients stop
  reading; the healthy clients' latency for ``--stall-items`` single items before and while
  they are stalled, server RSS before, once the stalled are full and at the end, and whether
  each stalled client, reading again, gets every item it missed in order;
- the breaking-news spike (``--phases spike``, issue 19): instead of connecting as fast as
  they can, the clients arrive evenly over ``--spike-seconds`` with no cursor while an item
  goes out every ``--spike-interval`` s: each client's connect-to-snapshot time, the live
  items' latency during the wave, that every client has the items after it, CPU per connect;
- SSE readers at websocket cost (``--phases sse``, ticker only): ``--sse-clients`` SSE readers
  join the websocket clients; CPU per SSE delivery against per websocket delivery, RSS per
  SSE reader, and an SSE reconnect storm resumed by ``Last-Event-ID``;
- balancers (``--balancer none,nginx,haproxy``): each server directly and through nginx
  (deploy/nginx.conf) and HAProxy in TCP mode (benchmarks/balancers.py), with the balancer's
  CPU per delivery and per connect, its RSS and the kernel's TCP memory per connection;
- several nodes (``--nodes 3`` behind a balancer, the capacity check of docs/capacity.md) and
  a node loss (``--phases nodeloss``): one node is killed and its readers reconnect through
  the balancer to the others with their cursors.

Server CPU is the run time of every thread of the server's process tree. All servers run in
the same invocation, one after another (``--rounds`` interleaves repeats), so ratios compare
figures taken under the same machine conditions; the targets of issue 7 are checked against
them at the end. Everything stays on 127.0.0.0/8 and every phase has a timeout.
Run: ``python benchmarks/fanout.py --clients 10000 --json out.json``; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect as ws_connect

try:
    from benchmarks import balancers, procs, report
except ImportError:  # run as a script: python benchmarks/fanout.py
    import balancers  # type: ignore[no-redef,import-not-found]
    import procs  # type: ignore[no-redef,import-not-found]
    import report  # type: ignore[no-redef,import-not-found]

STREAM = "ticker:stream:en"
SERVERS = ("ticker", "naive", "raw", "raw-items", "node")
RESUMES = ("ticker", "raw", "raw-items", "node")  # resume by cursor; naive sends a snapshot instead
FD_RESERVE = 500  # descriptors a server process needs besides its clients' sockets
BALANCERS = ("none", *balancers.KINDS)
PHASES = ("single", "burst", "spread", "storm", "stall", "spike", "sse", "nodeloss")
SSE_PER_ADDRESS = 80  # within ticker's per-address burst of HTTP requests (100)


@dataclass
class Meter:
    """The servers under test (each node's process tree) and the balancer in front, if any:
    CPU seconds and RSS, the nodes' and the balancer's apart. A node that was killed (the
    node-loss phase) no longer counts."""

    nodes: list[subprocess.Popen[bytes]]
    balancer: balancers.Balancer | None = None
    redis_pid: int | None = None

    def alive(self) -> list[int]:
        return [p.pid for p in self.nodes if p.poll() is None]

    def cpu(self) -> float:
        return sum(procs.cpu_seconds(pid) for pid in self.alive())

    def user_system(self) -> tuple[float, float]:
        split = [procs.user_system_seconds(pid) for pid in self.alive()]
        return sum(u for u, _ in split), sum(s for _, s in split)

    def rss(self) -> int:
        return sum(procs.rss_kib(pid) for pid in self.alive())

    def balancer_cpu(self) -> float:
        return self.balancer.cpu_seconds() if self.balancer is not None else 0.0

    def balancer_rss(self) -> int:
        return self.balancer.rss_kib() if self.balancer is not None else 0

    def redis_cpu(self) -> float:
        return procs.cpu_seconds(self.redis_pid) if self.redis_pid is not None else 0.0


def kind_of(spec: str) -> tuple[str, int]:
    """``"ticker:2"`` → ``("ticker", 2)``."""
    name, _, n = spec.partition(":")
    return name, int(n or 1)


def cannot_hold(spec: str, clients: int, nofile: int) -> str | None:
    """Why ``spec`` cannot hold ``clients`` sockets on this machine, or None if it can."""
    name, nprocs = kind_of(spec)
    # SO_REUSEPORT spreads connections by a hash: leave each process 5% of slack.
    per_process = clients / nprocs * 1.05 + FD_RESERVE
    if per_process > nofile:
        need = -(-int(clients * 1.05) // (nofile - FD_RESERVE))
        return (
            f"{clients} sockets over {nprocs} process(es) exceed the per-process file limit "
            f"({nofile}, a hard limit root cannot raise here); needs >= {need} processes"
            + ("" if name != "naive" else ", and the naive baseline runs as one")
        )
    return None


def deliveries_summary(replies: list[dict[str, Any]], sent: dict[int, int]) -> dict[str, Any]:
    """Latencies and last-client times of the items in ``sent`` (seq → publish time, ns)."""
    lat: list[int] = []
    last: dict[int, int] = {}
    for reply in replies:
        for seq_s, rec in reply["items"].items():
            seq = int(seq_s)
            if seq in sent:
                lat.extend(rec["lat_us"])
                last[seq] = max(last.get(seq, 0), rec["last_ns"])
    out: dict[str, Any] = {
        "deliveries": len(lat),
        "open": sum(r["open"] for r in replies),
        "last_ns": last,
        "frames": sum(r["frames"] for r in replies),
    }
    if lat:
        out |= {
            "lat_p50_ms": report.percentile(lat, 50) / 1000,
            "lat_p99_ms": report.percentile(lat, 99) / 1000,
            "lat_max_ms": max(lat) / 1000,
        }
        out["last_client_ms_items"] = [(last[s] - sent[s]) / 1e6 for s in sorted(last)]
    return out


async def collect(workers: procs.Workers, expected: list[int], wait_s: float) -> list[Any]:
    """Wait until each worker has its expected deliveries (or ``wait_s``), then collect."""
    await workers.call_each(
        [{"cmd": "expect", "deliveries": e, "timeout": wait_s} for e in expected], wait_s + 10
    )
    return await workers.call({"cmd": "collect"}, 60)


def bench_fields(seq: int, t_ns: int) -> dict[str, str]:
    return {"text": f"bench {seq} {t_ns}", "by": "bench"}


async def timed_items(
    r: aioredis.Redis,
    workers: procs.Workers,
    expected: list[int],
    seqs: range,
    interval: float,
    wait_s: float,
) -> dict[str, Any]:
    """Publish one bench item per seq, ``interval`` apart; ``expected[i]`` clients of worker
    ``i`` should get each. Latency and last-client figures over those deliveries."""
    sent: dict[int, int] = {}
    start = time.monotonic()
    for k, seq in enumerate(seqs):
        await asyncio.sleep(max(0.0, start + k * interval - time.monotonic()))
        sent[seq] = time.time_ns()
        await r.xadd(STREAM, bench_fields(seq, sent[seq]))
    replies = await collect(workers, [n * len(seqs) for n in expected], wait_s)
    out = deliveries_summary(replies, sent)
    out["missing"] = sum(expected) * len(seqs) - out["deliveries"]
    if out.get("last_client_ms_items"):
        out["last_client_ms"] = statistics.median(out["last_client_ms_items"])
    out.pop("last_ns", None)
    return out


async def single_phase(
    r: aioredis.Redis,
    workers: procs.Workers,
    meter: Meter,
    per_worker: list[int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """``--items`` XADDs ``--interval`` apart; latency, last client, CPU per delivery."""
    cpu0 = meter.cpu()
    clients0 = workers.cpu_seconds()
    out = await timed_items(r, workers, per_worker, range(args.items), args.interval,
                            args.timeout)
    cpu = meter.cpu() - cpu0
    clients_cpu = workers.cpu_seconds() - clients0
    if out.get("last_client_ms"):
        out["deliveries_per_s"] = sum(per_worker) / (out["last_client_ms"] / 1000)
    out["cpu_s"] = cpu
    out["items"], out["interval"] = args.items, args.interval
    out["cpu_per_delivery_us"] = cpu / out["deliveries"] * 1e6 if out["deliveries"] else None
    # What the load generator spent receiving (it shares the cores with the server).
    out["clients_cpu_per_delivery_us"] = (
        clients_cpu / out["deliveries"] * 1e6 if out["deliveries"] else None
    )
    return out


async def burst_phase(
    r: aioredis.Redis,
    workers: procs.Workers,
    meter: Meter,
    per_worker: list[int],
    args: argparse.Namespace,
    spread: float,
    count: int,
    base: int,
) -> dict[str, Any]:
    """``count`` times: ``--burst-items`` XADDs, in one pipeline (``spread`` 0) or evenly
    over ``spread`` seconds; until every client has them all."""
    runs: list[dict[str, Any]] = []
    n = args.burst_items
    for b in range(count):
        await asyncio.sleep(0.5)
        cpu0 = meter.cpu()
        sent: dict[int, int] = {}
        if spread <= 0:
            async with r.pipeline(transaction=False) as pipe:
                for i in range(n):
                    seq = base + 1000 * (b + 1) + i
                    sent[seq] = time.time_ns()
                    pipe.xadd(STREAM, bench_fields(seq, sent[seq]))
                await pipe.execute()
        else:
            start = time.monotonic()
            step = spread / max(1, n - 1)
            for i in range(n):
                await asyncio.sleep(max(0.0, start + i * step - time.monotonic()))
                seq = base + 1000 * (b + 1) + i
                sent[seq] = time.time_ns()
                await r.xadd(STREAM, bench_fields(seq, sent[seq]))
        replies = await collect(workers, [c * n for c in per_worker], args.timeout)
        cpu = meter.cpu() - cpu0
        run = deliveries_summary(replies, sent)
        run["missing"] = sum(per_worker) * n - run["deliveries"]
        run["frames_per_client"] = run["frames"] / max(1, sum(per_worker))
        if run["last_ns"]:
            done = max(run["last_ns"].values())
            run["all_ms"] = (done - min(sent.values())) / 1e6  # from the first XADD
            run["after_last_ms"] = (done - max(sent.values())) / 1e6  # from the last XADD
            run["deliveries_per_s"] = run["deliveries"] / (run["all_ms"] / 1000)
        run["cpu_s"] = cpu
        run["cpu_per_delivery_us"] = cpu / run["deliveries"] * 1e6 if run["deliveries"] else None
        runs.append(run)

    def med(key: str) -> float | None:
        values = [x[key] for x in runs if x.get(key) is not None]
        return statistics.median(values) if values else None

    return {
        "runs": runs,
        "all_ms": med("all_ms"),
        "after_last_ms": med("after_last_ms"),
        "deliveries_per_s": med("deliveries_per_s"),
        "cpu_per_delivery_us": med("cpu_per_delivery_us"),
        "frames_per_client": med("frames_per_client"),
        "lat_p50_ms": med("lat_p50_ms"),
        "missing": sum(x["missing"] for x in runs),
    }


async def idle_rate(meter: Meter, seconds: float) -> float:
    """The server's CPU seconds per second while nothing happens (its timers), over
    ``seconds``: what a phase subtracts so as to charge its work alone."""
    cpu0, t0 = meter.cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    return (meter.cpu() - cpu0) / (time.monotonic() - t0)


async def storm_phase(
    r: aioredis.Redis,
    workers: procs.Workers,
    meter: Meter,
    per_worker: list[int],
    args: argparse.Namespace,
    resumes: bool,
) -> dict[str, Any]:
    """All clients drop at once; items are published; all reconnect with their cursor.

    With ``--storm-fraction`` below 1, only that share drops (evenly spread) and the rest
    stay, as on a node that takes over a lost node's readers: the items go out to those who
    stayed while the others reconnect at once, and the CPU and the time run from the drop.
    What the drops themselves cost the server (their connections ending) is measured apart
    first, by the same share dropping and coming back before the storm (``teardown_cpu_s``):
    after a node loss the nodes left never see those connections end (the capacity model
    charges the reconnections without it, docs/capacity.md)."""
    partial = args.storm_fraction < 1
    await workers.call({"cmd": "collect"}, 60)  # forget earlier deliveries
    counts = [round(n * args.storm_fraction) for n in per_worker] if partial else None
    teardown: float | None = None
    if counts is not None:
        idle_per_s = await idle_rate(meter, 1.0)
        cpu_a, t_a = meter.cpu(), time.monotonic()
        await workers.call_each([{"cmd": "disconnect", "count": k} for k in counts], 60)
        await asyncio.sleep(1.0)  # the server has seen them go
        teardown = meter.cpu() - cpu_a - idle_per_s * (time.monotonic() - t_a)
        await workers.call({"cmd": "reconnect", "concurrency": args.storm_concurrency},
                           args.connect_timeout)
        await asyncio.sleep(1.0)
        await workers.call({"cmd": "collect"}, 60)
    cpu_drop, t_drop = meter.cpu(), time.time_ns()
    dropped = await workers.call_each(
        [{"cmd": "disconnect", "count": k} for k in counts] if counts is not None
        else [{"cmd": "disconnect"}] * len(per_worker), 60)
    cursors: dict[str, int] = {}
    for x in dropped:
        for c, k in x["cursors"].items():
            cursors[c] = cursors.get(c, 0) + k
    sent: dict[int, int] = {}
    for i in range(args.storm_items):
        seq = 900_000 + i
        sent[seq] = time.time_ns()
        await r.xadd(STREAM, bench_fields(seq, sent[seq]))
    if not partial:
        await asyncio.sleep(1.0)  # the server has read them and seen every client go
    cpu0 = cpu_drop if partial else meter.cpu()
    replies = await workers.call(
        {"cmd": "reconnect", "concurrency": args.storm_concurrency}, args.connect_timeout
    )
    wait_s = args.timeout if resumes else 2.0  # naive never sends what was missed
    got = await collect(workers, [n * args.storm_items for n in per_worker]
                        if partial else [x["connected"] * args.storm_items for x in replies],
                        wait_s)
    cpu = meter.cpu() - cpu0
    n = sum(x["connected"] for x in replies)
    t0 = t_drop if partial else min(x["t_start"] for x in replies)
    out = deliveries_summary(got, sent)
    first: dict[str, int] = {}
    missed: dict[str, int] = {}
    for x in replies:
        for k, v in x["first"].items():
            first[k] = first.get(k, 0) + v
        for k, v in x["missed"].items():
            missed[k] = missed.get(k, 0) + v
    out |= {
        "clients": sum(per_worker),
        "reconnected": n,
        "failed": sum(x["failed"] for x in replies),
        "cursors": len(cursors),
        "first_frame": first,
        "missed_reported": missed,
        "reconnect_ms": (max(x["t_done"] for x in replies) - t0) / 1e6,
        "missing": sum(per_worker) * args.storm_items - out["deliveries"],
        "cpu_s": cpu,
        "cpu_per_reconnect_us": cpu / n * 1e6 if n else None,
        "teardown_cpu_s": teardown,
        "snapshots": first.get("snapshot", 0),
    }
    if out["last_ns"] and out["deliveries"] == sum(per_worker) * args.storm_items:
        out["resumed_ms"] = (max(out["last_ns"].values()) - t0) / 1e6
    out["reconnects_per_s"] = n / (out["reconnect_ms"] / 1000) if out["reconnect_ms"] else None
    return out


# Pads a fill item to ~1.1 KB, so the stalled readers' buffers fill in a few bursts.
STALL_LINK = "https://example.com/" + "x" * 1000


async def metric_lines(port: int, name: str) -> list[tuple[dict[str, str], float]] | None:
    """The samples named ``name`` of ticker's /metrics, read by Prometheus's own parser, as
    (labels, value) pairs (None: the server did not answer)."""
    def scrape() -> list[tuple[dict[str, str], float]] | None:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as res:
                text = res.read().decode()
        except OSError:
            return None
        return [(sample.labels, sample.value)
                for family in text_string_to_metric_families(text)
                for sample in family.samples if sample.name == name]

    return await asyncio.to_thread(scrape)


async def blocked_readers(port: int) -> int | None:
    """``ticker_blocked_connections`` summed over channels and workers (None: no figure)."""
    samples = await metric_lines(port, "ticker_blocked_connections")
    return int(sum(v for _, v in samples)) if samples else None


async def written_buckets(ports: list[int]) -> tuple[dict[float, float], float] | None:
    """ticker's publish-to-write histogram (``ticker_publish_to_write_seconds``: from an
    item's stream ID time to the end of its writes to every reader of a process), summed
    over nodes, workers and channels: ({upper bound in seconds: cumulative count}, the sum
    of the observations in seconds). None: a node did not answer."""
    buckets: dict[float, float] = {}
    total = 0.0
    for port in ports:
        counts = await metric_lines(port, "ticker_publish_to_write_seconds_bucket")
        sums = await metric_lines(port, "ticker_publish_to_write_seconds_sum")
        if counts is None or sums is None:
            return None
        for labels, value in counts:
            le = float(labels["le"])  # "+Inf" reads as inf
            buckets[le] = buckets.get(le, 0.0) + value
        total += sum(v for _, v in sums)
    return buckets, total


def written_figures(before: tuple[dict[float, float], float],
                    after: tuple[dict[float, float], float]) -> dict[str, Any]:
    """What the histogram says of the writes between two scrapes: their mean (ms), and the
    smallest bucket bound (ms) within which half and 99 % of them ended."""
    counts = sorted((le, n - before[0].get(le, 0.0)) for le, n in after[0].items())
    if not counts or counts[-1][1] <= 0:
        return {}
    n = counts[-1][1]
    out = {"written_mean_ms": (after[1] - before[1]) / n * 1000}
    for share, key in ((0.5, "written_p50_le_ms"), (0.99, "written_p99_le_ms")):
        out[key] = next(le * 1000 for le, k in counts if k >= share * n)
    return out


async def stall_phase(
    r: aioredis.Redis,
    workers: procs.Workers,
    meter: Meter,
    port: int,
    per_worker: list[int],
    args: argparse.Namespace,
    measures_blocked: bool,
) -> dict[str, Any]:
    """1% of the clients stop reading (issue 8). In order: ``--stall-items`` single items to
    everyone (before); ``--stall-fraction`` of the clients stop reading; padded bursts
    until the server has set every stalled reader aside (ticker's /metrics; a fixed number
    of bursts for servers without that figure); the same single items again (during); RSS
    at each step; then the stalled clients read again and each must get every item it
    missed, in order (or a reset snapshot)."""
    total = round(sum(per_worker) * args.stall_fraction)
    counts = [total * (i + 1) // len(per_worker) - total * i // len(per_worker)
              for i in range(len(per_worker))]
    await workers.call({"cmd": "collect"}, 60)  # forget earlier deliveries
    base = 600_000
    k = args.stall_items
    before = await timed_items(r, workers, per_worker, range(base, base + k), args.interval,
                               args.timeout)
    rss0, tcp0 = meter.rss(), balancers.socket_memory()["mem_kib"]
    replies = await workers.call_each(
        [{"cmd": "stall", "count": c, "rcvbuf": args.stall_rcvbuf} for c in counts], 60)
    stalled = [x["stalled"] for x in replies]
    healthy = [n - s for n, s in zip(per_worker, stalled, strict=True)]
    # Fill: padded bursts until every stalled reader is set aside.
    seqs: list[int] = []
    blocked: int | None = None
    t0 = time.monotonic()
    for b in range(args.stall_fill_max):
        burst = range(base + 1000 + b * args.stall_burst, base + 1000 + (b + 1) * args.stall_burst)
        async with r.pipeline(transaction=False) as pipe:
            for seq in burst:
                fields = bench_fields(seq, time.time_ns()) | {"link": STALL_LINK}
                pipe.xadd(STREAM, fields)
            await pipe.execute()
        seqs.extend(burst)
        got = await collect(workers, [n * len(burst) for n in healthy], args.timeout)
        delivered = sum(len(rec["lat_us"]) for x in got for rec in x["items"].values())
        if delivered < sum(healthy) * len(burst):
            raise RuntimeError(f"fill burst {b}: {delivered} of {sum(healthy) * len(burst)} "
                               "deliveries to the healthy clients")
        await asyncio.sleep(0.2)
        if measures_blocked:
            blocked = await blocked_readers(port)
            if blocked is not None and blocked >= sum(stalled):
                break
        elif b + 1 >= args.stall_fill:
            break
    fill_s = time.monotonic() - t0
    rss1, tcp1 = meter.rss(), balancers.socket_memory()["mem_kib"]
    during = await timed_items(r, workers, healthy, range(base + 500, base + 500 + k),
                               args.interval, args.timeout)
    seqs.extend(range(base + 500, base + 500 + k))
    rss2, tcp2 = meter.rss(), balancers.socket_memory()["mem_kib"]
    blocked_end = await blocked_readers(port) if measures_blocked else None
    # The stalled clients read again: each must get every item since it stalled, in order.
    t1 = time.monotonic()
    await workers.call({"cmd": "unstall"}, 60)
    await collect(workers, [n * len(seqs) for n in stalled], args.timeout)
    caught_up_s = time.monotonic() - t1
    reports = await workers.call({"cmd": "stalled"}, 60)
    got = [c for x in reports for c in x["seqs"]]
    exact = sum(1 for c in got if c == seqs)
    out: dict[str, Any] = {
        "clients": sum(per_worker),
        "stalled": sum(stalled),
        "fill_items": len(seqs) - k,
        "fill_s": fill_s,
        "blocked": blocked,
        "blocked_at_end": blocked_end,
        "before": before,
        "during": during,
        "rss_kib": [rss0, rss1, rss2],
        "rss_fill_kib": rss1 - rss0,
        "rss_during_kib": rss2 - rss1,
        "tcp_mem_kib": [tcp0, tcp1, tcp2],
        "caught_up_ms": caught_up_s * 1000,
        "exact": exact,
        "resets": sum(x["resets"] for x in reports),
        "still_open": sum(x["open"] for x in reports),
        "missing": sum(len(seqs) - len(set(c) & set(seqs)) for c in got),
    }
    for key in ("lat_p50_ms", "lat_p99_ms", "last_client_ms"):
        out[f"before_{key}"] = before.get(key)
        out[f"during_{key}"] = during.get(key)
        if before.get(key) and during.get(key) is not None:
            out[f"during_vs_before_{key}"] = during[key] / before[key]
    return out


def addresses_per_worker(clients: int, nprocs: int, per_address: int) -> int:
    """Source addresses each worker spreads its clients over (``per_address`` at most)."""
    share = -(-clients // nprocs)
    return max(1, -(-share // per_address))


def addresses_used(args: argparse.Namespace, clients: int, nofile: int) -> int:
    """Source addresses one server run takes: its websocket clients', and its SSE readers'."""
    n = loadgen_procs(args, clients, nofile)
    used = n * addresses_per_worker(clients, n, args.per_address)
    if "sse" in args.phases:
        used += n * addresses_per_worker(args.sse_clients, n, SSE_PER_ADDRESS)
    return used


def loadgen_procs(args: argparse.Namespace, clients: int, nofile: int) -> int:
    """``--procs``, or more when one worker would exceed the file limit."""
    return max(args.procs, -(-clients // (nofile - FD_RESERVE)))


async def warm_up(port: int, count: int) -> None:
    """Real websocket round trips (several, so every process of a multi-process server
    likely gets one), so lazy imports/allocations are not charged to the N clients."""
    for _ in range(count):
        async with (
            asyncio.timeout(10),
            ws_connect(f"ws://127.0.0.1:{port}/ws/en", compression=None, close_timeout=2) as ws,
        ):
            await ws.recv()


def item_counts(replies: list[dict[str, Any]]) -> dict[int, int]:
    """How many clients got each bench seq, over the workers' ``collect`` replies."""
    counts: dict[int, int] = {}
    for reply in replies:
        for seq_s, rec in reply["items"].items():
            counts[int(seq_s)] = counts.get(int(seq_s), 0) + len(rec["lat_us"])
    return counts


async def spike_connect(
    r: aioredis.Redis, workers: procs.Workers, meter: Meter, args: argparse.Namespace,
    ticker_ports: list[int] | None = None,
) -> dict[str, Any]:
    """The breaking-news spike (issue 19): every client connects, without a cursor, at a
    steady pace over ``--spike-seconds`` while an item goes out every ``--spike-interval``
    seconds, and ``--spike-after`` more items after the wave. Each client's time from its
    connect to its snapshot; the live items' latency to everyone connected when they went
    out (the wave's items) and, after the wave, that every client got each; server CPU
    over the wave per connect. For ticker (``ticker_ports``: its nodes), also the server's own
    side of the live latency: its publish-to-write histogram over the phase's items, which
    leaves out how long the load generators, on the same cores, took to read them."""
    sent: dict[int, int] = {}
    stop = asyncio.Event()

    async def publish() -> None:
        k = 0
        start = time.monotonic()
        while not stop.is_set():
            seq = 700_000 + k
            sent[seq] = time.time_ns()
            await r.xadd(STREAM, bench_fields(seq, sent[seq]))
            k += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, start + k * args.spike_interval
                                               - time.monotonic())):
                    await stop.wait()

    await workers.call({"cmd": "collect"}, 60)  # forget earlier deliveries
    # What the server spends doing nothing (its timers), charged to no connect below.
    idle_per_s = await idle_rate(meter, 2.0)
    written0 = await written_buckets(ticker_ports) if ticker_ports else None
    cpu0, bcpu0, mem0 = meter.cpu(), meter.balancer_cpu(), balancers.socket_memory()
    (user0, sys0), t_wave = meter.user_system(), time.monotonic()
    publisher = asyncio.create_task(publish())
    try:
        replies = await workers.call({"cmd": "connect", "over": args.spike_seconds},
                                     args.connect_timeout)
        cpu, bcpu = meter.cpu() - cpu0, meter.balancer_cpu() - bcpu0
        user1, sys1 = meter.user_system()
        idle = idle_per_s * (time.monotonic() - t_wave)
        wave_seqs = set(sent)
        await asyncio.sleep(args.spike_after * args.spike_interval)
    finally:
        stop.set()
        await publisher
    after_seqs = set(sent) - wave_seqs
    await asyncio.sleep(2.0)  # the last item reaches everyone (and every worker's metrics)
    got = await workers.call({"cmd": "collect"}, 60)
    written1 = await written_buckets(ticker_ports) if ticker_ports else None
    counts = item_counts(got)
    n = sum(x["connected"] for x in replies)
    first = [v for x in replies for v in x.get("first_us", [])]
    wave_lat = [v for x in got for seq_s, rec in x["items"].items()
                if int(seq_s) in wave_seqs for v in rec["lat_us"]]
    after_lat = [v for x in got for seq_s, rec in x["items"].items()
                 if int(seq_s) in after_seqs for v in rec["lat_us"]]
    wall = (max(x["t_done"] for x in replies) - min(x["t_start"] for x in replies)) / 1e9
    out: dict[str, Any] = {
        "clients": n,
        "failed": sum(x["failed"] for x in replies),
        "wave_s": wall,
        "connects_per_s": n / wall if wall else None,
        "late_start_ms": max((x.get("late_start_us", 0) for x in replies), default=0) / 1000,
        "cpu_s": cpu,
        "idle_cpu_s": idle,
        # The wave's CPU beyond idle, per client: its connect and snapshot, and its share of
        # the live items that went out meanwhile.
        "cpu_per_connect_us": (cpu - idle) / n * 1e6 if n else None,
        "user_per_connect_us": (user1 - user0) / n * 1e6 if n else None,
        "system_per_connect_us": (sys1 - sys0) / n * 1e6 if n else None,
        "balancer_cpu_per_connect_us": bcpu / n * 1e6 if n and meter.balancer else None,
        "kernel_tcp_kib_per_client": (balancers.socket_memory()["mem_kib"] - mem0["mem_kib"])
        / n if n else None,
        "items_during": len(wave_seqs),
        "deliveries_during": sum(counts.get(q, 0) for q in wave_seqs),
        "items_after": len(after_seqs),
        "missing_after": sum(n - counts.get(q, 0) for q in after_seqs),
    }
    if first:
        out |= {"snapshot_p50_ms": report.percentile(first, 50) / 1000,
                "snapshot_p99_ms": report.percentile(first, 99) / 1000,
                "snapshot_max_ms": max(first) / 1000,
                "snapshot_within_3s": sum(1 for v in first if v <= 3_000_000) / len(first)}
    if wave_lat:
        out |= {"live_p50_ms": report.percentile(wave_lat, 50) / 1000,
                "live_p99_ms": report.percentile(wave_lat, 99) / 1000,
                "live_max_ms": max(wave_lat) / 1000}
    if after_lat:
        out["after_p99_ms"] = report.percentile(after_lat, 99) / 1000
    if written0 is not None and written1 is not None:
        out |= written_figures(written0, written1)
    out["per_worker"] = [x["connected"] for x in replies]
    out["replies"] = replies
    return out


async def sse_phase(
    r: aioredis.Redis, workers: procs.Workers, meter: Meter, port: int,
    per_worker: list[int], args: argparse.Namespace, sources: list[list[str]],
) -> dict[str, Any]:
    """SSE readers at websocket cost (issue 19): ``--sse-items`` single items to the
    websocket clients alone (CPU per delivery); ``--sse-clients`` SSE readers join (RSS per
    SSE reader); the same items to both (the SSE readers' CPU per delivery is what the
    run costs beyond the websocket deliveries at the first rate); then every SSE reader
    drops at once and resumes with ``Last-Event-ID`` (a reconnect storm)."""
    k = args.sse_items
    await workers.call({"cmd": "collect"}, 60)
    cpu0 = meter.cpu()
    ws_only = await timed_items(r, workers, per_worker, range(800_000, 800_000 + k),
                                args.interval, args.timeout)
    ws_cpu = meter.cpu() - cpu0
    ws_per = ws_cpu / ws_only["deliveries"] if ws_only["deliveries"] else None
    sse = procs.Workers()
    try:
        await sse.start(port, args.sse_clients, sources, "/sse/en", args.concurrency,
                        protocol="sse")
        await asyncio.sleep(1)
        rss0, mem0 = meter.rss(), balancers.socket_memory()
        cpu1 = meter.cpu()
        replies = await sse.call({"cmd": "connect"}, args.connect_timeout)
        sse_connect_cpu = meter.cpu() - cpu1
        sse_per_worker = [x["connected"] for x in replies]
        m = sum(sse_per_worker)
        await asyncio.sleep(2)
        rss1, mem1 = meter.rss(), balancers.socket_memory()
        if m < args.sse_clients:
            raise RuntimeError(f"only {m} of {args.sse_clients} SSE readers connected")
        # Both kinds, the same items.
        sent: dict[int, int] = {}
        cpu2 = meter.cpu()
        start = time.monotonic()
        for i in range(k):
            await asyncio.sleep(max(0.0, start + i * args.interval - time.monotonic()))
            seq = 810_000 + i
            sent[seq] = time.time_ns()
            await r.xadd(STREAM, bench_fields(seq, sent[seq]))
        ws_got, sse_got = await asyncio.gather(
            collect(workers, [n * k for n in per_worker], args.timeout),
            collect(sse, [n * k for n in sse_per_worker], args.timeout))
        both_cpu = meter.cpu() - cpu2
        ws_both = deliveries_summary(ws_got, sent)
        sse_both = deliveries_summary(sse_got, sent)
        sse_cpu = both_cpu - ws_both["deliveries"] * (ws_per or 0.0)
        sse_per = sse_cpu / sse_both["deliveries"] if sse_both["deliveries"] else None
        storm = await storm_phase(r, sse, meter, sse_per_worker, args, True)
    finally:
        await sse.close()
    out: dict[str, Any] = {
        "sse_clients": m,
        "ws_clients": sum(per_worker),
        "ws_cpu_per_delivery_us": ws_per * 1e6 if ws_per is not None else None,
        "sse_cpu_per_delivery_us": sse_per * 1e6 if sse_per is not None else None,
        "sse_vs_ws_cpu_per_delivery": sse_per / ws_per if sse_per and ws_per else None,
        "both_cpu_per_delivery_us": both_cpu / (ws_both["deliveries"] + sse_both["deliveries"])
        * 1e6 if ws_both["deliveries"] + sse_both["deliveries"] else None,
        "sse_connect_cpu_us": sse_connect_cpu / m * 1e6 if m else None,
        "rss_per_sse_kib": (rss1 - rss0) / m if m else None,
        "kernel_tcp_kib_per_sse": (mem1["mem_kib"] - mem0["mem_kib"]) / m if m else None,
        "kernel_slab_kib_per_sse": (mem1["slab_kib"] - mem0["slab_kib"]) / m if m else None,
        "ws_lat_p99_ms": ws_both.get("lat_p99_ms"),
        "sse_lat_p99_ms": sse_both.get("lat_p99_ms"),
        "sse_lat_p50_ms": sse_both.get("lat_p50_ms"),
        "missing": (sum(per_worker) + m) * k - ws_both["deliveries"] - sse_both["deliveries"],
        "storm_resumed_ms": storm.get("resumed_ms"),
        "storm_reconnect_ms": storm.get("reconnect_ms"),
        "storm_cpu_per_reconnect_us": storm.get("cpu_per_reconnect_us"),
        "storm_snapshots": storm.get("snapshots"),
        "storm_missing": storm.get("missing"),
        "storm": storm,
    }
    return out


async def connections_per_node(ports: list[int]) -> list[int | None]:
    """``ticker_connections`` of each node (None: it did not answer)."""
    async def connections(port: int) -> int | None:
        samples = await metric_lines(port, "ticker_connections")
        return None if samples is None else int(sum(v for _, v in samples))

    return list(await asyncio.gather(*(connections(p) for p in ports)))


async def node_loss_phase(
    r: aioredis.Redis, workers: procs.Workers, meter: Meter, ports: list[int],
    per_worker: list[int], args: argparse.Namespace,
) -> dict[str, Any]:
    """A node dies (SIGKILL to its process group) with its readers on it; each reconnects at
    once, as the widget does, through the balancer with its cursor to the nodes left, while
    ``--storm-items`` items go out; until every one of them is back and every client has
    every item. CPU of the nodes left per reconnection."""
    await workers.call({"cmd": "collect"}, 60)
    await workers.call({"cmd": "follow", "concurrency": args.storm_concurrency}, 60)
    before = await connections_per_node(ports)
    orphans = before[0] or 0
    victim = meter.nodes[0]
    cpu0 = meter.cpu() - procs.cpu_seconds(victim.pid)  # the nodes that stay
    t0 = time.time_ns()
    os.killpg(victim.pid, 9)
    victim.wait()
    sent: dict[int, int] = {}
    for i in range(args.storm_items):
        seq = 950_000 + i
        sent[seq] = time.time_ns()
        await r.xadd(STREAM, bench_fields(seq, sent[seq]))
    deadline = time.monotonic() + args.connect_timeout
    while True:
        rejoined = await workers.call({"cmd": "rejoined"}, 60)
        back = sum(x["reconnected"] for x in rejoined)
        done = back + sum(x["failed"] for x in rejoined) >= orphans \
            and not any(x["pending"] for x in rejoined)
        if done or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    got = await collect(workers, [n * args.storm_items for n in per_worker], args.timeout)
    cpu = meter.cpu() - cpu0
    counts = item_counts(got)
    last = max((rec["last_ns"] for x in got for seq_s, rec in x["items"].items()
                if int(seq_s) in sent), default=None)
    first: dict[str, int] = {}
    for x in rejoined:
        for kind, k in x["first"].items():
            first[kind] = first.get(kind, 0) + k
    return {
        "readers_per_node": before,
        "orphans": orphans,
        "lost": sum(x["lost"] for x in rejoined),
        "reconnected": back,
        "failed": sum(x["failed"] for x in rejoined),
        "first_frame": first,
        "errors": {k: v for x in rejoined for k, v in x["errors"].items()},
        "reconnect_ms": (max(x["t_done"] for x in rejoined) - t0) / 1e6 if back else None,
        "resumed_ms": (last - t0) / 1e6 if last is not None else None,
        "missing": sum(sum(per_worker) - counts.get(q, 0) for q in sent),
        # Frames the clients got meanwhile: the orphans' catch-ups, and what the nodes left
        # wrote to their own readers (items published together go out together).
        "frames": sum(x["frames"] for x in got),
        "cpu_s": cpu,
        "cpu_per_reconnect_us": cpu / back * 1e6 if back else None,
        "after": await connections_per_node(ports[1:]),
    }


async def bench_server(
    spec: str,
    clients: int,
    args: argparse.Namespace,
    rport: int,
    workdir: Path,
    first_source: int,
    nofile: int,
    balancer: str = "none",
) -> dict[str, Any]:
    """Start the server (``--nodes`` of them, behind ``balancer`` unless "none"), connect
    the clients (or let them arrive in a spike), run every phase, stop it; its figures."""
    name, nprocs = kind_of(spec)
    redis_url = f"redis://127.0.0.1:{rport}/0"
    r = aioredis.Redis.from_url(redis_url, socket_timeout=30)
    await r.flushall()
    ports = [procs.free_port() for _ in range(args.nodes)]
    env = dict(args.server_env) if name == "ticker" else {}
    meter = Meter([], redis_pid=int((await r.info("server"))["process_id"]))
    for i, port in enumerate(ports):
        log = workdir / f"{name}{nprocs}-{first_source}-{i}.log"
        meter.nodes.append(procs.start_server(
            name, port, redis_url, args.server_ping_interval, log, nprocs, env,
            args.ticker_tree if name == "ticker" else None))
    workers = procs.Workers()
    res: dict[str, Any] = {"server": label(spec, balancer, args.nodes), "clients": clients,
                           "loadavg": os.getloadavg(), "balancer": balancer,
                           "nodes": args.nodes}
    nworkers = loadgen_procs(args, clients, nofile)
    log = workdir / f"{name}{nprocs}-{first_source}-0.log"
    try:
        async with contextlib.AsyncExitStack() as stack:
            for port, node in zip(ports, meter.nodes, strict=True):
                await procs.wait_healthy(port, node, 30)
            port = ports[0]
            if balancer != "none":
                meter.balancer = stack.enter_context(balancers.balancer(
                    balancer, workdir, ports, clients + args.sse_clients * ("sse" in args.phases),
                    nofile))
                port = meter.balancer.port
            await warm_up(port, 4 * nprocs * args.nodes)
            await asyncio.sleep(1)
            rss0, brss0, mem0 = meter.rss(), meter.balancer_rss(), balancers.socket_memory()
            k = addresses_per_worker(clients, nworkers, args.per_address)
            sources = [
                [procs.source_address(first_source + w * k + j) for j in range(k)]
                for w in range(nworkers)
            ]
            await workers.start(port, clients, sources, "/ws/en", args.concurrency)
            await asyncio.sleep(1)  # workers imported and waiting
            if "spike" in args.phases:
                spike = await spike_connect(r, workers, meter, args,
                                            ports if name == "ticker" else None)
                replies = spike.pop("replies")
                res["spike"] = spike
                cpu = spike["cpu_s"]
            else:
                cpu0, bcpu0 = meter.cpu(), meter.balancer_cpu()
                replies = await workers.call({"cmd": "connect"}, args.connect_timeout)
                cpu = meter.cpu() - cpu0
                joined = sum(x["connected"] for x in replies)
                if meter.balancer is not None and joined:
                    res["balancer_connect_cpu_us"] = (meter.balancer_cpu() - bcpu0) / joined * 1e6
            per_worker = [x["connected"] for x in replies]
            n = sum(per_worker)
            wall = (max(x["t_done"] for x in replies) - min(x["t_start"] for x in replies)) / 1e9
            errors: dict[str, int] = {}
            for x in replies:
                for why, count in x["errors"].items():
                    errors[why] = errors.get(why, 0) + count
            await asyncio.sleep(2)
            rss1, brss1, mem1 = meter.rss(), meter.balancer_rss(), balancers.socket_memory()
            res |= {
                "connected": n,
                "connect_failed": sum(x["failed"] for x in replies),
                "connect_errors": errors,
                "connect_s": wall,
                "connects_per_s": n / wall,
                "connect_cpu_us": cpu / n * 1e6 if n else None,
                "rss_before_kib": rss0,
                "rss_after_kib": rss1,
                "rss_per_conn_kib": (rss1 - rss0) / n if n else None,
                "balancer_rss_per_conn_kib": (brss1 - brss0) / n if n and meter.balancer
                else None,
                "balancer_rss_kib": brss1 if meter.balancer else None,
                "kernel_tcp_kib_per_conn": (mem1["mem_kib"] - mem0["mem_kib"]) / n if n else None,
                "tcp_sockets_per_conn": (mem1["inuse"] - mem0["inuse"]) / n if n else None,
                "kernel_slab_kib_per_conn": (mem1["slab_kib"] - mem0["slab_kib"]) / n
                if n else None,
                "server_skmem_kib_per_conn": sum(balancers.skmem_kib(p) for p in ports) / n
                if n else None,
                "loadgen_procs": nworkers,
            }
            print(f"  {res['server']}: {n} connected in {wall:.1f} s", file=sys.stderr)
            if n < clients:  # figures over fewer clients would not compare
                raise RuntimeError(f"only {n} of {clients} clients connected: {errors}")
            for phase in args.phases:
                bcpu0, rcpu0 = meter.balancer_cpu(), meter.redis_cpu()
                if phase == "single":
                    res["single"] = await single_phase(r, workers, meter, per_worker, args)
                elif phase == "burst":
                    res["burst"] = await burst_phase(
                        r, workers, meter, per_worker, args, 0.0, args.bursts, 0
                    )
                elif phase == "spread":
                    res["spread"] = await burst_phase(
                        r, workers, meter, per_worker, args, args.spread, args.spreads, 100_000
                    )
                elif phase == "storm":
                    res["storm"] = await storm_phase(
                        r, workers, meter, per_worker, args, name in RESUMES
                    )
                elif phase == "stall":
                    res["stall"] = await stall_phase(
                        r, workers, meter, port, per_worker, args, name == "ticker"
                    )
                elif phase == "sse" and name == "ticker":
                    # SSE requests count against ticker's per-address HTTP rate limit (a
                    # burst of 100): fewer readers per address than the websockets get.
                    k_sse = addresses_per_worker(args.sse_clients, nworkers, SSE_PER_ADDRESS)
                    base = first_source + nworkers * k
                    sse_sources = [[procs.source_address(base + w * k_sse + j)
                                    for j in range(k_sse)] for w in range(nworkers)]
                    res["sse"] = await sse_phase(r, workers, meter, port, per_worker, args,
                                                 sse_sources)
                elif phase == "nodeloss" and args.nodes > 1 and name == "ticker":
                    res["nodeloss"] = await node_loss_phase(r, workers, meter, ports,
                                                            per_worker, args)
                else:
                    continue
                part = res[phase]
                part["redis_cpu_s"] = meter.redis_cpu() - rcpu0
                if meter.balancer is not None and isinstance(part, dict):
                    part["balancer_cpu_s"] = meter.balancer_cpu() - bcpu0
                    delivered = part.get("deliveries") or sum(
                        run.get("deliveries", 0) for run in part.get("runs", ()))
                    if delivered:
                        part["balancer_cpu_per_delivery_us"] = (
                            part["balancer_cpu_s"] / delivered * 1e6)
                print(f"  {res['server']}: {phase} done", file=sys.stderr)
            spike, single = res.get("spike"), res.get("single")
            if spike and single and single.get("cpu_per_delivery_us") and spike["clients"]:
                # The wave's CPU less what its live deliveries cost at the single items' rate:
                # what the connects themselves took.
                spike["cpu_per_connect_net_us"] = (
                    spike["cpu_per_connect_us"] - spike["deliveries_during"]
                    * single["cpu_per_delivery_us"] / spike["clients"])
    except (RuntimeError, TimeoutError, OSError) as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
        print(f"  {res['server']}: FAILED {res['error']} (log: {log})", file=sys.stderr)
    finally:
        await workers.close()
        for node in meter.nodes:
            procs.stop(node, group=True)
        await r.aclose()
    res["exit_code"] = meter.nodes[0].returncode if meter.nodes else None
    return res


def label(spec: str, balancer: str, nodes: int) -> str:
    """How a run is named in the tables: ``ticker:3``, ``ticker:3 via nginx``,
    ``3 x ticker via haproxy``."""
    name = f"{nodes} x {spec}" if nodes > 1 else spec
    return name if balancer == "none" else f"{name} via {balancer}"


def strip(result: dict[str, Any]) -> dict[str, Any]:
    """Drop the per-seq receive timestamps (internal) before writing JSON."""
    for phase in ("single", "burst", "spread", "storm", "stall", "spike", "sse", "nodeloss"):
        part = result.get(phase) or {}
        part.pop("last_ns", None)
        for run in part.get("runs", []):
            run.pop("last_ns", None)
    return result


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return {
        "tree": (rev.stdout.strip() or "?") + " + working tree",
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "loadavg_at_start": os.getloadavg(),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every scale, every server, ``--rounds`` times, on one private redis-server."""
    nofile = procs.raise_nofile()
    # asyncio's child watcher warns when Popen.poll() reaped an exited worker first: harmless.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    scales: dict[str, Any] = {}
    source = 0
    info = machine() | {"redis": procs.redis_version(args.redis_server), "nofile": nofile}
    if any(kind_of(s)[0] == "node" for s in args.servers):
        procs.node_ws_ready()  # npm ci from its lock, before anything starts
    with (
        tempfile.TemporaryDirectory(prefix="fanout-") as tmp,
        procs.redis_server(args.redis_server, Path(tmp)) as rport,
    ):
        for clients in args.clients:
            # Each node holds its share of the readers.
            share = -(-clients // args.nodes)
            held = [s for s in args.servers if not cannot_hold(s, share, nofile)]
            skipped = {s: why for s in args.servers if (why := cannot_hold(s, share, nofile))}
            for s, why in skipped.items():
                print(f"{clients} clients: {s} skipped: {why}", file=sys.stderr)
            runs = [(s, b) for s in held for b in args.balancer]
            rounds: dict[str, list[dict[str, Any]]] = {
                label(s, b, args.nodes): [] for s, b in runs}
            for rnd in range(args.rounds):
                order = runs[rnd % len(runs) :] + runs[: rnd % len(runs)] if runs else []
                for spec, via in order:  # rotated each round, so no server always runs first
                    print(
                        f"round {rnd + 1}/{args.rounds}: {label(spec, via, args.nodes)}, "
                        f"{clients} clients",
                        file=sys.stderr,
                    )
                    result = await bench_server(
                        spec, clients, args, rport, Path(tmp), source, nofile, via
                    )
                    rounds[label(spec, via, args.nodes)].append(strip(result))
                    source += addresses_used(args, clients, nofile)  # fresh ones each run
                    await asyncio.sleep(2)  # let the machine settle between servers
            summary = {s: report.median_of_rounds(rs) for s, rs in rounds.items()}
            scales[str(clients)] = {
                "summary": summary,
                "ratios": report.ratios(summary),
                "skipped": skipped,
                "rounds": rounds,
            }
    return {
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": info,
        "scales": scales,
        "targets": report.targets(scales),
    }


def ints(text: str) -> list[int]:
    return [int(x.replace("k", "000")) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="websocket fan-out benchmark", epilog="see docs/benchmarks.md"
    )
    p.add_argument(
        "--servers",
        default="ticker,ticker:2,naive,raw",
        help="comma-separated, of ticker, naive, raw, raw-items (the floor with the items on "
        "air in its snapshot, as ticker's), node, each optionally :N processes sharing the "
        "port (ticker --workers N, raw --procs N, node: N cluster workers; naive is one "
        "process); default: ticker,ticker:2,naive,raw",
    )
    p.add_argument(
        "--clients",
        type=ints,
        default=[10000],
        help="comma-separated numbers of clients, one scale each (10k = 10000)",
    )
    p.add_argument("--procs", type=int, default=4, help="load-gen worker processes (at least)")
    p.add_argument(
        "--per-address",
        type=int,
        default=500,
        help="most clients per source address (ticker caps websockets per IP, default 1000)",
    )
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight per worker")
    p.add_argument(
        "--phases",
        default="single,burst,spread,storm",
        help="comma-separated, of single, burst, spread, storm, stall, spike (the clients "
        "arrive as a wave instead of as fast as they can), sse (SSE readers join), nodeloss "
        "(a node is killed; --nodes 2+) (connect is always measured)",
    )
    p.add_argument("--items", type=int, default=20, help="single items to publish")
    p.add_argument("--interval", type=float, default=0.6, help="seconds between single items")
    p.add_argument("--bursts", type=int, default=5, help="pipelined bursts")
    p.add_argument("--burst-items", type=int, default=20)
    p.add_argument("--spread", type=float, default=1.0, help="seconds a spread burst lasts")
    p.add_argument("--spreads", type=int, default=3, help="spread bursts")
    p.add_argument("--storm-items", type=int, default=5, help="items published while away")
    p.add_argument(
        "--storm-concurrency", type=int, default=250, help="reconnects in flight per worker"
    )
    p.add_argument("--storm-fraction", type=float, default=1.0,
                   help="share of the clients that drop in the storm (below 1: the rest stay "
                   "and get the items live while the others reconnect, as on a node taking "
                   "over a lost node's readers)")
    p.add_argument("--stall-fraction", type=float, default=0.01, help="clients that stall")
    p.add_argument("--stall-items", type=int, default=20,
                   help="single items before and while they are stalled (--interval apart)")
    p.add_argument("--stall-burst", type=int, default=10, help="padded items per fill burst")
    p.add_argument("--stall-rcvbuf", type=int, default=0,
                   help="shrink a stalled client's receive buffer to this (0: the kernel's; "
                   "on loopback a tiny one leaves the catch-up to zero-window probes)")
    p.add_argument("--stall-fill", type=int, default=8,
                   help="fill bursts for servers that do not report blocked readers")
    p.add_argument("--stall-fill-max", type=int, default=40,
                   help="at most this many fill bursts waiting for ticker to block them all")
    p.add_argument("--ticker-tree", type=Path, default=None, metavar="DIR",
                   help="run ticker from this source tree (e.g. a git worktree of an older "
                        "commit) instead of this one, to compare two trees in one sitting")
    p.add_argument("--server-env", action="append", default=[], metavar="TICKER_X=V",
                   help="environment for the ticker servers (repeatable), e.g. "
                   "TICKER_SOCKET_SNDBUF=8192")
    p.add_argument("--balancer", default="none",
                   help="comma-separated, of none (direct), nginx (deploy/nginx.conf), haproxy "
                   "(TCP mode): each server runs behind each (issue 19)")
    p.add_argument("--nodes", type=int, default=1,
                   help="copies of each server, each on its own port, behind the balancer "
                   "(--balancer other than none); e.g. 3 ticker nodes for the capacity check")
    p.add_argument("--spike-seconds", type=float, default=10.0,
                   help="spike: the clients connect evenly over this many seconds")
    p.add_argument("--spike-interval", type=float, default=1.0,
                   help="spike: seconds between items during the wave")
    p.add_argument("--spike-after", type=int, default=3,
                   help="spike: items after the wave (every client must get each)")
    p.add_argument("--sse-clients", type=int, default=10000,
                   help="sse: SSE readers that join the websocket clients")
    p.add_argument("--sse-items", type=int, default=10,
                   help="sse: single items to the websocket clients alone, then to both")
    p.add_argument("--rounds", type=int, default=1, help="repeat all servers, take medians")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for deliveries")
    p.add_argument("--connect-timeout", type=float, default=300)
    p.add_argument(
        "--server-ping-interval",
        type=float,
        default=3600,
        help="server ping interval (s) for ticker, naive and node; 0 keeps their default",
    )
    p.add_argument(
        "--redis-server",
        default="/usr/bin/redis-server"
        if Path("/usr/bin/redis-server").exists()
        else "redis-server",
        help="redis-server binary (default: the system one, else the first on PATH)",
    )
    p.add_argument("--json", type=Path, help="write all figures to this file")
    args = p.parse_args(argv)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in args.servers:
        name, _, n = s.partition(":")
        if name not in SERVERS or (n and (not n.isdigit() or int(n) < 1)):
            p.error(f"unknown server {s!r}")
        if name == "naive" and n not in ("", "1"):  # node:N is Node's cluster module
            p.error("the naive baseline runs as one process")
    args.phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    for x in args.phases:
        if x not in PHASES:
            p.error(f"unknown phase {x!r}")
    args.balancer = [x.strip() for x in args.balancer.split(",") if x.strip()]
    for x in args.balancer:
        if x not in BALANCERS:
            p.error(f"unknown balancer {x!r} (one of {', '.join(BALANCERS)})")
    if args.nodes < 1 or (args.nodes > 1 and "none" in args.balancer):
        p.error("--nodes above 1 needs a balancer in front (--balancer nginx or haproxy)")
    if "nodeloss" in args.phases and args.nodes < 2:
        p.error("the nodeloss phase needs --nodes 2 or more")
    env: dict[str, str] = {}
    for item in args.server_env:
        key, eq, value = item.partition("=")
        if not eq or not key.startswith("TICKER_"):
            p.error(f"--server-env wants TICKER_NAME=VALUE, not {item!r}")
        env[key] = value
    args.server_env = env
    if args.ticker_tree is not None:
        args.ticker_tree = args.ticker_tree.resolve()
        if not (args.ticker_tree / "ticker" / "__init__.py").is_file():
            p.error(f"--ticker-tree {args.ticker_tree}: no ticker package there")
    if not 0 < args.storm_fraction <= 1:
        p.error("--storm-fraction is a share of the clients, in (0, 1]")
    if not 0 < args.stall_fraction <= 1:
        p.error("--stall-fraction is a fraction of the clients, in (0, 1]")
    return args


def tree_identity(tree: Path) -> str:
    """Which code the ticker servers ran: the tree's commit, and whether it had changes."""
    def git(*cmd: str) -> str:
        proc = subprocess.run(["git", *cmd], cwd=tree, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""
    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = " with uncommitted changes" if git("status", "--porcelain", "--", "ticker") else ""
    return f"{tree} at {commit}{dirty}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the tables and targets, optionally write JSON; 1 if any
    server failed."""
    args = parse_args(argv)
    result = asyncio.run(run(args))
    result["ticker_tree"] = tree_identity(args.ticker_tree or procs.ROOT)
    print(f"ticker from {result['ticker_tree']}")
    for clients, scale in result["scales"].items():
        print(f"\n### {int(clients):,} clients\n")
        print(report.table(scale["summary"], scale["ratios"]))
        for spec, why in scale["skipped"].items():
            print(f"\n{spec} skipped: {why}")
    print("\n### Targets (issues 7, 8 and 19)\n")
    print(report.targets_table(result["targets"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    failed = [r for sc in result["scales"].values() for rs in sc["rounds"].values() for r in rs]
    return 1 if any("error" in r for r in failed) else 0


if __name__ == "__main__":
    sys.exit(main())
