"""Publishing: one validated entry appended to its channel's stream (XADD, capped).

With `wait_replicas` (TICKER_REDIS_WAIT_REPLICAS), each XADD is followed on the same
connection, in the same round trip, by `WAIT replicas timeout`: the answer says how many
replicas had the entry when it returned. Redis replication is asynchronous, so an entry
no replica had can be lost if the primary dies before passing it on; one a replica had
survives a failover to that replica (docs/reliability.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from ticker.redis.keys import Keys

log = logging.getLogger("ticker.redis.store")


class Replication:
    """`TICKER_REDIS_WAIT_REPLICAS` and `TICKER_REDIS_WAIT_TIMEOUT` for every writer of a
    process (the API's `Store`, the desk's `ticker.newsroom.audit.Journal`), and how many
    of their writes were answered before enough replicas had them (`unreplicated`:
    `ticker_unreplicated_writes_total`)."""

    def __init__(self, replicas: int = 0, timeout_ms: int = 500) -> None:
        self.replicas = replicas  # 0: writes do not wait
        self.timeout_ms = timeout_ms
        self.unreplicated = 0

    def wait(self, pipe: Pipeline) -> None:
        """WAIT behind the writes queued on `pipe`: it counts its own connection's writes, so
        the write and it go in one pipeline (one round trip)."""
        pipe.wait(self.replicas, self.timeout_ms)

    def counted(self, answer: Any, what: str) -> int:
        """How many replicas had the write (WAIT's answer). Too few is counted and logged:
        the write stands (readers have it), but it may be lost if the primary dies first."""
        replicas = int(answer)
        if replicas < self.replicas:
            self.unreplicated += 1
            log.warning("%s answered with %d of %d replicas after %d ms: it is on the primary "
                        "only for now", what, replicas, self.replicas, self.timeout_ms)
        return replicas


class Store:
    """Redis operations of the HTTP API and the CLI. The client is passed in."""

    def __init__(self, redis: Redis, keys: Keys, stream_maxlen: int = 10000, *,
                 replication: Replication) -> None:
        self.redis = redis
        self.keys = keys
        self.stream_maxlen = stream_maxlen
        self.replication = replication

    async def append(self, channel: str, fields: Mapping[str, str]) -> tuple[str, int | None]:
        """XADD one validated entry, then (when configured) WAIT for replicas: (its stream ID,
        the item id for a publish; how many replicas had it, None when not waiting)."""
        stream, values = self.keys.stream(channel), dict(fields)
        replicas: int | None = None
        if not self.replication.replicas:
            entry_id = await self.redis.xadd(stream, values,  # type: ignore[arg-type]
                                             maxlen=self.stream_maxlen, approximate=True)
        else:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xadd(stream, values, maxlen=self.stream_maxlen,  # type: ignore[arg-type]
                      approximate=True)
            self.replication.wait(pipe)
            entry_id, answer = await pipe.execute()
            replicas = self.replication.counted(answer, f"a write to {channel}")
        return (entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)), replicas
