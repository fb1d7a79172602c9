"""Dead letters: stream entries that failed validation, recorded once however many nodes
read them, in `Keys.deadletter` (a capped stream) for `ticker deadletter` and the desk."""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from ticker.core.clock import now_ms
from ticker.core.items import Rejection
from ticker.redis.keys import Keys

DEAD_LETTER_MAXLEN = 100_000
DEAD_LETTER_MARK_TTL = 7 * 24 * 3600


class DeadLetters:
    """Write (once per entry) and list dead letters. The client is passed in."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys


    async def record(self, rejection: Rejection) -> bool:
        """Record a rejected entry once, however many nodes rejected it. True if we wrote it."""
        mark = self.keys.dead_mark(rejection.channel, rejection.entry_id)
        if not await self.redis.set(mark, b"1", nx=True, ex=DEAD_LETTER_MARK_TTL):
            return False
        entry = {
            k.decode("utf-8", "replace")[:64]: v.decode("utf-8", "replace")[:512]
            for k, v in list(rejection.fields.items())[:32]
        }
        await self.redis.xadd(
            self.keys.deadletter,
            {
                "channel": rejection.channel,
                "entry_id": rejection.entry_id,
                "reason": rejection.error.message,
                "field": rejection.error.field or "",
                "entry": json.dumps(entry, ensure_ascii=False)[:4096],
                "at": str(now_ms()),
            },
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )
        return True

    async def latest(self, count: int = 50) -> list[tuple[str, dict[str, str]]]:
        rows: Any = await self.redis.xrevrange(self.keys.deadletter, count=count)
        return [
            (i.decode(), {k.decode(): v.decode("utf-8", "replace") for k, v in f.items()})
            for i, f in rows
        ]
