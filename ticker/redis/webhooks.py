"""Webhook subscriptions and their delivery state, in Redis (docs/webhooks.md).

Everything here is shared by every node and survives restarts:

- the subscriptions (`{prefix}:webhooks`) and their secrets (`{prefix}:webhook-secrets`),
  each secret encrypted with Fernet under TICKER_WEBHOOK_KEY (or, when that is empty, a key
  kept in Redis: then a dump of Redis alone is enough to read them, and the docs say so);
- each subscription's **outbox**, a stream of the events it is to be sent, in order
  (`webhook:{id}:out`), filled by the one node that fans events out, and how far it was
  delivered (`webhook:{id}:state`, `acked`): an event is removed only once it was
  delivered or given up, so a crash anywhere loses nothing;
- what was given up (`webhook:{id}:dead`), until an admin retries it;
- leases (`ticker.redis.leases`): which node does a job only one node may do at a time.

Every key is built from the prefix, so in a Redis Cluster they share one slot and the
multi-key transactions below keep working.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.fernet import Fernet, InvalidToken
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from ticker.core.errors import ValidationError
from ticker.core.webhooks import MAX_SUBSCRIPTIONS, SUBSCRIPTION_ID, Subscription, new_secret
from ticker.redis.keys import Keys
from ticker.redis.leases import Leases, move_positions

OUTBOX_MAXLEN: Final = 100_000  # events per subscription waiting; beyond, the oldest go
DEAD_MAXLEN: Final = 10_000

@dataclass(frozen=True, slots=True)
class Pending:
    """One event in a subscription's outbox."""

    entry: str  # its outbox stream ID
    message_id: str
    channel: str
    body: bytes
    queued: int  # epoch ms


@dataclass(slots=True)
class DeliveryState:
    """How far a subscription's delivery is (`webhook:{id}:state`)."""

    acked: str = "0-0"
    attempts: int = 0
    first_try: int = 0
    next_try: int = 0
    last_error: str = ""
    last_status: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0

    @classmethod
    def of(cls, raw: Mapping[bytes, bytes]) -> DeliveryState:
        def num(name: str) -> int:
            value = raw.get(name.encode(), b"0")
            return int(value) if value.isdigit() else 0
        return cls(acked=raw.get(b"acked", b"0-0").decode(), attempts=num("attempts"),
                   first_try=num("first_try"), next_try=num("next_try"),
                   last_error=raw.get(b"last_error", b"").decode("utf-8", "replace"),
                   last_status=num("last_status"), sent=num("sent"), failed=num("failed"),
                   dead=num("dead"))


def _pending(entry: Any, fields: Mapping[bytes, bytes]) -> Pending:
    return Pending(entry=entry.decode() if isinstance(entry, bytes) else str(entry),
                   message_id=fields[b"mid"].decode(), channel=fields[b"ch"].decode(),
                   body=fields[b"body"], queued=int(fields.get(b"at", b"0")))


