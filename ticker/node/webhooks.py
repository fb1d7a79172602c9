"""Webhooks, sent: the fan-out into each subscription's outbox, and delivery (docs/webhooks.md).

Two jobs, each done by one node at a time under a lease in Redis (`ticker.redis.webhooks`),
so with N nodes every event is queued once and sent once:

- **Fan-out** (lease `webhook-fanout`): the holder reads the events its hub folded after the
  stored fan-out position of each channel (the same events, in the same order, that a
  websocket reader gets), and queues each one into the outbox of every subscription that
  wants it, moving the position in the same transaction (which fails if another node moved
  it: nothing is queued twice).
- **Delivery** (one lease per subscription): the holder sends the outbox's oldest event, and
  only when it was accepted (2xx) or given up does the next become the oldest: events arrive
  in order, and the `webhook-id` of an event is the same on every attempt and every node, so
  a receiver drops what it already had. Timeouts, connection errors, 408, 429 and 5xx are
  retried with exponential backoff and jitter (honouring `Retry-After`) for
  TICKER_WEBHOOK_RETRY_FOR seconds; other answers, and a destination that may not be
  called, make the event a dead letter at once.

A node that dies holding a lease loses it after LEASE_MS; another node takes over from what
Redis says. At worst the event in flight is sent again, with the same id.

Every request goes to an address checked by `ticker.core.addresses` after resolving the
URL's host (never resolved again by the HTTP client: the connection is made to the checked
address, with the name kept for `Host` and TLS), without redirects, within the timeout, and
reads at most MAX_RESPONSE bytes of the answer.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError
from standardwebhooks.webhooks import Webhook

from ticker.core.addresses import parse_allowed
from ticker.core.clock import now_ms
from ticker.core.hub import ChannelHub, HistoryKey, Hub
from ticker.core.webhooks import EVENT_TYPES, Subscription, event_body, message_id
from ticker.node.leased import FanOutPositions, LeasedLoop
from ticker.node.outbound import Sender, backoff
from ticker.process import ticks
from ticker.process.settings import Settings
from ticker.redis.keys import Keys
from ticker.redis.webhooks import DeliveryState, Pending, Webhooks

log = logging.getLogger("ticker.node.webhooks")

LEASE_MS: Final = 10_000
RENEW_EVERY: Final = 3.0  # seconds: three renewals fit in one lease
FANOUT_BATCH: Final = 1000  # events queued per transaction
IDLE_POLL: Final = 0.25  # seconds between looks at an empty outbox
MAX_BACKOFF: Final = 30 * 60.0


def place_of(key: HistoryKey) -> str:
    """A history key as a fan-out position: `ms-seq`, or `ms-seq.n` for a versions event."""
    ms, seq, sub = key
    return f"{ms}-{seq}" + (f".{sub}" if sub else "")


def key_of(place: str) -> HistoryKey:
    head, _, sub = place.partition(".")
    ms, _, seq = head.partition("-")
    return int(ms), int(seq), int(sub or 0)


def signed_headers(event: Pending, secret: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt at `event` (signed now)."""
    stamp = datetime.now(UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": event.message_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(event.message_id, stamp, event.body),
    }


@dataclass(slots=True)
class SubscriptionStats:
    """What /metrics shows of a subscription this node delivers (totals from Redis)."""

    sent: int = 0
    failed: int = 0
    dead: int = 0
    retrying: bool = False
    oldest_ms: int | None = None


