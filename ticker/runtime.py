"""Runtime: one process's hub, reader, store and background tasks, owned by the lifespan.

The Starlette lifespan enters `Runtime.run()`; it yields once everything is started and
cancels every task it started on the way out. uvicorn hands the same object to the
websocket protocol (through the lifespan state), so nothing lives in module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ticker.hub import Hub, Rejection
from ticker.reader import Reader
from ticker.settings import Settings
from ticker.store import Keys, Store

log = logging.getLogger("ticker.runtime")


class Runtime:
    """Everything one server process runs. Build it, then `async with runtime.run():`."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.key_prefix)
        self.store = Store(redis, self.keys, settings.stream_maxlen)
        self.hub = Hub(
            settings.channels,
            max_items=settings.max_items,
            history_limit=settings.stream_maxlen,
            slow_timeout=settings.slow_timeout,
        )
        self.reader = Reader(
            redis, self.hub, self.keys,
            count=settings.read_count, block_ms=settings.read_block_ms,
            on_rejected=self._dead_letters,
        )
        self.per_channel: Counter[str] = Counter()
        self.pending_dead: list[Rejection] = []
        self.started = False
        self._origins = frozenset(settings.allowed_origins)

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[Runtime]:
        tasks = [
            asyncio.create_task(self.reader.run(), name="ticker-reader"),
            asyncio.create_task(self._housekeeping(), name="ticker-housekeeping"),
        ]
        self.started = True
        try:
            yield self
        finally:
            self.started = False
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _housekeeping(self) -> None:
        """Once a second: slow-client sweep, pings, retrying dead letters that failed."""
        last_ping = time.monotonic()
        interval = self.settings.ping_interval
        while True:
            await asyncio.sleep(1.0)
            try:
                now = time.monotonic()
                self.hub.sweep_slow(now)
                if interval > 0 and now - last_ping >= interval:
                    last_ping = now
                    self.hub.ping()
                if self.pending_dead and self.reader.connected:
                    pending, self.pending_dead = self.pending_dead, []
                    await self._dead_letters(pending)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping error (continuing)")

    async def _dead_letters(self, rejected: Sequence[Rejection]) -> None:
        for i, rejection in enumerate(rejected):
            try:
                await self.store.dead_letter(rejection)
            except RedisError as exc:
                log.warning("dead letter not written yet (%s); will retry", exc)
                self.pending_dead.extend(rejected[i:])
                if len(self.pending_dead) > 10_000:
                    del self.pending_dead[:-10_000]
                return

    def connections_changed(self, channel: str, delta: int) -> None:
        self.per_channel[channel] += delta

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """No Origin (not a browser), our own origin, or a configured one."""
        if origin is None or "*" in self._origins:
            return True
        origin = origin.rstrip("/")
        if origin in self._origins:
            return True
        parts = urlsplit(origin)
        return bool(host) and parts.scheme in ("http", "https") and parts.netloc == host