class Webhooks:
    """Subscriptions, secrets, outboxes and leases. The client is passed in."""

    def __init__(self, redis: Redis, keys: Keys, key_material: str = "") -> None:
        self.redis = redis
        self.keys = keys
        self._configured = key_material
        self._fernet: Fernet | None = None
        self.leases = Leases(redis, keys)

    # -- secrets -------------------------------------------------------------------------

    @property
    def key_in_redis(self) -> bool:
        """True when the secrets' key is kept in Redis (TICKER_WEBHOOK_KEY is empty)."""
        return not self._configured

    async def _cipher(self) -> Fernet:
        if self._fernet is None:
            material = self._configured
            if not material:
                await self.redis.set(self.keys.webhook_key, secrets.token_urlsafe(48), nx=True)
                raw: Any = await self.redis.get(self.keys.webhook_key)
                material = raw.decode() if isinstance(raw, bytes) else str(raw)
            digest = hashlib.sha256(b"ticker webhook secrets\0" + material.encode()).digest()
            self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        return self._fernet

    async def secret(self, sub_id: str) -> str | None:
        """The subscription's signing secret, or None (unknown, or the key changed)."""
        raw: Any = await self.redis.hget(self.keys.webhook_secrets, sub_id)
        if raw is None:
            return None
        try:
            return (await self._cipher()).decrypt(raw).decode()
        except InvalidToken:
            return None

    # -- subscriptions -------------------------------------------------------------------

    async def add(self, sub: Subscription) -> str:
        """Store a new subscription; returns its secret (shown once, never stored plain)."""
        if await self.redis.hlen(self.keys.webhooks) >= MAX_SUBSCRIPTIONS:
            raise ValidationError(f"at most {MAX_SUBSCRIPTIONS} subscriptions",
                                  field="url")
        secret = new_secret()
        token = (await self._cipher()).encrypt(secret.encode())
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.webhooks, sub.id, sub.dumps())
        pipe.hset(self.keys.webhook_secrets, sub.id, token)
        await pipe.execute()
        return secret

    async def get(self, sub_id: str) -> Subscription | None:
        if not SUBSCRIPTION_ID.match(sub_id):
            return None
        raw: Any = await self.redis.hget(self.keys.webhooks, sub_id)
        return Subscription.loads(raw) if raw is not None else None

    async def all(self) -> list[Subscription]:
        rows: Any = await self.redis.hgetall(self.keys.webhooks)
        subs = [Subscription.loads(v) for v in rows.values()]
        return sorted(subs, key=lambda s: (s.created, s.id))

    async def remove(self, sub_id: str) -> bool:
        """Forget the subscription, its secret and everything it had waiting."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(self.keys.webhooks, sub_id)
        pipe.hdel(self.keys.webhook_secrets, sub_id)
        pipe.delete(*(self.keys.webhook(sub_id, kind) for kind in ("out", "state", "dead")))
        removed, *_ = await pipe.execute()
        return bool(removed)

    # -- fan-out -------------------------------------------------------------------------

    async def fanout_positions(self) -> dict[str, str]:
        raw: Any = await self.redis.hgetall(self.keys.webhook_fanout)
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def enqueue(self, before: Mapping[str, str], after: Mapping[str, str],
                      events: Iterable[tuple[str, str, str, bytes]], now: int) -> bool:
        """Queue `events` (subscription id, message id, channel, body) and move the fan-out
        positions from `before` to `after`, in one transaction; False (nothing written) if
        the positions moved meanwhile (another node fanned out: never queue twice)."""
        def writes(pipe: Pipeline) -> None:
            for sub_id, mid, channel, body in events:
                fields: dict[Any, Any] = {"mid": mid, "ch": channel, "body": body,
                                          "at": str(now)}
                pipe.xadd(self.keys.webhook(sub_id, "out"), fields, maxlen=OUTBOX_MAXLEN,
                          approximate=True)

        return await move_positions(self.redis, self.keys.webhook_fanout, before, after,
                                    writes)

    async def enqueue_one(self, sub_id: str, mid: str, channel: str, body: bytes,
                          now: int) -> str:
        """Queue one event for one subscription (a test event, a retried dead letter)."""
        fields: dict[Any, Any] = {"mid": mid, "ch": channel, "body": body, "at": str(now)}
        entry: Any = await self.redis.xadd(self.keys.webhook(sub_id, "out"), fields,
                                           maxlen=OUTBOX_MAXLEN, approximate=True)
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    # -- delivery ------------------------------------------------------------------------

    async def state(self, sub_id: str) -> DeliveryState:
        raw: Any = await self.redis.hgetall(self.keys.webhook(sub_id, "state"))
        return DeliveryState.of(raw)

    async def head(self, sub_id: str, acked: str) -> Pending | None:
        """The oldest event not delivered yet."""
        rows: Any = await self.redis.xrange(self.keys.webhook(sub_id, "out"), f"({acked}",
                                            "+", count=1)
        return _pending(*rows[0]) if rows else None

    async def waiting(self, sub_id: str, acked: str) -> tuple[int, int | None]:
        """(events waiting, when the oldest was queued)."""
        key = self.keys.webhook(sub_id, "out")
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(key)
        pipe.xrange(key, f"({acked}", "+", count=1)
        length, rows = await pipe.execute()
        return int(length), (_pending(*rows[0]).queued if rows else None)

    async def delivered(self, sub_id: str, event: Pending) -> None:
        """`event` was accepted: the next one is the head now."""
        key = self.keys.webhook(sub_id, "state")
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"acked": event.entry, "attempts": 0, "first_try": 0,
                                "next_try": 0, "last_error": ""})
        pipe.hincrby(key, "sent", 1)
        pipe.xdel(self.keys.webhook(sub_id, "out"), event.entry)
        await pipe.execute()

    async def failed(self, sub_id: str, state: DeliveryState, error: str, status: int,
                     next_try: int, now: int) -> None:
        """An attempt at the head failed; the next is at `next_try` (epoch ms)."""
        key = self.keys.webhook(sub_id, "state")
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"attempts": state.attempts + 1,
                                "first_try": state.first_try or now, "next_try": next_try,
                                "last_error": error[:500], "last_status": status})
        pipe.hincrby(key, "failed", 1)
        await pipe.execute()

    async def give_up(self, sub_id: str, event: Pending, state: DeliveryState, error: str,
                      status: int, now: int) -> None:
        """Move the head to the dead letters; the next event is the head now."""
        key = self.keys.webhook(sub_id, "state")
        pipe = self.redis.pipeline(transaction=True)
        fields: dict[Any, Any] = {
            "mid": event.message_id, "ch": event.channel, "body": event.body,
            "at": str(event.queued), "error": error[:500], "status": str(status),
            "attempts": str(state.attempts + 1), "gave_up": str(now)}
        pipe.xadd(self.keys.webhook(sub_id, "dead"), fields, maxlen=DEAD_MAXLEN,
                  approximate=True)
        pipe.hset(key, mapping={"acked": event.entry, "attempts": 0, "first_try": 0,
                                "next_try": 0, "last_error": error[:500],
                                "last_status": status})
        pipe.hincrby(key, "dead", 1)
        pipe.hincrby(key, "failed", 1)
        pipe.xdel(self.keys.webhook(sub_id, "out"), event.entry)
        await pipe.execute()

    async def dead_letters(self, sub_id: str, count: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters first."""
        rows: Any = await self.redis.xrevrange(self.keys.webhook(sub_id, "dead"), "+", "-",
                                               count=count)
        out = []
        for entry, fields in rows:
            out.append({
                "id": entry.decode(),
                **{k.decode(): (v.decode("utf-8", "replace")) for k, v in fields.items()}})
        return out

    async def retry_dead(self, sub_id: str, dead_id: str, now: int) -> str | None:
        """Put a dead letter back at the end of the outbox (same `webhook-id`); None if
        there is no such dead letter."""
        key = self.keys.webhook(sub_id, "dead")
        rows: Any = await self.redis.xrange(key, dead_id, dead_id)
        if not rows:
            return None
        _, fields = rows[0]
        pipe = self.redis.pipeline(transaction=True)
        added: dict[Any, Any] = {"mid": fields[b"mid"], "ch": fields[b"ch"],
                                 "body": fields[b"body"], "at": str(now)}
        pipe.xadd(self.keys.webhook(sub_id, "out"), added, maxlen=OUTBOX_MAXLEN,
                  approximate=True)
        pipe.xdel(key, dead_id)
        entry, _ = await pipe.execute()
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    # -- leases ---------------------------------------------------------------------------

    async def lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        return await self.leases.lease(name, owner, ttl_ms)

    async def release(self, name: str, owner: str) -> None:
        await self.leases.release(name, owner)