@dataclass(slots=True)
class WebhookWorker:
    """This node's share of the webhooks: fan-out and deliveries, each under its lease."""

    settings: Settings
    redis: Redis
    keys: Keys
    hub: Hub
    store: Webhooks = field(init=False)
    fanout_lease: LeasedLoop = field(init=False)
    sender: Sender = field(init=False)
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:"
                                                f"{secrets.token_hex(4)}")
    stats: dict[str, SubscriptionStats] = field(default_factory=dict)
    fanout_gaps: int = 0
    _subs: list[Subscription] = field(default_factory=list)
    _subs_at: float = 0.0
    _deliveries: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = Webhooks(self.redis, self.keys, self.settings.webhook_key)
        self.fanout_lease = LeasedLoop(self.store.leases, "webhook-fanout", self.owner,
                                       LEASE_MS, RENEW_EVERY, log, "webhook fan-out")
        self.sender = Sender(parse_allowed(self.settings.webhook_allow),
                             self.settings.webhook_timeout)

    @property
    def fanout_leader(self) -> bool:
        return self.fanout_lease.held

    def touch(self) -> None:
        """New events were folded (the reader calls this after each batch)."""
        self.fanout_lease.touch()

    async def subscriptions(self, max_age: float = 1.0) -> list[Subscription]:
        if time.monotonic() - self._subs_at > max_age:
            self._subs = await self.store.all()
            self._subs_at = time.monotonic()
        return self._subs

    async def run(self) -> None:
        """Fan-out and the delivery supervisor, until cancelled."""
        try:
            await asyncio.gather(self._fanout_loop(), self._supervise())
        finally:
            for task in self._deliveries.values():
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._deliveries.values(), return_exceptions=True)
            await self.sender.close()
            with contextlib.suppress(RedisError, OSError):
                await self.fanout_lease.release()

    # -- fan-out -------------------------------------------------------------------------

    async def _fanout_loop(self) -> None:
        positions = FanOutPositions(self._start_positions, self.fan_out)

        async def step() -> bool:
            # None: another node moved them; they are read again, at once.
            return await positions.fan_out() is not False

        await self.fanout_lease.run(step, positions.forget)

    async def _start_positions(self) -> dict[str, str]:
        """The stored positions; a channel never fanned out starts at what is folded now
        (a new subscription follows from now on, it is not sent the past)."""
        positions = await self.store.fanout_positions()
        fresh = {name: place_of((*ch.position, 0)) for name, ch in self.hub.channels.items()
                 if name not in positions}
        if fresh and await self.store.enqueue({}, fresh, (), now_ms()):
            positions.update(fresh)
        return positions

    async def fan_out(self, positions: dict[str, str]) -> bool | None:
        """Queue what was folded after `positions`; True if anything moved, None if the
        positions had moved in Redis (another node)."""
        subs: list[Subscription] | None = None
        before: dict[str, str] = {}
        after: dict[str, str] = {}
        queued: list[tuple[str, str, str, bytes]] = []
        room = FANOUT_BATCH
        for name, channel in self.hub.channels.items():
            if name not in positions or room <= 0:
                continue
            events = self._events_after(channel, key_of(positions[name]))[:room]
            room -= len(events)
            if events and subs is None:
                # Read afresh for every batch: a subscription made a moment ago gets the
                # events folded after it was made.
                subs = await self.subscriptions(max_age=0)
            for key, event in events:
                place = place_of(key)
                after[name] = place
                op = event.get("op")
                if op not in EVENT_TYPES:
                    continue
                urgency = self._urgency(channel, event)
                for sub in subs or ():
                    if sub.wants(name, op, urgency):
                        queued.append((sub.id, message_id(sub.id, name, place), name,
                                       event_body(name, event)))
            if name in after:
                before[name] = positions[name]
        if not after:
            return False
        if not await self.store.enqueue(before, after, queued, now_ms()):
            return None
        positions.update(after)
        return True

    def _events_after(self, channel: ChannelHub, key: HistoryKey
                      ) -> list[tuple[HistoryKey, dict[str, Any]]]:
        gap, events = channel.history_after(key)
        if gap:
            # What came between was trimmed from this node's history: it cannot be sent.
            self.fanout_gaps += 1
            log.error("webhooks: events of %s after %s were trimmed before they were "
                      "queued; they are not sent", channel.info.name, place_of(key))
        return [(k, json.loads(fragment)) for k, fragment in events]

    @staticmethod
    def _urgency(channel: ChannelHub, event: dict[str, Any]) -> str | None:
        item = event.get("item")
        if isinstance(item, dict):
            return str(item.get("urgency"))
        found = channel.state.items.get(str(event.get("id")))
        return found.urgency if found is not None else None

    # -- delivery ------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Once a second: take the lease of every subscription nobody delivers."""
        while True:
            try:
                subs = await self.subscriptions()
                known = {s.id for s in subs}
                for sub_id in [i for i in self._deliveries if i not in known]:
                    self._deliveries.pop(sub_id).cancel()
                    self.stats.pop(sub_id, None)
                for sub_id, task in list(self._deliveries.items()):
                    if task.done():
                        del self._deliveries[sub_id]
                        self.stats.pop(sub_id, None)
                for sub in subs:
                    if sub.id not in self._deliveries and await self.store.lease(
                            f"webhook:{sub.id}", self.owner, LEASE_MS):
                        self._deliveries[sub.id] = asyncio.create_task(
                            self._deliver(sub.id), name=f"ticker-webhook-{sub.id}")
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("webhooks: Redis unreachable (%s); retrying", exc)
            except Exception:
                log.exception("webhook supervisor error (continuing)")
            await ticks.tick(1.0)  # with the process's other once-a-second jobs

    async def _deliver(self, sub_id: str) -> None:
        """Send this subscription's events in order while we hold its lease."""
        lease = f"webhook:{sub_id}"
        renewed = time.monotonic()
        stats = self.stats.setdefault(sub_id, SubscriptionStats())
        try:
            while True:
                if time.monotonic() - renewed > RENEW_EVERY:
                    if not await self.store.lease(lease, self.owner, LEASE_MS):
                        return  # another node delivers it now
                    renewed = time.monotonic()
                sub = next((s for s in await self.subscriptions() if s.id == sub_id), None)
                if sub is None:
                    return
                state = await self.store.state(sub_id)
                event = await self.store.head(sub_id, state.acked)
                self._update(stats, state, event)
                if event is None:
                    await asyncio.sleep(IDLE_POLL)
                    continue
                wait = (state.next_try - now_ms()) / 1000
                if wait > 0:
                    await asyncio.sleep(min(wait, RENEW_EVERY / 2))
                    continue
                await self._attempt(sub, state, event)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            log.warning("webhook %s: Redis unreachable (%s); another try soon", sub_id, exc)
        except Exception:
            log.exception("webhook %s: delivery error", sub_id)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await asyncio.shield(self.store.release(lease, self.owner))

    async def _attempt(self, sub: Subscription, state: DeliveryState, event: Pending) -> None:
        secret = await self.store.secret(sub.id)
        if secret is None:
            # The key changed (TICKER_WEBHOOK_KEY): nothing can be signed. Wait; an operator
            # must put the key back or make the subscription again.
            log.error("webhook %s: its secret cannot be decrypted with the current key",
                      sub.id)
            await asyncio.sleep(5.0)
            return
        outcome = await self.sender.post(sub.url, event.body, signed_headers(event, secret))
        now = now_ms()
        if outcome.ok:
            await self.store.delivered(sub.id, event)
            return
        first = state.first_try or now
        if outcome.retry and now - first < self.settings.webhook_retry_for * 1000:
            delay = backoff(state.attempts, self.settings.webhook_retry_base,
                            outcome.retry_after, MAX_BACKOFF)
            next_try = now + int(delay * 1000)
            log.info("webhook %s: %s; retry %d in %.1f s", sub.id, outcome.error,
                     state.attempts + 1, delay)
            await self.store.failed(sub.id, state, outcome.error, outcome.status, next_try,
                                    now)
            return
        log.warning("webhook %s: gave up on %s (%s)", sub.id, event.message_id, outcome.error)
        await self.store.give_up(sub.id, event, state, outcome.error, outcome.status, now)

    @staticmethod
    def _update(stats: SubscriptionStats, state: DeliveryState, head: Pending | None) -> None:
        stats.sent, stats.failed, stats.dead = state.sent, state.failed, state.dead
        stats.retrying = state.attempts > 0
        stats.oldest_ms = head.queued if head is not None else None
