"""One node at a time: leases (`{prefix}:lease:{name}`) and fenced position moves.

A lease is taken or renewed for a number of milliseconds by its owner (a string unique to
the process); a node that dies loses it when it runs out, and another takes it. Used by the
webhook and Web Push fan-outs and each webhook subscription's delivery. A lease can outlive
a paused holder for a moment, so a fan-out also moves its positions with `move_positions`:
its writes happen only if the positions are still the ones it started from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from ticker.redis.keys import Keys

# Take or renew: ARGV[1] owner, ARGV[2] milliseconds. 1 if we hold it now.
TAKE: Final = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# Give it up, only if we hold it.
GIVE_UP: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.keys = keys
        self._take = redis.register_script(TAKE)
        self._give_up = redis.register_script(GIVE_UP)

    async def lease(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Take or renew the lease `name` for `ttl_ms`; True while `owner` holds it."""
        return bool(await self._take(keys=[self.keys.lease(name)], args=[owner, ttl_ms]))

    async def release(self, name: str, owner: str) -> None:
        await self._give_up(keys=[self.keys.lease(name)], args=[owner])


async def move_positions(redis: Redis, key: str, before: Mapping[str, str],
                         after: Mapping[str, str], writes: Callable[[Pipeline], None]) -> bool:
    """In one transaction: `writes` (queued on the pipeline) and the hash `key` moved from
    `before` to `after`. False, with nothing written, if `key` no longer holds `before`
    (another node moved it first)."""
    async with redis.pipeline(transaction=True) as pipe:
        try:
            await pipe.watch(key)
            raw: Any = await pipe.hgetall(key)
            current = {k.decode(): v.decode() for k, v in raw.items()}
            if any(current.get(name) != place for name, place in before.items()):
                await pipe.unwatch()  # type: ignore[no-untyped-call]
                return False
            pipe.multi()  # type: ignore[no-untyped-call]
            writes(pipe)
            if after:
                moved: dict[Any, Any] = dict(after)
                pipe.hset(key, mapping=moved)
            await pipe.execute()
        except WatchError:
            return False
    return True
