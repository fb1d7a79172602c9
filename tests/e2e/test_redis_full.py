"""Redis full: out of memory (`maxmemory`, `noeviction`) and a full disk under the AOF. Real
redis-servers of the test's own (the AOF on a small tmpfs the test mounts), a real node,
real readers. Publishing answers a clear error naming the cause, never a 500; nothing is
half-written; readers keep their ticker; everything recovers by itself when space returns.
And trimming keeps Redis's memory flat over a busy newsroom day (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from tests.conftest import TIMEOUT, free_port, make_settings, running_server, start_redis
from tests.e2e.deskkit import Desk, add_user
from tests.e2e.fleet import check_exact, start_readers, stop_readers, wait_for
from ticker.redis.connection import connect as redis_client
from ticker.redis.embedded import find_redis_server
from ticker.redis.keys import Keys
from ticker.redis.tokens import Tokens


async def fill(redis: Redis, prefix: str) -> int:
    """Fill Redis past its maxmemory: filler keys, then the limit lowered below what is
    used (a write that just fits would otherwise slip through); how many keys."""
    n = 0
    with contextlib.suppress(ResponseError):
        while n < 1000:
            await redis.set(f"{prefix}:filler:{n}", b"x" * 50_000)
            n += 1
    info: Any = await redis.info("memory")
    await redis.config_set("maxmemory", int(info["used_memory"]) - 1024 * 1024)
    return n


async def test_out_of_memory_answers_507_writes_nothing_and_recovers(
    tmp_path: Path, prefix: str
) -> None:
    server = start_redis(tmp_path, None, "--maxmemory", "16mb",
                         "--maxmemory-policy", "noeviction")
    redis = redis_client(server.url)
    try:
        keys = Keys(prefix)
        token = await Tokens(redis, keys).create("oom")
        await add_user(redis, prefix, "maria", "editor")
        auth = {"Authorization": f"Bearer {token}"}
        async with running_server(make_settings(server.url, prefix)) as node, \
                httpx.AsyncClient(base_url=node.http, headers=auth, timeout=TIMEOUT) as http:
            readers = await start_readers(3, lambda c: node.ws("en", c))
            desk = await Desk.sign_in(node, "maria")
            try:
                r = await http.post("/api/channels/en/items", json={"text": "before"})
                assert r.status_code == 201
                audit_before = await redis.xlen(keys.channel_audit("en"))
                assert await fill(redis, prefix) > 0

                r = await http.post("/api/channels/en/items", json={"text": "while full"})
                assert r.status_code == 507, r.text
                assert r.json()["error"] == "redis_out_of_memory"
                assert "out of memory" in r.json()["message"]
                assert r.headers["retry-after"] == "5"
                r = await http.post("/api/channels/en/items",
                                    json={"text": "with a key", "idem": "oom-1"})
                assert r.status_code == 507
                assert await redis.exists(keys.idem("en", "oom-1")) == 0  # no record left
                r = await desk.post("/desk/api/items", {"text": "from the desk",
                                                        "channels": ["en"]})
                assert r.status_code == 507 and "out of memory" in r.json()["message"]
                assert await redis.xlen(keys.channel_audit("en")) == audit_before
                assert all(reader.closes == [] for reader in readers)  # tickers stay

                # Space returns: everything works again, by itself.
                await redis.delete(*[f"{prefix}:filler:{n}" for n in range(1000)])
                r = await http.post("/api/channels/en/items",
                                    json={"text": "with a key", "idem": "oom-1"})
                assert r.status_code == 201, r.text
                after = r.json()["id"]
                await desk.publish("from the desk, again", ["en"])
                assert await redis.xlen(keys.channel_audit("en")) == audit_before + 1
                await wait_for(lambda: all(after in rd.cursors for rd in readers), "readers")
                await asyncio.sleep(0.3)
                await check_exact(readers, redis, keys.stream("en"))
            finally:
                await desk.close()
                await stop_readers(readers)
    finally:
        await redis.aclose()
        server.stop()


def fill_disk(path: Path) -> None:
    """Write until the disk is full."""
    with contextlib.suppress(OSError), open(path, "wb") as out:
        for _ in range(64 * 1024):
            out.write(b"x" * 1024)
            out.flush()


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


async def test_a_full_disk_under_the_aof_answers_507_and_recovers(
    tmp_path: Path, prefix: str
) -> None:
    with small_disk(tmp_path / "disk", "3m") as disk:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(disk),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        redis = redis_client(url)
        try:
            deadline = time.monotonic() + TIMEOUT
            while True:
                try:
                    await redis.ping()
                    break
                except Exception:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
            keys = Keys(prefix)
            token = await Tokens(redis, keys).create("disk")
            auth = {"Authorization": f"Bearer {token}"}
            async with running_server(make_settings(url, prefix)) as node, \
                    httpx.AsyncClient(base_url=node.http, headers=auth, timeout=TIMEOUT) as http:
                readers = await start_readers(2, lambda c: node.ws("en", c))
                try:
                    # The disk fills up (something else on it grows).
                    filler = disk / "filler"
                    await asyncio.to_thread(fill_disk, filler)
                    statuses: list[int] = []
                    refused: dict[str, Any] = {}
                    for n in range(200):
                        r = await http.post("/api/channels/en/items",
                                            json={"text": f"line {n} " + "y" * 200})
                        statuses.append(r.status_code)
                        if r.status_code != 201:
                            refused = r.json()
                            break
                    assert statuses[-1] == 507, statuses
                    assert refused["error"] == "redis_disk", refused
                    assert "disk" in refused["message"]
                    assert all(reader.closes == [] for reader in readers)
                    # Space returns: Redis writes its AOF again, and so do we.
                    filler.unlink()
                    deadline = time.monotonic() + TIMEOUT * 3
                    while True:
                        r = await http.post("/api/channels/en/items", json={"text": "back"})
                        if r.status_code == 201:
                            break
                        assert r.status_code == 507, r.text
                        assert time.monotonic() < deadline, "Redis never took writes again"
                        await asyncio.sleep(0.25)
                    back = r.json()["id"]
                    await wait_for(lambda: all(back in rd.cursors for rd in readers),
                                   "readers after the disk came back")
                    await check_exact(readers, redis, keys.stream("en"))
                finally:
                    await stop_readers(readers)
        finally:
            await redis.aclose()
            proc.terminate()
            await asyncio.wait_for(proc.wait(), TIMEOUT)


@pytest.mark.slow
async def test_trimming_keeps_redis_memory_flat_over_a_busy_day(
    tmp_path: Path, prefix: str
) -> None:
    """5,000 items with corrections and kills, as fast as they go: Redis's memory levels off
    once the streams reach TICKER_STREAM_MAXLEN."""
    server = start_redis(tmp_path, None)
    redis = redis_client(server.url)
    try:
        keys = Keys(prefix)
        settings = make_settings(server.url, prefix, stream_maxlen=1000)
        samples: list[int] = []
        async with running_server(settings) as node:
            store = node.runtime.store
            published: list[str] = []
            for n in range(5000):
                entry_id, _ = await store.append("en", {
                    "op": "publish", "text": f"Line {n} of the day: " + "words " * 20,
                    "by": "wire"})
                published.append(entry_id)
                if n % 5 == 4:
                    await store.append("en", {"op": "correct", "item": published[-2],
                                              "text": f"Line {n - 1}, corrected", "by": "desk"})
                if n % 10 == 9:
                    await store.append("en", {"op": "kill", "item": published[-3],
                                              "reason": "wrong", "by": "desk"})
                if n % 500 == 499:
                    info: Any = await redis.info("memory")
                    samples.append(int(info["used_memory"]))
            length = await redis.xlen(keys.stream("en"))
        print("\nused_memory every 500 items (KiB): "
              + " ".join(str(s // 1024) for s in samples))
        assert length < 1000 * 1.5  # capped (approximately, as XADD MAXLEN ~ trims)
        # From the time the stream is full, memory stays within 20 % of where it was.
        steady = samples[3:]
        assert max(steady) <= min(steady) * 1.2, samples
    finally:
        await redis.aclose()
        server.stop()
