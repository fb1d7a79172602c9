"""The one XREAD loop per process that feeds the hub.

Start: each channel's stream is read from its first entry (XRANGE in pages) and folded, so a
restarted node rebuilds its state from the stream alone. Then one `XREAD BLOCK COUNT` over all
channels, each from its own last ID: positions are always explicit, so after a Redis outage
the loop resumes exactly where it stopped, with nothing skipped and nothing applied twice.

Every error is caught and retried with backoff; the task only ends when cancelled.

Redis Cluster (`Keys.cluster`): one XREAD may only name keys of one slot, and each channel's
stream is hash-tagged into its own slot, so there is one loop per slot, all running at once
(a quiet slot's BLOCK must not delay another slot's events). Positions stay per channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.backoff import EqualJitterBackoff
from redis.crc import key_slot
from redis.exceptions import RedisError, ResponseError

from ticker.core.channels import Channel
from ticker.core.clock import now_ms
from ticker.core.hub import Hub
from ticker.core.items import Rejection, parse_stream_id
from ticker.redis.keys import Keys

log = logging.getLogger("ticker.redis.reader")

BOOTSTRAP_PAGE = 1000



def _id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def before(entry_id: str) -> tuple[int, int]:
    """The largest stream ID below `entry_id`: nothing can sit between the two."""
    parsed = parse_stream_id(entry_id) or (0, 0)
    ms, seq = parsed
    if seq > 0:
        return ms, seq - 1
    return (ms - 1, (1 << 64) - 1) if ms > 0 else (0, 0)


async def stream_pages(redis: Redis, key: str) -> AsyncIterator[Sequence[Any]]:
    """A channel's whole stream, oldest first, in pages of BOOTSTRAP_PAGE entries."""
    start = "-"
    while True:
        rows: Any = await redis.xrange(key, start, "+", count=BOOTSTRAP_PAGE)
        if not rows:
            return
        yield rows
        start = "(" + _id(rows[-1][0])
        if len(rows) < BOOTSTRAP_PAGE:
            return


async def fold(redis: Redis, keys: Keys, channels: Iterable[Channel]) -> Hub:
    """Every channel's stream folded into a hub of its own, with no readers: what a
    command that is not a server (`ticker post --translation-of`, `ticker kill
    --all-versions`) checks against, exactly as a node would."""
    hub = Hub(channels)
    for name, channel in hub.channels.items():
        async for rows in stream_pages(redis, keys.stream(name)):
            channel.apply([(_id(entry_id), fields) for entry_id, fields in rows], now_ms(),
                          live=False)
    return hub


