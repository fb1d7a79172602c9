"""Publishing: one validated entry appended to its channel's stream (XADD, capped).

With `wait_replicas` (TICKER_REDIS_WAIT_REPLICAS), each XADD is followed on the same
connection, in the same round trip, by `WAIT replicas timeout`: the answer says how many
replicas had the entry when it returned. Redis replication is asynchronous, so an entry
no replica had can be lost if the primary dies before passing it on; one a replica had
survives a failover to that replica (docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.asyncio import Redis

from ticker.redis.keys import Keys


class Store:
    """Redis operations of the HTTP API and the CLI. The client is passed in."""

    def __init__(self, redis: Redis, keys: Keys, stream_maxlen: int = 10000,
                 wait_replicas: int = 0, wait_timeout: int = 500) -> None:
        self.redis = redis
        self.keys = keys
        self.stream_maxlen = stream_maxlen
        self.wait_replicas = wait_replicas
        self.wait_timeout = wait_timeout
        self.unreplicated = 0  # writes answered before enough replicas had them

    async def append(self, channel: str, fields: Mapping[str, str]) -> tuple[str, int | None]:
        """XADD one validated entry, then (when configured) WAIT for replicas: (its stream ID,
        the item id for a publish; how many replicas had it, None when not waiting)."""
        stream, values = self.keys.stream(channel), dict(fields)
        replicas: int | None = None
        if not self.wait_replicas:
            entry_id = await self.redis.xadd(stream, values,  # type: ignore[arg-type]
                                             maxlen=self.stream_maxlen, approximate=True)
        else:
            # One pipeline: WAIT counts the writes of its own connection.
            pipe = self.redis.pipeline(transaction=False)
            pipe.xadd(stream, values, maxlen=self.stream_maxlen,  # type: ignore[arg-type]
                      approximate=True)
            pipe.wait(self.wait_replicas, self.wait_timeout)
            entry_id, counted = await pipe.execute()
            replicas = int(counted)
            if replicas < self.wait_replicas:
                self.unreplicated += 1
        return (entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)), replicas
