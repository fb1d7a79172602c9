"""The translation queue's dismissals, kept in Redis and shared by every node.

A flash or urgent original is "to translate" on every other edition's desk until that
edition has a version of the story or an editor of it dismisses it there
(docs/editions.md). What is translated is known from the fold; what was dismissed is the
hash `{prefix}:dismissed`, field `"<edition> <story>"`, value `"<epoch ms> <user>"`. A new
dismissal, its audit entry and the bump of `desk-version` (which wakes every node's open
desks) are written in one MULTI: never one without the others. Dismissals older than
`KEEP_MS` are pruned when read: by then the item has long left the air.
"""

from __future__ import annotations

from typing import Any, Final

from redis.asyncio import Redis

from ticker.core.clock import now_ms
from ticker.newsroom.audit import AUDIT_MAXLEN, clip
from ticker.redis.keys import Keys

KEEP_MS: Final = 48 * 3600 * 1000
URGENT_ENOUGH: Final = frozenset({"flash", "urgent"})


class Dismissals:
    """`(edition, story)` pairs an editor took off that edition's translation queue."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def dismiss(self, edition: str, story: str, user: str, text: str) -> bool:
        """Dismiss `story` for `edition`, audited; False if it already was."""
        field = f"{edition} {story}"
        if await self.redis.hexists(self.keys.dismissed, field):
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.dismissed, field, f"{now_ms()} {user}")
        pipe.incr(self.keys.desk_version)
        values: dict[Any, Any] = {
            "user": user, "action": "dismiss", "channel": edition, "item": story,
            "before": clip(text), "detail": f"{story} will not be translated into {edition}"}
        pipe.xadd(self.keys.audit, values, maxlen=AUDIT_MAXLEN, approximate=True)
        await pipe.execute()
        return True

    async def load(self) -> set[tuple[str, str]]:
        """Every standing dismissal; the old ones are deleted on the way."""
        raw: Any = await self.redis.hgetall(self.keys.dismissed)
        now = now_ms()
        out: set[tuple[str, str]] = set()
        old: list[bytes] = []
        for key, value in raw.items():
            at = value.split(b" ", 1)[0]
            if not at.isdigit() or now - int(at) > KEEP_MS:
                old.append(key)
                continue
            edition, _, story = key.decode("utf-8", "replace").partition(" ")
            out.add((edition, story))
        if old:
            await self.redis.hdel(self.keys.dismissed, *old)
        return out