class Reader:
    """Owns the read position of every channel and the health of the Redis link."""

    def __init__(
        self,
        redis: Redis,
        hub: Hub,
        keys: Keys,
        *,
        count: int = 500,
        block_ms: int = 1000,
        on_rejected: Callable[[Sequence[Rejection]], Awaitable[None]] | None = None,
        on_applied: Callable[[], None] | None = None,
    ) -> None:
        self.redis = redis
        self.hub = hub
        self.keys = keys
        self.count = count
        self.block_ms = block_ms
        self.on_rejected = on_rejected
        self.on_applied = on_applied  # called after each batch is folded (the desk feed)
        self.streams = {keys.stream(name): name for name in hub.channels}
        # The streams one XREAD may name together: all of them, or one slot's in a cluster.
        self.groups: list[dict[str, str]] = [self.streams]
        if keys.cluster:
            slots: dict[int, dict[str, str]] = {}
            for key, name in self.streams.items():
                slots.setdefault(key_slot(key.encode()), {})[key] = name
            self.groups = list(slots.values())
        self._down: set[str] = set()  # groups whose last read failed
        self._behind: set[str] = set()  # groups whose last read was a full page
        self._bootstrapping = asyncio.Lock()
        self.bootstrapped = False
        self.caught_up = False
        self.connected = False
        self.last_ok = 0.0
        self.errors = 0
        self.last_error = ""
        self.lag_ms = 0

    @property
    def ready(self) -> bool:
        """Bootstrapped, caught up, and Redis answered within the last few seconds."""
        fresh = time.monotonic() - self.last_ok < self.block_ms / 1000 + 3
        return self.bootstrapped and self.caught_up and self.connected and fresh

    async def run(self) -> None:
        if len(self.groups) == 1:
            await self._loop(self.groups[0])
            return
        async with asyncio.TaskGroup() as tasks:
            for i, group in enumerate(self.groups):
                tasks.create_task(self._loop(group), name=f"ticker-reader-slot-{i}")

    async def _loop(self, streams: dict[str, str]) -> None:
        # Capped at 2 s: a reconnect attempt is one cheap TCP connect, and readers are shown
        # a stale ticker until it succeeds. Equal jitter: between half and all of the
        # doubling delay, so nodes that lost Redis together do not retry in step.
        backoff, failures = EqualJitterBackoff(cap=2.0, base=0.1), 0
        tag = next(iter(streams))
        while True:
            try:
                async with self._bootstrapping:
                    if not self.bootstrapped:
                        await self.bootstrap()
                await self.read_once(streams)
                self._down.discard(tag)
                if not self.connected and not self._down:
                    log.info("redis reachable again; reading resumes from the last ids")
                self.connected = not self._down
                if self.connected:
                    self.hub.set_stale(False, now_ms())
                failures = 0
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._failed(exc, tag)
                await asyncio.sleep(backoff.compute(failures))
                failures += 1
            except Exception as exc:  # a bug must not kill the only reader: log and go on
                log.exception("reader error (continuing)")
                self._failed(exc, tag)
                await asyncio.sleep(backoff.compute(failures))
                failures += 1

    def _failed(self, exc: BaseException, tag: str = "") -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.connected or self.errors == 1:
            log.warning("redis unreachable (%s); retrying with backoff", self.last_error)
        self._down.add(tag)
        self.connected = False
        self.caught_up = False
        self.hub.set_stale(True, now_ms())

    async def bootstrap(self) -> None:
        """Fold every channel's whole stream, oldest first (the restart path)."""
        for key, name in self.streams.items():
            channel = self.hub.channels[name]
            channel.horizon = await self._horizon(key)
            async for rows in stream_pages(self.redis, key):
                await self._apply(name, rows)
            log.info("channel %s: folded up to %s (%d items)", name, channel.state.cursor,
                     len(channel.state.items))
        self.bootstrapped = True
        self.connected = True
        self.last_ok = time.monotonic()

    async def _horizon(self, key: str) -> tuple[int, int]:
        """Cursors below this cannot resume: entries after them were trimmed."""
        try:
            info: dict[Any, Any] = await self.redis.xinfo_stream(key)
        except ResponseError:
            return (0, 0)  # no such stream yet: nothing was ever trimmed
        zero = (0, 0)
        deleted = parse_stream_id(_id(info.get("max-deleted-entry-id") or b"0-0")) or zero
        added = info.get("entries-added")
        if added is not None and int(added) == int(info.get("length", -1)) \
                and deleted == zero:
            return zero  # Redis >= 7 says nothing was ever trimmed or deleted
        # Trimming does not move max-deleted-entry-id: whatever came before the first
        # entry may have been trimmed, so the horizon is just below it.
        first = info.get("first-entry")
        if first:
            return max(deleted, before(_id(first[0])))
        last = parse_stream_id(_id(info.get("last-generated-id") or b"0-0")) or zero
        return max(deleted, last)

    async def read_once(self, streams: dict[str, str] | None = None) -> None:
        """One XREAD over `streams` (default: every channel), each from its own position;
        apply what came."""
        streams = self.streams if streams is None else streams
        positions: dict[Any, Any] = {key: self.hub.channels[name].state.cursor
                                     for key, name in streams.items()}
        reply: Any = await self.redis.xread(positions, count=self.count, block=self.block_ms)
        self.last_ok = time.monotonic()
        total = 0
        for stream, rows in reply or ():
            total += len(rows)
            await self._apply(self.streams[_id(stream)], rows)
        tag = next(iter(streams))
        if total < self.count:
            self._behind.discard(tag)
        else:
            self._behind.add(tag)
        self.caught_up = not self._behind
        if total:
            last = max(parse_stream_id(_id(rows[-1][0])) or (0, 0) for _, rows in reply)
            self.lag_ms = max(0, now_ms() - last[0])

    async def _apply(self, name: str, rows: Sequence[Any]) -> None:
        entries = [(_id(entry_id), fields) for entry_id, fields in rows]
        channel = self.hub.channels[name]
        rejected = channel.apply(entries, now_ms(), live=self.bootstrapped)
        channel.observe(time.time())  # the writes to readers are done: their latency
        if self.on_applied is not None:
            self.on_applied()
        if rejected:
            for r in rejected:
                log.warning("rejected entry %s in %s: %s (%s)", r.entry_id, r.channel,
                            r.error.message, r.error.field)
            if self.on_rejected is not None:
                await self.on_rejected(rejected)
