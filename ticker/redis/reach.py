"""Reach: how many reader connections each item was written to, summed over every node.

The hub counts, per item, the connections this process wrote the item to (the live frame
with its `publish` event, or a snapshot that showed it). Every `INTERVAL` seconds (aligned
with the process's other ticks) `Reach.flush` moves those counts into one Redis hash per
channel (`Keys.reach`: item id -> total) with HINCRBY in one pipeline, and starts counting
afresh. The totals this process answers include what it has not flushed yet, so only other
processes' counts are up to `INTERVAL` old; a flush per second cost ~0.1 ms of CPU per item
per process, 1 % of a 1,000-reader fan-out (docs/performance.md). Counts a flush could not
write (Redis down) are kept and written by a later flush: an outage delays reach, it does
not lose it. A flush whose reply is lost after Redis applied it may count those seconds
twice; reach is an audience figure, and losing every count of an outage would be the worse
error.

The totals are served by `ticker.transport.reach` (`GET .../reach`, bearer token), including
what this process has counted but not yet flushed. Fields of items older than
`RETENTION_MS` are pruned from the hashes every `PRUNE_EVERY` seconds so they stay small.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ticker.core.clock import now_ms
from ticker.core.hub import Hub
from ticker.core.items import parse_stream_id
from ticker.process import ticks
from ticker.redis.keys import Keys

log = logging.getLogger("ticker.redis.reach")

INTERVAL = 5.0
RETENTION_MS = 30 * 24 * 3600 * 1000
PRUNE_EVERY = 3600.0


class Reach:
    """Flushes this process's reach counts to Redis and reads the totals back."""

    def __init__(self, redis: Redis, hub: Hub, keys: Keys) -> None:
        self.redis = redis
        self.hub = hub
        self.keys = keys
        # Counts taken from the hub that no flush has written yet (Redis was down).
        self.carry: dict[str, Counter[str]] = {}
        self.flushes = 0
        self.errors = 0
        self.written = 0  # item counts written (HINCRBY commands that succeeded)

    def take(self) -> dict[str, Counter[str]]:
        """Every channel's counts since the last flush (the hub starts new ones)."""
        batch: dict[str, Counter[str]] = {}
        for name, channel in self.hub.channels.items():
            counts = self.carry.pop(name, Counter())
            if channel.reach:
                fresh, channel.reach = channel.reach, Counter()
                counts.update(fresh)
            if counts:
                batch[name] = counts
        return batch

    async def flush(self) -> int:
        """Write the counts (HINCRBY, one pipeline); returns how many item counts were written.

        Raises RedisError after putting the counts back for the next flush.
        """
        batch = self.take()
        if not batch:
            return 0
        # One MULTI for a single Redis: all or nothing. A cluster splits the pipeline by slot.
        pipe = self.redis.pipeline(transaction=not self.keys.cluster)
        n = 0
        for name, counts in batch.items():
            key = self.keys.reach(name)
            for item_id, count in counts.items():
                if count > 0:
                    pipe.hincrby(key, item_id, count)
                    n += 1
        try:
            await pipe.execute()
        except BaseException as exc:  # failed or cancelled (shutdown): keep them for later
            if isinstance(exc, RedisError | OSError):
                self.errors += 1
            for name, counts in batch.items():
                self.carry.setdefault(name, Counter()).update(counts)
            raise
        self.flushes += 1
        self.written += n
        return n

    def pending(self, channel: str, item_id: str) -> int:
        """What this process counted for the item and has not written yet."""
        ch = self.hub.channel(channel)
        local = ch.reach.get(item_id, 0) if ch is not None else 0
        return local + self.carry.get(channel, Counter()).get(item_id, 0)

    async def totals(self, channel: str, item_ids: Iterable[str]) -> dict[str, int]:
        """item id -> reach over every node (this process's unflushed counts included)."""
        ids = list(dict.fromkeys(item_ids))
        if not ids:
            return {}
        values: list[Any] = await self.redis.hmget(self.keys.reach(channel), ids)
        return {item_id: int(v or 0) + self.pending(channel, item_id)
                for item_id, v in zip(ids, values, strict=True)}

    async def prune(self, now_ms: int) -> int:
        """Drop fields of items older than RETENTION_MS; returns how many."""
        cutoff = now_ms - RETENTION_MS
        dropped = 0
        for name in self.hub.channels:
            key = self.keys.reach(name)
            old: list[Any] = []
            async for field, _ in self.redis.hscan_iter(key, count=500):
                parsed = parse_stream_id(field.decode() if isinstance(field, bytes) else field)
                if parsed is None or parsed[0] < cutoff:
                    old.append(field)
            for start in range(0, len(old), 500):
                dropped += await self.redis.hdel(key, *old[start:start + 500])
        return dropped

    async def run(self, interval: float = INTERVAL) -> None:
        """Flush every `interval` seconds (and prune hourly) until cancelled."""
        next_prune = time.monotonic() + 60.0  # not during startup
        failing = False
        while True:
            await ticks.tick(interval)
            try:
                await self.flush()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_EVERY
                    await self.prune(now_ms())
                if failing:
                    log.info("reach counts are being written again")
                failing = False
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("reach counts not written (%s); kept for the next flush", exc)
                failing = True
            except Exception:
                log.exception("reach flush error (continuing)")
