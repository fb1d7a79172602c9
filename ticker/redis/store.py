"""Publishing: one validated entry appended to its channel's stream (XADD, capped)."""

from __future__ import annotations

from collections.abc import Mapping

from redis.asyncio import Redis

from ticker.redis.keys import Keys


class Store:
    """Redis operations of the HTTP API and the CLI. The client is passed in."""

    def __init__(self, redis: Redis, keys: Keys, stream_maxlen: int = 10000) -> None:
        self.redis = redis
        self.keys = keys
        self.stream_maxlen = stream_maxlen

    async def append(self, channel: str, fields: Mapping[str, str]) -> str:
        """XADD one validated entry; returns its stream ID (the item id for a publish)."""
        entry_id = await self.redis.xadd(
            self.keys.stream(channel),
            dict(fields),  # type: ignore[arg-type]
            maxlen=self.stream_maxlen,
            approximate=True,
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
