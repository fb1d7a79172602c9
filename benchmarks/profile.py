"""Profile one server under the fan-out benchmark's load, with py-spy.

Starts a private redis-server and one server (``--server ticker``, ``ticker:2``, ``raw`` ...),
connects ``--clients`` load-gen clients, measures idle CPU, publishes ``--items`` (or bursts of
``--burst`` items) ``--interval`` apart, and prints the server's CPU per connection, idle CPU
and CPU per delivery. With ``--spy FILE`` it runs ``py-spy record`` on the server (root only)
during ``--spy-phase``: ``connect``, ``items`` or ``storm`` (after the items, every client
drops, 5 items are published, every client reconnects with its cursor). Everything is stopped
on the way out.

    python benchmarks/profile.py --clients 10000 --spy /tmp/items.txt          # collapsed stacks
    python benchmarks/profile.py --spy /tmp/connect.json --spy-phase connect --format speedscope

docs/performance.md says what was found this way.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

try:
    from benchmarks import fanout, procs, report
except ImportError:  # run as a script
    import fanout  # type: ignore[no-redef,import-not-found]
    import procs  # type: ignore[no-redef,import-not-found]
    import report  # type: ignore[no-redef,import-not-found]


def spy(args: argparse.Namespace, pid: int, seconds: float) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` (and its workers) for ``seconds``."""
    command = ["py-spy", "record", "-p", str(pid), "-r", str(args.rate), "-d"]
    command += [str(max(1, round(seconds))), "-f", args.format, "-o", str(args.spy)]
    command += ["--nonblocking", "--subprocesses"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def run(args: argparse.Namespace) -> None:
    nofile = procs.raise_nofile()
    name, nprocs = fanout.kind_of(args.server)
    with (
        tempfile.TemporaryDirectory(prefix="profile-") as tmp,
        procs.redis_server(args.redis_server, Path(tmp)) as rport,
    ):
        url = f"redis://127.0.0.1:{rport}/0"
        r = aioredis.Redis.from_url(url, socket_timeout=30)
        port = procs.free_port()
        server = procs.start_server(name, port, url, 3600, Path(tmp) / "server.log", nprocs,
                                    tree=args.ticker_tree if name == "ticker" else None)
        workers = procs.Workers()
        recorder: subprocess.Popen[bytes] | None = None
        try:
            await procs.wait_healthy(port, server, 30)
            await fanout.warm_up(port, 4 * nprocs)
            n = fanout.loadgen_procs(args, args.clients, nofile)
            k = fanout.addresses_per_worker(args.clients, n, 500)
            sources = [[procs.source_address(w * k + j) for j in range(k)] for w in range(n)]
            await workers.start(port, args.clients, sources, "/ws/en")
            await asyncio.sleep(1)
            if args.spy and args.spy_phase == "connect":
                recorder = spy(args, server.pid, args.clients / 2000 + 2)
                await asyncio.sleep(1)
            cpu0 = procs.cpu_seconds(server.pid)
            replies = await workers.call({"cmd": "connect"}, 300)
            cpu = procs.cpu_seconds(server.pid) - cpu0
            connected = [x["connected"] for x in replies]
            print(f"connected {sum(connected)}: {cpu / sum(connected) * 1e6:.1f} µs CPU each")
            await asyncio.sleep(2)
            cpu0 = procs.cpu_seconds(server.pid)
            await asyncio.sleep(args.idle)
            idle = procs.cpu_seconds(server.pid) - cpu0
            print(f"idle: {idle / args.idle * 100:.2f} % of a core")
            if args.spy and args.spy_phase == "items":
                recorder = spy(args, server.pid, args.items * args.interval + 2)
                await asyncio.sleep(1)
            per = args.burst or 1
            cpu0 = procs.cpu_seconds(server.pid)
            start = time.monotonic()
            for seq in range(args.items):
                await asyncio.sleep(max(0.0, start + seq * args.interval - time.monotonic()))
                async with r.pipeline(transaction=False) as pipe:
                    for i in range(per):
                        pipe.xadd(fanout.STREAM, fanout.bench_fields(seq * 100 + i, time.time_ns()))
                    await pipe.execute()
            expected = [c * args.items * per for c in connected]
            got = await fanout.collect(workers, expected, 60)
            cpu = procs.cpu_seconds(server.pid) - cpu0
            lat = [v for g in got for rec in g["items"].values() for v in rec["lat_us"]]
            if lat:
                print(
                    f"{len(lat)} deliveries: {cpu / len(lat) * 1e6:.2f} µs CPU each, latency "
                    f"p50 {report.percentile(lat, 50) / 1000:.1f} ms, "
                    f"p99 {report.percentile(lat, 99) / 1000:.1f} ms"
                )
            if args.spy_phase == "storm":
                await workers.call({"cmd": "disconnect"}, 60)
                for i in range(5):
                    await r.xadd(fanout.STREAM, fanout.bench_fields(900_000 + i, time.time_ns()))
                await asyncio.sleep(1)
                if args.spy:
                    recorder = spy(args, server.pid, args.clients / 2000 + 2)
                    await asyncio.sleep(1)
                cpu0 = procs.cpu_seconds(server.pid)
                t0 = time.monotonic()
                back = await workers.call({"cmd": "reconnect", "concurrency": 250}, 300)
                cpu = procs.cpu_seconds(server.pid) - cpu0
                n = sum(x["connected"] for x in back)
                print(
                    f"storm: {n} resumed in {time.monotonic() - t0:.2f} s, "
                    f"{cpu / max(1, n) * 1e6:.1f} µs CPU each"
                )
            if recorder is not None:
                recorder.wait(60)
                print(f"py-spy: {args.spy}")
        finally:
            if recorder is not None and recorder.poll() is None:
                recorder.kill()
                recorder.wait()
            await workers.close()
            procs.stop(server, group=True)
            await r.aclose()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", default="ticker", help="ticker, raw or naive, optionally :N")
    p.add_argument("--ticker-tree", type=Path, default=None, metavar="DIR",
                   help="run ticker from this source tree (an A/B of two trees)")
    p.add_argument("--clients", type=int, default=10000)
    p.add_argument("--procs", type=int, default=4, help="load-gen worker processes")
    p.add_argument("--items", type=int, default=20)
    p.add_argument("--interval", type=float, default=0.6)
    p.add_argument("--burst", type=int, default=0, help="items per publish (one pipeline)")
    p.add_argument("--idle", type=float, default=5.0, help="seconds of idle CPU to measure")
    p.add_argument("--spy", type=Path, help="py-spy output file")
    p.add_argument("--spy-phase", choices=("connect", "items", "storm"), default="items")
    p.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    p.add_argument("--format", default="raw", help="py-spy format: raw, speedscope, flamegraph")
    p.add_argument("--redis-server", default="/usr/bin/redis-server")
    args = p.parse_args(argv)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
