"""Web Push in Redis: readers' subscriptions, the push jobs and who did them (docs/push.md).

| key | type | what |
|---|---|---|
| `{prefix}:push:subs:{edition}` | hash | subscription id -> JSON {endpoint, keys, page, created} |
| `{prefix}:push:jobs` | stream | one entry per item to push (or withdraw), in order |
| `{prefix}:push:jobs-done-upto` | string | the last job finished |
| `{prefix}:push:done:{job}` | set | subscriptions the job in progress has finished with |
| `{prefix}:push:sent:{edition}` | zset | item id -> until when its push may be shown (for a kill) |
| `{prefix}:push-fanout` | hash | channel -> the last event looked at for pushes |
| `{prefix}:rl:push:{address}` | string | subscriptions made from an address in the current hour |

With N nodes, one (holding the `push` lease) turns folded events into jobs, moving its
position in the same transaction, and does the jobs in order (a withdrawal never overtakes
the push it withdraws), each one to every subscription of its edition at once. A node that
dies loses the lease; the next one resumes at the job in progress and skips the
subscriptions already done. So each subscription gets each item once; only a push in
flight when a node dies may go twice, and the second carries the same `Topic`, so it
replaces the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from ticker.core.clock import now_ms
from ticker.core.push import MAX_TTL, PushSubscription
from ticker.redis.keys import Keys
from ticker.redis.leases import move_positions

JOBS_MAXLEN: Final = 10_000
DONE_TTL: Final = 24 * 3600
RATE_WINDOW: Final = 3600


class PushStore:
    """The client is passed in; every key is built from the prefix (one cluster slot)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._group_ready = False

    def _k(self, *parts: str) -> str:
        return ":".join((self.keys.prefix, "push", *parts))

    # -- subscriptions -------------------------------------------------------------------

    async def add(self, sub: PushSubscription) -> bool:
        """Store (or refresh) a subscription; True if it is new."""
        return bool(await self.redis.hset(self._k("subs", sub.edition), sub.id, sub.dumps()))

    async def remove(self, edition: str, sub_id: str) -> bool:
        return bool(await self.redis.hdel(self._k("subs", edition), sub_id))

    async def count(self, edition: str) -> int:
        return int(await self.redis.hlen(self._k("subs", edition)))

    async def page(self, edition: str, cursor: int, count: int = 200
                   ) -> tuple[int, list[PushSubscription]]:
        """One HSCAN page of an edition's subscriptions: (next cursor, 0 when done; subs)."""
        reply: Any = await self.redis.hscan(self._k("subs", edition), cursor, count=count)
        nxt, rows = reply
        subs = []
        for raw in rows.values():
            try:
                subs.append(PushSubscription.loads(raw))
            except (ValueError, KeyError, TypeError):
                continue  # not ours to read: skipped, never fatal
        return int(nxt), subs

    async def allow(self, address: str, limit: int) -> bool:
        """Count one subscription from `address`; False beyond `limit` in the hour."""
        key = f"{self.keys.prefix}:rl:push:{address}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, RATE_WINDOW, nx=True)
        made, _ = await pipe.execute()
        return int(made) <= limit

    # -- fan-out -------------------------------------------------------------------------

    async def positions(self) -> dict[str, str]:
        raw: Any = await self.redis.hgetall(f"{self.keys.prefix}:push-fanout")
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def enqueue(self, before: Mapping[str, str], after: Mapping[str, str],
                      jobs: Iterable[Mapping[str, str]]) -> bool:
        """Add `jobs` and move the positions from `before` to `after` in one transaction;
        False (nothing written) if another node moved them meanwhile."""
        def writes(pipe: Pipeline) -> None:
            for job in jobs:
                fields: dict[Any, Any] = dict(job)
                pipe.xadd(self._k("jobs"), fields, maxlen=JOBS_MAXLEN, approximate=True)
                if job.get("kind") == "flash":
                    # Remembered from now on, so that a kill soon after withdraws it.
                    pipe.zadd(self._k("sent", job["edition"]), {job["id"]: int(job["until"])})

        return await move_positions(self.redis, f"{self.keys.prefix}:push-fanout", before,
                                    after, writes)

    # -- jobs ----------------------------------------------------------------------------

    async def next_job(self) -> tuple[str, dict[str, str]] | None:
        """The oldest job not finished yet."""
        after: Any = await self.redis.get(self._k("jobs-done-upto"))
        start = "(" + (after.decode() if after else "0-0")
        rows: Any = await self.redis.xrange(self._k("jobs"), start, "+", count=1)
        if not rows:
            return None
        entry, fields = rows[0]
        return (entry.decode() if isinstance(entry, bytes) else str(entry),
                {k.decode(): v.decode() for k, v in fields.items()})

    async def done(self, job: str) -> set[str]:
        raw: Any = await self.redis.smembers(self._k("done", job))
        return {m.decode() for m in raw}

    async def mark(self, job: str, sub_ids: Iterable[str]) -> None:
        ids = list(sub_ids)
        if ids:
            pipe = self.redis.pipeline(transaction=False)
            pipe.sadd(self._k("done", job), *ids)
            pipe.expire(self._k("done", job), DONE_TTL)
            await pipe.execute()

    async def finish(self, job: str) -> None:
        """The job is over: the next is the oldest now, and its progress is forgotten."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._k("jobs-done-upto"), job)
        pipe.xdel(self._k("jobs"), job)
        pipe.delete(self._k("done", job))
        await pipe.execute()

    async def sent_until(self, edition: str, item_id: str) -> int | None:
        """Until when the item's push may still be shown (epoch ms), if it was pushed;
        pushes long gone are forgotten on the way."""
        key = self._k("sent", edition)
        until = await self.redis.zscore(key, item_id)
        await self.redis.zremrangebyscore(key, "-inf", now_ms() - MAX_TTL * 1000)
        return int(until) if until is not None else None

    async def backlog(self) -> int:
        """Jobs not finished yet."""
        return int(await self.redis.xlen(self._k("jobs")))
