"""Fan-out benchmark: ticker against a naive Starlette app and a raw asyncio floor.

For each server under test, on a private redis-server and with N websocket clients spread over
load-gen worker processes (``loadgen.py``), it measures:

- idle memory: server RSS after connecting N clients minus before, per connection;
- connect cost: server CPU while the N clients connect (until each has its snapshot) / N, and
  connections per second;
- single items: ``--items`` XADDs ``--interval`` apart; publish→receive latency of every
  delivery (p50/p99/max), the time until the last client had each item (median over items),
  server CPU during the phase / deliveries;
- bursts: ``--burst-items`` XADDs in one pipeline; the time until every client has them all,
  deliveries/s, server CPU / deliveries (median over ``--bursts``).

Server CPU is ``utime + stime`` of the server's process tree. All servers run in the same
invocation, one after another (``--rounds`` interleaves repeats), so ratios compare figures
taken under the same machine conditions. Everything stays on 127.0.0.0/8 and every phase has
a timeout. Run: ``python benchmarks/fanout.py --clients 10000 --json out.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from websockets.asyncio.client import connect as ws_connect

try:
    from benchmarks import procs, report
except ImportError:  # run as a script: python benchmarks/fanout.py
    import procs  # type: ignore[no-redef,import-not-found]
    import report  # type: ignore[no-redef,import-not-found]

STREAM = "ticker:stream:en"
SERVERS = ("ticker", "naive", "raw")


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


async def single_phase(
    r: aioredis.Redis,
    workers: procs.Workers,
    pid: int,
    per_worker: list[int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """``--items`` XADDs ``--interval`` apart; latency, last client, CPU per delivery."""
    sent: dict[int, int] = {}
    cpu0 = procs.cpu_seconds(pid)
    start = time.monotonic()
    for seq in range(args.items):
        await asyncio.sleep(max(0.0, start + seq * args.interval - time.monotonic()))
        sent[seq] = time.time_ns()
        await r.xadd(STREAM, {"text": f"bench {seq} {sent[seq]}", "by": "bench"})
    replies = await collect(workers, [n * args.items for n in per_worker], args.timeout)
    cpu = procs.cpu_seconds(pid) - cpu0
    out = deliveries_summary(replies, sent)
    out["missing"] = sum(per_worker) * args.items - out["deliveries"]
    if out.get("last_client_ms_items"):
        out["last_client_ms"] = statistics.median(out["last_client_ms_items"])
    out["cpu_s"] = cpu
    out["cpu_per_delivery_us"] = cpu / out["deliveries"] * 1e6 if out["deliveries"] else None
    return out


async def burst_phase(
    r: aioredis.Redis,
    workers: procs.Workers,
    pid: int,
    per_worker: list[int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """``--bursts`` times: ``--burst-items`` XADDs in one pipeline; until all have all."""
    runs: list[dict[str, Any]] = []
    n = args.burst_items
    for b in range(args.bursts):
        await asyncio.sleep(0.5)
        cpu0 = procs.cpu_seconds(pid)
        sent: dict[int, int] = {}
        async with r.pipeline(transaction=False) as pipe:
            for i in range(n):
                seq = 1000 * (b + 1) + i
                sent[seq] = time.time_ns()
                pipe.xadd(STREAM, {"text": f"bench {seq} {sent[seq]}", "by": "bench"})
            await pipe.execute()
        replies = await collect(workers, [c * n for c in per_worker], args.timeout)
        cpu = procs.cpu_seconds(pid) - cpu0
        run = deliveries_summary(replies, sent)
        run["missing"] = sum(per_worker) * n - run["deliveries"]
        run["frames_per_client"] = run["frames"] / max(1, sum(per_worker))
        if run["last_ns"]:  # from the first XADD until the last client had all items
            run["all_ms"] = (max(run["last_ns"].values()) - min(sent.values())) / 1e6
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
        "deliveries_per_s": med("deliveries_per_s"),
        "cpu_per_delivery_us": med("cpu_per_delivery_us"),
        "frames_per_client": med("frames_per_client"),
        "missing": sum(x["missing"] for x in runs),
    }


def addresses_per_worker(args: argparse.Namespace) -> int:
    """Source addresses each worker spreads its clients over (``--per-address`` at most)."""
    share: int = -(-args.clients // args.procs)
    per_address: int = args.per_address
    return max(1, -(-share // per_address))


async def warm_up(port: int) -> None:
    """One real websocket round trip, so lazy imports/allocations are not charged to N."""
    async with (
        asyncio.timeout(10),
        ws_connect(f"ws://127.0.0.1:{port}/ws/en", compression=None, close_timeout=2) as ws,
    ):
        await ws.recv()


async def bench_server(
    name: str, args: argparse.Namespace, rport: int, workdir: Path, first_source: int
) -> dict[str, Any]:
    """Start one server, connect the clients, run every phase, stop it; its figures."""
    redis_url = f"redis://127.0.0.1:{rport}/0"
    r = aioredis.Redis.from_url(redis_url, socket_timeout=30)
    await r.flushall()
    port = procs.free_port()
    log = workdir / f"{name}-{first_source}.log"
    server = procs.start_server(name, port, redis_url, args.server_ping_interval, log)
    workers = procs.Workers()
    res: dict[str, Any] = {"server": name, "clients": args.clients}
    try:
        await procs.wait_healthy(port, server, 30)
        await warm_up(port)
        await asyncio.sleep(1)
        rss0 = procs.rss_kib(server.pid)
        k = addresses_per_worker(args)
        sources = [
            [procs.source_address(first_source + w * k + j) for j in range(k)]
            for w in range(args.procs)
        ]
        await workers.start(port, args.clients, sources, "/ws/en")
        await asyncio.sleep(1)  # workers imported and waiting
        cpu0 = procs.cpu_seconds(server.pid)
        replies = await workers.call({"cmd": "connect"}, args.connect_timeout)
        cpu = procs.cpu_seconds(server.pid) - cpu0
        per_worker = [x["connected"] for x in replies]
        n = sum(per_worker)
        wall = (max(x["t_done"] for x in replies) - min(x["t_start"] for x in replies)) / 1e9
        errors: dict[str, int] = {}
        for x in replies:
            for why, count in x["errors"].items():
                errors[why] = errors.get(why, 0) + count
        await asyncio.sleep(1)
        rss1 = procs.rss_kib(server.pid)
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
        }
        print(f"  {name}: {n} connected in {wall:.1f} s", file=sys.stderr)
        if n < args.clients:  # figures over fewer clients would not compare
            raise RuntimeError(f"only {n} of {args.clients} clients connected: {errors}")
        if n:
            res["single"] = await single_phase(r, workers, server.pid, per_worker, args)
            print(f"  {name}: single items done", file=sys.stderr)
            res["burst"] = await burst_phase(r, workers, server.pid, per_worker, args)
            print(f"  {name}: bursts done", file=sys.stderr)
    except (RuntimeError, TimeoutError, OSError) as exc:
        res["error"] = f"{type(exc).__name__}: {exc}"
        print(f"  {name}: FAILED {res['error']} (log: {log})", file=sys.stderr)
    finally:
        await workers.close()
        procs.stop(server, group=True)
        await r.aclose()
    res["exit_code"] = server.returncode
    return res


def strip(result: dict[str, Any]) -> dict[str, Any]:
    """Drop the per-seq receive timestamps (internal) before writing JSON."""
    for phase in ("single", "burst"):
        part = result.get(phase) or {}
        part.pop("last_ns", None)
        for run in part.get("runs", []):
            run.pop("last_ns", None)
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every server, ``--rounds`` times, on one private redis-server; the figures."""
    procs.raise_nofile()
    # asyncio's child watcher warns when Popen.poll() reaped an exited worker first: harmless.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in args.servers}
    source = 0
    with (
        tempfile.TemporaryDirectory(prefix="fanout-") as tmp,
        procs.redis_server(args.redis_server, Path(tmp)) as rport,
    ):
        for rnd in range(args.rounds):
            order = (
                args.servers[rnd % len(args.servers) :] + args.servers[: rnd % len(args.servers)]
            )
            for name in order:  # rotated each round, so no server always runs first
                print(
                    f"round {rnd + 1}/{args.rounds}: {name}, {args.clients} clients",
                    file=sys.stderr,
                )
                rounds[name].append(strip(await bench_server(name, args, rport, Path(tmp), source)))
                source += args.procs * addresses_per_worker(args)
                await asyncio.sleep(2)  # let the machine settle between servers
    summary = {s: report.median_of_rounds(rs) for s, rs in rounds.items()}
    return {
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "redis": procs.redis_version(args.redis_server),
        },
        "summary": summary,
        "ratios": report.ratios(summary),
        "rounds": rounds,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="websocket fan-out benchmark", epilog="see docs/benchmarks.md"
    )
    p.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated, of: ticker, naive, raw (default: all)",
    )
    p.add_argument("--clients", type=int, default=10000)
    p.add_argument("--procs", type=int, default=4, help="load-gen worker processes")
    p.add_argument(
        "--per-address",
        type=int,
        default=500,
        help="most clients per source address (ticker caps websockets per IP, default 1000)",
    )
    p.add_argument("--items", type=int, default=20, help="single items to publish")
    p.add_argument("--interval", type=float, default=0.6, help="seconds between single items")
    p.add_argument("--bursts", type=int, default=5)
    p.add_argument("--burst-items", type=int, default=20)
    p.add_argument("--rounds", type=int, default=1, help="repeat all servers, take medians")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for deliveries")
    p.add_argument("--connect-timeout", type=float, default=180)
    p.add_argument(
        "--server-ping-interval",
        type=float,
        default=3600,
        help="server ping interval (s) for ticker/naive; 0 keeps their default",
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
        if s not in SERVERS:
            p.error(f"unknown server {s!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, optionally write JSON; 1 if any server failed."""
    args = parse_args(argv)
    result = asyncio.run(run(args))
    print(report.table(result["summary"], result["ratios"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    failed = [r for rs in result["rounds"].values() for r in rs if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
