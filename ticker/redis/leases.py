"""Leases: which node does a job only one node may do at a time (`{prefix}:lease:{name}`).

A lease is taken or renewed for a number of milliseconds by its owner (a string unique to
the process); a node that dies loses it when it runs out, and another takes it. Used by the
webhook and Web Push fan-outs and each webhook subscription's delivery.
"""

from __future__ import annotations

from typing import Final

from redis.asyncio import Redis

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
