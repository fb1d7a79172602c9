"""Web Push, sent (RFC 8030, 8291, 8292; docs/push.md).

One node at a time holds the `push` lease and does both halves, in order:

- **Jobs**: the events its hub folded after the stored position of each channel become
  push jobs: a flash item (an urgent one too in TICKER_PUSH_URGENT's editions) is pushed;
  the kill of an item pushed less than its time to live ago is withdrawn. The jobs and the
  new positions are written in one transaction, which fails if another node moved them.
- **Pushes**: each job goes to every subscription of its edition, many at once: the payload
  encrypted for each subscription (`pywebpush`, aes128gcm), signed for its push service
  (`py_vapid`, a VAPID JWT for the endpoint's origin), with `TTL` (what is left of the
  item's time on air, at most a day), `Urgency: high` and a `Topic` shared by the item's
  push and its withdrawal. 429 and 5xx are retried with backoff (honouring `Retry-After`) a
  few times; 404 and 410 mean the subscription expired: it is removed. Each subscription
  done is recorded, so the node that takes over after a crash skips it.

Every push goes through `ticker.node.outbound`: the endpoint's resolved address is checked
(public addresses only, unless TICKER_PUSH_ALLOW), no redirects, one total timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02
from pywebpush import WebPusher
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ticker.core.addresses import parse_allowed
from ticker.core.channels import Channel
from ticker.core.clock import now_ms
from ticker.core.hub import ChannelHub, Hub
from ticker.core.push import MAX_TTL, PushSubscription, b64url, notification, pushes, topic
from ticker.node.leased import FanOutPositions, LeasedLoop
from ticker.node.outbound import Outcome, Sender, backoff
from ticker.node.webhooks import key_of, place_of
from ticker.process.settings import Settings
from ticker.redis.keys import Keys
from ticker.redis.leases import Leases
from ticker.redis.push import PushStore

log = logging.getLogger("ticker.node.push")

LEASE_MS: Final = 10_000
RENEW_EVERY: Final = 3.0
CONCURRENCY: Final = 32  # pushes in flight at once
PAGE: Final = 200  # subscriptions read (and recorded as done) at a time
ATTEMPTS: Final = 4  # per subscription and job
RETRY_BASE: Final = 1.0  # seconds; doubled per attempt
RETRY_CAP: Final = 30.0
TIMEOUT: Final = 10.0
FANOUT_BATCH: Final = 500
SUBSCRIPTIONS_EVERY: Final = 10.0


def load_vapid(settings: Settings) -> Vapid02 | None:
    """The VAPID key from TICKER_PUSH_KEY_FILE (or the data directory), or None: no push."""
    path = settings.vapid_file
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return None
    return Vapid02.from_pem(pem)


def public_key(vapid: Vapid02) -> str:
    """The applicationServerKey browsers subscribe with: the raw P-256 point, base64url."""
    raw = vapid.public_key.public_bytes(serialization.Encoding.X962,
                                        serialization.PublicFormat.UncompressedPoint)
    return b64url(raw)


def make_keys(settings: Settings, force: bool = False) -> tuple[str, bool]:
    """Make the VAPID key file (0600) unless it exists; (its public key, whether new)."""
    path = settings.vapid_file
    if path.exists() and not force:
        existing = load_vapid(settings)
        assert existing is not None
        return public_key(existing), False
    vapid = Vapid02()
    vapid.generate_keys()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(vapid.private_pem())
    return public_key(vapid), True


@dataclass(slots=True)
class PushWorker:
    """This node's part in Web Push: everything, while it holds the lease."""

    settings: Settings
    redis: Redis
    keys: Keys
    hub: Hub
    store: PushStore = field(init=False)
    leased: LeasedLoop = field(init=False)
    sender: Sender = field(init=False)
    vapid: Vapid02 | None = field(init=False)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:"
                                                f"{secrets.token_hex(4)}")
    counts: Counter[str] = field(default_factory=Counter)  # sent, failed, expired, ...
    _signatures: dict[str, tuple[float, str]] = field(default_factory=dict)
    # Subscriptions per edition, read every SUBSCRIPTIONS_EVERY seconds (for /metrics).
    subscriptions: dict[str, int] = field(default_factory=dict)
    _counted: float = 0.0

    def __post_init__(self) -> None:
        self.store = PushStore(self.redis, self.keys)
        self.leased = LeasedLoop(Leases(self.redis, self.keys), "push", self.owner, LEASE_MS,
                                 RENEW_EVERY, log, "web push")
        self.sender = Sender(parse_allowed(self.settings.push_allow, "TICKER_PUSH_ALLOW"),
                             TIMEOUT)
        self.vapid = load_vapid(self.settings)

    @property
    def public_key(self) -> str | None:
        return public_key(self.vapid) if self.vapid is not None else None

    @property
    def leader(self) -> bool:
        return self.leased.held

    def touch(self) -> None:
        self.leased.touch()

    async def run(self) -> None:
        if self.vapid is None:
            log.info("web push is off: no VAPID key at %s (ticker push keys makes one)",
                     self.settings.vapid_file)
            await self.sender.close()
            return
        positions = FanOutPositions(self._start_positions, self.fan_out)

        async def step() -> bool:
            moved = await positions.fan_out()
            worked = await self.work_one()
            return bool(moved) or worked

        try:
            await self.leased.run(step, positions.forget, self._count_subscriptions)
        finally:
            await self.sender.close()
            with contextlib.suppress(RedisError, OSError):
                await self.leased.release()

    async def _count_subscriptions(self) -> None:
        if time.monotonic() - self._counted > SUBSCRIPTIONS_EVERY:
            self._counted = time.monotonic()
            self.subscriptions = {name: await self.store.count(name)
                                  for name in self.hub.channels}

    # -- jobs ----------------------------------------------------------------------------

    async def _start_positions(self) -> dict[str, str]:
        positions = await self.store.positions()
        fresh = {name: place_of((*ch.position, 0)) for name, ch in self.hub.channels.items()
                 if name not in positions}
        if fresh and await self.store.enqueue({}, fresh, ()):
            positions.update(fresh)
        return positions

    async def fan_out(self, positions: dict[str, str]) -> bool | None:
        """Jobs for what was folded after `positions`; True if they moved, None if another
        node moved them."""
        before: dict[str, str] = {}
        after: dict[str, str] = {}
        jobs: list[dict[str, str]] = []
        now = now_ms()
        for name, channel in self.hub.channels.items():
            if name not in positions:
                continue
            gap, events = channel.history_after(key_of(positions[name]))
            if gap:
                self.counts["gaps"] += 1
                log.error("web push: events of %s were trimmed before they were looked at",
                          name)
            for key, fragment in events[:FANOUT_BATCH]:
                after[name] = place_of(key)
                job = await self._job_of(channel, json.loads(fragment), now)
                if job is not None:
                    jobs.append(job)
            if name in after:
                before[name] = positions[name]
        if not after:
            return False
        if not await self.store.enqueue(before, after, jobs):
            return None
        positions.update(after)
        return True

    async def _job_of(self, channel: ChannelHub, event: dict[str, Any], now: int
                      ) -> dict[str, str] | None:
        name = channel.info.name
        op = event.get("op")
        if op == "publish":
            item = event["item"]
            if not pushes(item.get("urgency"), name, self.settings.push_urgent_editions):
                return None
            ttl = min(MAX_TTL, max(60, (int(item.get("expires", 0)) - now) // 1000))
            return {"edition": name, "kind": "flash", "id": str(item.get("id")),
                    "item": json.dumps(item),
                    "ttl": str(ttl), "until": str(now + ttl * 1000)}
        if op == "kill":
            item_id = str(event.get("id"))
            until = await self.store.sent_until(name, item_id)
            if until is None or until <= now:
                return None
            state = channel.state.items.get(item_id)
            item = state.public() if state is not None else {"id": item_id, "text": ""}
            return {"edition": name, "kind": "withdrawn", "id": item_id,
                    "item": json.dumps(item),
                    "ttl": str(max(60, (until - now) // 1000)), "until": str(until)}
        return None

    async def work_one(self) -> bool:
        """Do the oldest job, if any; True if there was one."""
        found = await self.store.next_job()
        if found is None:
            return False
        job_id, job = found
        channel = self.hub.channels.get(job.get("edition", ""))
        try:
            item = json.loads(job.get("item", "{}"))
        except ValueError:
            item = None
        if channel is None or not isinstance(item, dict):
            log.error("web push: job %s is not one of ours; skipped", job_id)
            await self.store.finish(job_id)
            return True
        await self._push_all(job_id, channel.info, item, job)
        await self.store.finish(job_id)
        self.counts["jobs"] += 1
        return True

    async def _push_all(self, job_id: str, info: Channel, item: dict[str, Any],
                        job: dict[str, str]) -> None:
        done = await self.store.done(job_id)
        slots = asyncio.Semaphore(CONCURRENCY)
        cursor = 0
        while True:
            if not await self.leased.hold():
                raise RuntimeError("lost the push lease in the middle of a job")
            cursor, subs = await self.store.page(info.name, cursor, PAGE)
            todo = [s for s in subs if s.id not in done]

            async def one(sub: PushSubscription) -> str:
                async with slots:
                    await self._push_one(info, item, job, sub)
                return sub.id

            finished = await asyncio.gather(*(one(s) for s in todo))
            await self.store.mark(job_id, finished)
            if cursor == 0:
                return

    async def _push_one(self, info: Channel, item: dict[str, Any], job: dict[str, str],
                        sub: PushSubscription) -> None:
        payload = notification(info, item, job["kind"], sub.page)
        headers = {
            "Content-Type": "application/octet-stream", "Content-Encoding": "aes128gcm",
            "TTL": job.get("ttl", "3600"), "Urgency": "high",
            "Topic": topic(info.name, str(item.get("id", ""))),
        }
        outcome = Outcome(ok=False)
        for attempt in range(ATTEMPTS):
            try:
                body = WebPusher(sub.info()).encode(payload, "aes128gcm")["body"]
            except Exception as exc:  # a stored subscription whose keys no longer work
                log.warning("web push: cannot encrypt for a subscription (%s); removed", exc)
                await self.store.remove(sub.edition, sub.id)
                self.counts["invalid"] += 1
                return
            headers["Authorization"] = self._authorization(sub.endpoint)
            outcome = await self.sender.post(sub.endpoint, body, headers)
            if outcome.ok:
                self.counts["sent" if job["kind"] == "flash" else "withdrawn"] += 1
                return
            if outcome.status in (404, 410):
                await self.store.remove(sub.edition, sub.id)
                self.counts["expired"] += 1
                return
            if not outcome.retry or attempt == ATTEMPTS - 1:
                break
            await asyncio.sleep(backoff(attempt, RETRY_BASE, outcome.retry_after, RETRY_CAP))
        self.counts["failed"] += 1
        log.info("web push to %s failed: %s", urlsplit(sub.endpoint).hostname, outcome.error)

    def _authorization(self, endpoint: str) -> str:
        """`vapid t=<JWT for the endpoint's origin>,k=<our public key>`, reused for an
        hour per push service."""
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        cached = self._signatures.get(audience)
        if cached is not None and cached[0] > time.time() + 3600:
            return cached[1]
        assert self.vapid is not None
        expires = int(time.time()) + 12 * 3600
        header = self.vapid.sign({"aud": audience, "sub": self.settings.push_contact,
                                  "exp": expires})["Authorization"]
        self._signatures[audience] = (expires, header)
        return str(header)
