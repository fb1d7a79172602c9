"""What TICKER_REDIS_WAIT_REPLICAS costs a publish: the store's XADD alone against XADD + WAIT 1
through a real primary with one real replica on this machine, in one run.

    python benchmarks/redis_wait.py [--count 2000]

Prints the median and 99th percentile of each, and their ratio (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ticker.redis.connection import connect  # noqa: E402
from ticker.redis.embedded import find_redis_server  # noqa: E402
from ticker.redis.keys import Keys  # noqa: E402
from ticker.redis.store import Replication, Store  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def timed(store: Store, count: int) -> list[float]:
    out = []
    for n in range(count):
        started = time.perf_counter()
        await store.append("en", {"op": "publish", "text": f"item {n}"})
        out.append((time.perf_counter() - started) * 1e6)
    return out


def start(binary: str, tmp: str) -> tuple[int, list[subprocess.Popen[bytes]]]:
    """A primary and its replica; (the primary's port, the processes)."""
    primary, replica = free_port(), free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    procs = [subprocess.Popen([binary, "--port", str(primary), "--dir", tmp, *common],
                              stdout=subprocess.DEVNULL)]
    (Path(tmp) / "r").mkdir()
    procs.append(subprocess.Popen([binary, "--port", str(replica), "--replicaof",
                                   "127.0.0.1", str(primary), "--dir", f"{tmp}/r", *common],
                                  stdout=subprocess.DEVNULL))
    return primary, procs


async def replica_online(redis: Any) -> None:
    """Until the primary counts its replica online (its first sync done): a WAIT before that
    is answered 0 however the replica is doing, which is not what this measures."""
    while True:
        info = await redis.info("replication")
        if any(isinstance(v, dict) and v.get("state") == "online"
               for k, v in info.items() if k.startswith("slave")):
            return
        await asyncio.sleep(0.05)


async def main(count: int) -> None:
    binary = find_redis_server()
    with tempfile.TemporaryDirectory() as tmp:
        primary, procs = start(binary, tmp)
        try:
            await asyncio.sleep(0.5)
            redis = connect(f"redis://127.0.0.1:{primary}/0")
            async with asyncio.timeout(10):
                await replica_online(redis)
            keys = Keys("bench")
            plain = Store(redis, keys, replication=Replication())
            waiting = Store(redis, keys, replication=Replication(replicas=1))
            await timed(plain, 200)  # warm up both paths
            await timed(waiting, 200)
            warm = waiting.replication.unreplicated
            a, b = await timed(plain, count), await timed(waiting, count)
            for name, xs in (("XADD", a), ("XADD + WAIT 1", b)):
                xs.sort()
                print(f"{name:>14}: median {statistics.median(xs):7.1f} us, "
                      f"p99 {xs[int(len(xs) * 0.99)]:7.1f} us")
            print(f"{'ratio':>14}: median {statistics.median(b) / statistics.median(a):.2f}x")
            print(f"unreplicated: {waiting.replication.unreplicated - warm} of {count} "
                  f"(warming up: {warm} of 200)")
            await redis.aclose()
        finally:
            for p in procs:
                p.terminate()
            await asyncio.to_thread(lambda: [p.wait() for p in procs])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    asyncio.run(main(parser.parse_args().count))
