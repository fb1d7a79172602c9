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
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request

from ticker.core.hub import Hub
from ticker.core.items import Rejection
from ticker.core.limits import ConnectionCap, Proxies
from ticker.newsroom.services import Newsroom
from ticker.node.deskfeed import DeskFeed
from ticker.node.push import PushWorker
from ticker.node.webhooks import WebhookWorker
from ticker.node.worker import Worker
from ticker.process import ticks
from ticker.process.settings import Settings
from ticker.process.stopping import stop_tasks, where
from ticker.redis import connection as redisconn
from ticker.redis.deadletters import DeadLetters
from ticker.redis.keys import Keys
from ticker.redis.reach import Reach
from ticker.redis.reader import Reader
from ticker.redis.store import Replication, Store
from ticker.redis.tokens import Tokens

log = logging.getLogger("ticker.node.runtime")

TASK_STOP_TIMEOUT = 3.0  # seconds the background tasks get to stop at shutdown


class Runtime:
    """Everything one server process runs. Build it, then `async with runtime.run():`."""

    def __init__(self, settings: Settings, redis: Redis, worker: Worker | None = None) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys.for_settings(settings)
        self.worker = worker or Worker()
        # Shared by the API's writes and the desk's: one count of those no replica had in time.
        self.replication = Replication(settings.redis_wait_replicas, settings.redis_wait_timeout)
        self.store = Store(redis, self.keys, settings.stream_maxlen,
                           replication=self.replication)
        self.tokens = Tokens(redis, self.keys)
        self.deadletters = DeadLetters(redis, self.keys)
        self.hub = Hub(
            settings.channels,
            max_items=settings.max_items,
            history_limit=settings.stream_maxlen,
            slow_timeout=settings.slow_timeout,
        )
        # The desks' live feed: woken by the reader after each batch it folds (deskfeed).
        self.desk_feed = DeskFeed(redis, self.keys)
        # Webhooks: the fan-out and deliveries this node holds the leases of (docs/webhooks.md).
        self.webhooks = WebhookWorker(settings, redis, self.keys, self.hub)
        # Web Push: jobs and pushes while this node holds the lease (docs/push.md).
        self.push = PushWorker(settings, redis, self.keys, self.hub)
        self.reader = Reader(
            redis, self.hub, self.keys,
            count=settings.read_count, block_ms=settings.read_block_ms,
            on_rejected=self._dead_letters, on_applied=self._applied,
        )
        # The editors' desk: sign-in, audit, scheduled and pending items (ticker.desk.pages).
        self.newsroom = Newsroom(settings, redis, self.keys, self.hub, self.replication)
        self.reach = Reach(redis, self.hub, self.keys)
        self.redis_errors: Counter[str] = Counter()  # component -> failed Redis commands
        self.dead_letters_written = 0
        self.draining = False
        # Per client address: open websockets/SSE streams, and HTTP requests per second.
        self.proxies = Proxies(settings.trusted_proxies)
        self.ws_cap = ConnectionCap(settings.max_connections_per_ip)
        self.per_channel: Counter[str] = Counter()
        self.pending_dead: list[Rejection] = []
        self.started = False
        self._origins = frozenset(settings.allowed_origins)

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[Runtime]:
        self._tasks = tasks = [
            asyncio.create_task(self.reader.run(), name="ticker-reader"),
            asyncio.create_task(self._housekeeping(), name="ticker-housekeeping"),
            asyncio.create_task(self._heartbeats(), name="ticker-sse-heartbeats"),
            asyncio.create_task(self.reach.run(), name="ticker-reach"),
            asyncio.create_task(self.newsroom.run_scheduler(), name="ticker-scheduler"),
            asyncio.create_task(self.desk_feed.run(), name="ticker-desk-feed"),
            asyncio.create_task(self.webhooks.run(), name="ticker-webhooks"),
            asyncio.create_task(self.push.run(), name="ticker-push"),
        ]
        self.started = True
        await self._await_bootstrap()
        try:
            yield self
        finally:
            self.started = False
            stuck = await stop_tasks(tasks, TASK_STOP_TIMEOUT)
            for task in stuck:
                log.warning("task %s did not stop within %.0f s; leaving it; it waits at:\n%s",
                            task.get_name(), TASK_STOP_TIMEOUT, where(task))
            done = [task for task in tasks if task.done()]
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("task %s had failed: %r", task.get_name(), task.exception())
            await self._final_flush()

    def _applied(self) -> None:
        """The reader folded a batch: wake the desks' feed, the webhook and push fan-outs."""
        self.desk_feed.touch()
        self.webhooks.touch()
        self.push.touch()

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` as one of this runtime's tasks (inside `run()`): stopped with them."""
        self._tasks.append(asyncio.create_task(work, name=name))

    async def _await_bootstrap(self, limit: float = 5.0) -> None:
        """Hold startup (and so the listener) until the streams are folded, unless Redis
        fails or `limit` passes: a restarted worker or node must not greet readers with an
        empty snapshot and then replay the whole stream at them."""
        deadline = time.monotonic() + limit
        # Polled: two conditions the reader owns, checked for a few milliseconds at startup.
        while (not self.reader.bootstrapped and self.reader.errors == 0  # noqa: ASYNC110
               and time.monotonic() < deadline):
            await asyncio.sleep(0.01)

    @property
    def ready(self) -> bool:
        """What /readyz answers: the reader is ready and we are not shutting down."""
        return self.reader.ready and not self.draining

    def drain(self) -> None:
        """Shutdown begins: /readyz turns 503, and every reader (websocket and SSE) is closed
        with 1012 so it resumes elsewhere by cursor. Called once the listeners are closed."""
        self.draining = True
        for channel in self.hub.channels.values():
            for conn in (*channel.writers, *channel.sse_writers, *channel.blocked):
                conn.drop(1012, "service restart: reconnect with your cursor")

    async def _final_flush(self) -> None:
        """On the way out: write what only this process knows (reach counts, dead letters),
        bounded so a dead Redis cannot hold the exit."""
        try:
            async with asyncio.timeout(2.0):
                await self.reach.flush()
                if self.pending_dead:
                    pending, self.pending_dead = self.pending_dead, []
                    await self._dead_letters(pending)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("shutdown: reach counts or dead letters not written (%s)", exc)

    async def _heartbeats(self) -> None:
        """Every TICKER_SSE_HEARTBEAT seconds, a comment line to every SSE reader."""
        while True:
            await ticks.tick(self.settings.sse_heartbeat)
            self.hub.heartbeat()

    async def _housekeeping(self) -> None:
        """Once a second: slow-client sweep, pings, retrying dead letters that failed,
        and (Sentinel) moving to a new master."""
        last_ping = time.monotonic()
        interval = self.settings.ping_interval
        while True:
            await ticks.tick(1.0)
            try:
                now = time.monotonic()
                self.hub.sweep_slow(now)
                # Slack for the wake-up's jitter: a tick that wakes a little sooner after its
                # second than the last one did must not put the ping off by a whole second
                # (with a 1 s interval, pings went out 1 or 2 s apart).
                if interval > 0 and now - last_ping >= interval - 0.25:
                    last_ping = now
                    self.hub.ping()
                if self.pending_dead and self.reader.connected:
                    pending, self.pending_dead = self.pending_dead, []
                    await self._dead_letters(pending)
                await redisconn.follow_failover(self.redis)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping error (continuing)")

    async def _dead_letters(self, rejected: Sequence[Rejection]) -> None:
        for i, rejection in enumerate(rejected):
            try:
                if await self.deadletters.record(rejection):
                    self.dead_letters_written += 1
            except RedisError as exc:
                self.redis_errors["deadletter"] += 1
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


def runtime_of(request: Request) -> Runtime:
    """The process's Runtime, as the lifespan put it in every request's state."""
    runtime: Runtime = request.state.ticker
    return runtime
