"""`ticker serve --workers 2`: two real processes on one port (SO_REUSEPORT), one supervisor."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from tests.conftest import TIMEOUT
from tests.e2e.fleet import (
    Proc,
    check_exact,
    listening_sockets,
    publish_burst,
    start_readers,
    stop_readers,
    ticker,
    wait_for,
    worker_pids,
)
from ticker.redis.keys import Keys

READERS = 30


def connections_by_worker(n: Proc) -> dict[str, float]:
    text = httpx.get(n.http + "/metrics", timeout=5).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "ticker_connections":
            for sample in family.samples:
                worker = sample.labels["worker"]
                out[worker] = out.get(worker, 0) + sample.value
    return out


async def test_two_workers_share_the_port_and_every_reader_gets_the_same_order(
    tmp_path: Path, redis_url: str, prefix: str, redis: Redis
) -> None:
    key = Keys(prefix).stream("en")
    with ticker(tmp_path, "workers", redis_url=redis_url, key_prefix=prefix, workers=2) as n:
        assert sorted(worker_pids(n)) == [0, 1]
        await wait_for(lambda: listening_sockets(n.port) == 2, "both workers listening")
        readers = await start_readers(READERS, n.ws)
        try:
            # Both processes hold readers (the kernel spread the connections), and one scrape
            # of /metrics, answered by either, shows both workers' series (the other
            # worker's are at most a second old, so this converges within a second).
            def spread() -> bool:
                per_worker = connections_by_worker(n)
                return set(per_worker) == {"0", "1"} and sum(per_worker.values()) == READERS \
                    and all(v > 0 for v in per_worker.values())

            await wait_for(spread, "both workers' connection counts in /metrics")

            ids = await publish_burst(redis, key, 200, batch=20)
            await wait_for(lambda: all(r.cursor == ids[-1] for r in readers),
                           "every reader has the burst", TIMEOUT * 2)
            await check_exact(readers, redis, key)
            # The same events in the same order on every reader of every process.
            assert all(r.cursors == readers[0].cursors for r in readers)
            assert all(r.connections == 1 for r in readers)
        finally:
            await stop_readers(readers)


async def test_a_killed_worker_is_restarted_and_its_readers_lose_nothing(
    tmp_path: Path, redis_url: str, prefix: str, redis: Redis
) -> None:
    key = Keys(prefix).stream("en")
    with ticker(tmp_path, "workers", redis_url=redis_url, key_prefix=prefix, workers=2) as n:
        victim = worker_pids(n)[0]
        await wait_for(lambda: listening_sockets(n.port) == 2, "both workers listening")
        readers = await start_readers(READERS, n.ws)
        try:
            await wait_for(lambda: all(v > 0 for v in connections_by_worker(n).values())
                           and len(connections_by_worker(n)) == 2, "readers on both workers")

            def kill(sent: int) -> None:
                if sent == 100:
                    os.kill(victim, signal.SIGKILL)

            ids = await publish_burst(redis, key, 200, batch=10, pause=0.02, during=kill)
            await wait_for(lambda: all(r.cursor == ids[-1] for r in readers),
                           "every reader has the burst", TIMEOUT * 2)
            await check_exact(readers, redis, key)
            moved = [r for r in readers if r.connections > 1]
            assert moved, "some readers were on the killed worker"
            assert len(moved) < READERS, "the other worker's readers were not disturbed"
            assert all(r.missed for r in moved), "a moved reader resumed by cursor"

            # The supervisor started a new worker 0, and the node is whole again.
            await wait_for(lambda: worker_pids(n).get(0) not in (None, victim),
                           "worker 0 restarted")
            assert f"worker 0 (pid {victim}) exited with signal 9" in n.text()
            assert n.proc.poll() is None
            n.wait_ready()
            await wait_for(lambda: set(connections_by_worker(n)) == {"0", "1"},
                           "the new worker's metrics", TIMEOUT * 2)
        finally:
            await stop_readers(readers)
