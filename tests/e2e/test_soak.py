"""Soak: connection churn, steady publishing, corrections, holds and kills against a real
`ticker serve` process. Server memory stays flat and no reader loses or repeats anything.

Runs for TICKER_SOAK_SECONDS (60 in CI; 600 for the full soak: see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from pathlib import Path

import httpx
import websockets
from redis.asyncio import Redis

from tests.conftest import TIMEOUT
from tests.e2e.fleet import ticker
from tests.e2e.verifier import Record, verify, visible_events
from ticker.redis.keys import Keys

SECONDS = float(os.environ.get("TICKER_SOAK_SECONDS", "60"))
READERS = 40


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class ChurningReader:
    """Reconnects every few seconds with its cursor, like a reader hopping between pages."""

    def __init__(self, url: str, rng: random.Random) -> None:
        self.url = url
        self.rng = rng
        self.record = Record()
        self.cursor: str | None = None
        self.connections = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            url = self.url + (f"?cursor={self.cursor}" if self.cursor else "")
            with contextlib.suppress(OSError, websockets.ConnectionClosed, TimeoutError):
                async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
                    self.connections += 1
                    stay = time.monotonic() + self.rng.uniform(0.5, 4.0)
                    while time.monotonic() < stay and not self.stop.is_set():
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 0.25)
                        except TimeoutError:
                            continue
                        self.take(json.loads(raw))
            await asyncio.sleep(self.rng.uniform(0.0, 0.3))

    def take(self, msg: dict[str, object]) -> None:
        self.record.take(msg)  # type: ignore[arg-type]
        if msg.get("type") in ("snapshot", "events"):
            self.cursor = str(msg["cursor"])

    async def drain_to(self, last: str) -> None:
        """One last connection, read until the reader has everything up to `last`."""
        url = self.url + (f"?cursor={self.cursor}" if self.cursor else "")
        async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
            while self.cursor != last:
                self.take(json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))


async def publisher(redis: Redis, http: httpx.AsyncClient, token: str, key: str,
                    stop: asyncio.Event, rng: random.Random) -> int:
    """Publishes ~5 items/s (half over HTTP, half raw), and corrects, holds and kills some."""
    published: list[str] = []
    n = 0
    auth = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        n += 1
        if n % 2:
            r = await http.post("/api/channels/en/items", headers=auth,
                                json={"text": f"soak item {n}", "ttl": 600})
            assert r.status_code == 201, r.text
            published.append(r.json()["id"])
        else:
            published.append((await redis.xadd(key, {"text": f"soak item {n}"})).decode())
        live = published[-15:]
        roll = rng.random()
        target = rng.choice(live)
        if roll < 0.15:
            await http.post(f"/api/channels/en/items/{target}/correct", headers=auth,
                            json={"text": f"soak item, corrected at {n}"})
        elif roll < 0.22:
            await http.post(f"/api/channels/en/items/{target}/kill", headers=auth,
                            json={"reason": "soak"})
        elif roll < 0.28:
            await redis.xadd(key, {"op": "hold", "item": target})
            await redis.xadd(key, {"op": "release", "item": target})
        elif roll < 0.30:
            await redis.xadd(key, {"op": "kill"})  # invalid: must be dead-lettered, not sent
        await asyncio.sleep(0.2)
    return n


async def test_soak_churn_publishing_corrections_and_kills(
    tmp_path: Path, redis_url: str, prefix: str, redis: Redis, token: str
) -> None:
    rng = random.Random(20261127)
    key = Keys(prefix).stream("en")
    with ticker(tmp_path, "soak", redis_url=redis_url, key_prefix=prefix,
                log_level="warning", rate_limit=0) as node:
        url = f"ws://127.0.0.1:{node.port}/ws/en"
        readers = [ChurningReader(url, random.Random(rng.random())) for _ in range(READERS)]
        tasks = [asyncio.create_task(r.run()) for r in readers]
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=node.http) as http:
            pub = asyncio.create_task(publisher(redis, http, token, key, stop, rng))
            await asyncio.sleep(SECONDS * 0.25)
            warm = rss_kib(node.proc.pid)
            samples = [warm]
            for _ in range(3):
                await asyncio.sleep(SECONDS * 0.25)
                samples.append(rss_kib(node.proc.pid))
            stop.set()
            published = await pub
        for reader in readers:
            reader.stop.set()
        await asyncio.gather(*tasks)
        events = await visible_events(redis, key)
        last_id = (await redis.xrevrange(key, count=1))[0][0].decode()
        await asyncio.gather(*(r.drain_to(last_id) for r in readers))
        end = rss_kib(node.proc.pid)

    assert published >= SECONDS * 3  # it really was steady publishing
    assert sum(r.connections for r in readers) >= READERS * SECONDS / 5  # and real churn
    for n, reader in enumerate(readers):
        try:
            verify(reader.record, events, allow_resets=False)
        except AssertionError as exc:
            raise AssertionError(f"reader {n}: {exc}") from None
    # Memory is flat once warm: growth is bounded by the history of this run's events,
    # not by the connections that came and went.
    growth = max(*samples, end) - warm
    assert growth < max(8 * 1024, warm // 5), f"RSS {samples} -> {end} KiB"
