"""The desk's live feed, pushed: one notifier per process that every open desk waits on.

`DeskFeed.version` moves whenever what a desk shows may have changed; each open desk's
Server-Sent Events stream (`ticker.desk.api.events`) waits for it to move, then looks. What
changes a desk's view, and how this process learns it:

- **A stream entry** (a publish, correction, kill... made on any node): the reader folds it
  into the hub and calls `touch()` once per applied batch (`Reader(on_applied=...)`). No
  Redis call: this node reads every entry anyway.
- **A job** (scheduled, submitted, approved, rejected, cancelled, released; `ticker.newsroom.jobs`):
  every job change bumps the `desk-version` key in the same Lua script that makes it, on
  whichever node makes it. ONE watcher per process (`run()`) reads that key every `POLL`
  seconds while at least one desk is open, and touches when it moved. With no desk open it
  sleeps on an event: no Redis call and no wake-up. `POLL` divides a second, so every
  fourth read falls on the tick the process's once-a-second jobs wake on (`ticker.process.ticks`).
- **Time**: an item's desk status changes when it expires (and an expired one leaves the
  board an hour later), and the reach totals grow without any stream entry (this process's
  own counts at once, other nodes' when they flush, every 5 s; `ticker.redis.reach`). So while a
  desk is open the watcher also touches every `REFRESH` second: expiries and reach totals
  show within a second, as before, for one rebuild per process (not per desk).

**Why one poll of one key, not Redis pub/sub.** A `PUBLISH` in the job scripts would push
changes without a poll, but it needs a subscriber connection per process that must follow a
Sentinel failover and a cluster's topology, a Redis user allowed on pub/sub channels (Redis 7
gives a new ACL user none), and a re-read after every reconnect, since messages sent while
disconnected are lost. One `GET` every `POLL` seconds per process (4 a second, only while a
desk is open) needs none of that, works the same on a single Redis, Sentinel and Cluster,
and gives about the same delay as before (a job changed on another node shows within about
`POLL`, 0.25 s; it was 0.3 s). Its failures are also how the desks learn that Redis is
unreachable (`stale`).

The desk view is the same for every desk but its `me` and `now`, so `shared()` builds it once
per version, however many desks ask. What stays per desk is its session check
(`ticker.desk.api.FEED_SESSION_CHECK`). Before, each open desk read `desk-version` every 0.3 s
and rebuilt its whole view every second: Redis commands in proportion to the open desks, even
when nothing happened (tests/e2e/test_desk_feed.py counts them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ticker.process import ticks
from ticker.redis.keys import Keys

log = logging.getLogger("ticker.node.deskfeed")

POLL: Final = 0.25  # seconds between reads of `desk-version` while a desk is open
REFRESH: Final = 1.0  # seconds between touches for expiries and reach totals
RETRY: Final = 1.0  # seconds between reads while Redis is unreachable

T = TypeVar("T")


class DeskFeed:
    """What every open desk of this process waits on. The Runtime owns it and runs `run()`."""

    def __init__(self, redis: Redis, keys: Keys, *, poll: float = POLL,
                 refresh: float = REFRESH) -> None:
        self.redis = redis
        self.key = keys.desk_version
        self.poll = poll
        self.refresh = refresh
        self.version = 0  # moves on every possible change of the desk view
        self.stale = False  # the watcher's last read of Redis failed
        self.desks = 0  # open desk feeds (the watcher reads Redis only while there are some)
        self._changed: asyncio.Event | None = None  # made when a desk waits, set by touch()
        self._opened = asyncio.Event()  # set while desks > 0
        self._shared: tuple[int, asyncio.Future[Any]] | None = None

    def touch(self) -> None:
        """The desk view may have changed: wake every waiting desk. O(1), no I/O, so the
        reader can call it after every batch it applies."""
        self.version += 1
        event, self._changed = self._changed, None
        if event is not None:
            event.set()

    async def wait(self, seen: int, within: float) -> int:
        """The version, once it is not `seen` or after `within` seconds, whichever first."""
        if self.version == seen:
            if self._changed is None:
                self._changed = asyncio.Event()
            event = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, within)):
                    await event.wait()
        return self.version

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """One open desk feed, for as long as the block runs; the watcher reads Redis while
        at least one is open."""
        self.desks += 1
        self._opened.set()
        try:
            yield
        finally:
            self.desks -= 1
            if self.desks == 0:
                self._opened.clear()
                self._shared = None  # not kept while nobody looks

    async def shared(self, build: Callable[[], Awaitable[T]]) -> T:
        """`build()`'s result for the current version, built once however many desks ask:
        the first builds it, the others await the same build (one cancelled desk does not
        cancel it for the others). A failure is shared too, until the next `touch()`, so a
        Redis outage costs one failed build per change, not one per desk. There is one
        such view per process: every caller passes the same kind of `build`."""
        version = self.version
        if self._shared is None or self._shared[0] != version:
            built = asyncio.ensure_future(build())
            # Retrieved here too: if every desk that asked is gone, its failure is not an
            # "exception was never retrieved" at shutdown.
            built.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._shared = (version, built)
        return cast(T, await asyncio.shield(self._shared[1]))

    async def run(self) -> None:
        """The watcher: while a desk is open, read `desk-version` every `poll` seconds and
        touch when it moved, every `refresh` seconds, and when Redis fails or comes back.
        Runs until cancelled (by the Runtime)."""
        loop = asyncio.get_running_loop()
        last: Any = None  # the desk version last read
        refreshed = loop.time()
        while True:
            try:
                if not self.desks:
                    await self._opened.wait()
                try:
                    version = await self.redis.get(self.key)
                except (RedisError, OSError) as exc:
                    if not self.stale:
                        log.warning("desk feed: redis unreachable (%s); desks told", exc)
                        self.stale = True
                        self.touch()
                    await ticks.tick(RETRY)
                    continue
                if self.stale or version != last:
                    if self.stale:
                        log.info("desk feed: redis reachable again")
                    self.stale = False
                    last = version
                    refreshed = loop.time()
                    self.touch()
                elif loop.time() - refreshed >= self.refresh - self.poll / 2:
                    refreshed = loop.time()
                    self.touch()  # expiries and reach totals
                await ticks.tick(self.poll)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop every desk's feed: log and go on
                log.exception("desk feed watcher error (continuing)")
                await asyncio.sleep(RETRY)
