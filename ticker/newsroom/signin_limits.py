"""Sign-in rate limits in Redis: failed attempts per account name and per client address.

Fixed windows: the first failure starts a window of `window` seconds; once `limit`
failures are counted, every attempt for that account (or from that address) is refused
until the window ends, even with the right password, and the refusal says for how long.
Counters are shared by every node. Account counters are kept for any name typed, known or
not, so a lock-out says nothing about whether an account exists. IPv6 clients are counted
per /64, the block one subscriber usually gets.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from redis.asyncio import Redis

from ticker.redis.keys import Keys


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why a sign-in is refused and for how many more seconds."""

    kind: str  # "account" or "ip"
    retry_after: int

    @property
    def minutes(self) -> int:
        """The wait in whole minutes, rounded up (at least one)."""
        return max(1, -(-self.retry_after // 60))

    @property
    def message(self) -> str:
        minutes = self.minutes
        wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
        if self.kind == "account":
            return f"Too many failed sign-ins for this account. Try again in {wait}."
        return f"Too many failed sign-ins from your network. Try again in {wait}."


def account_key(name: str) -> str:
    # Hashed: any typed name gets a short, safe key, and names never appear in key listings.
    return hashlib.sha256(name.strip().lower().encode("utf-8")).hexdigest()[:32]


def address_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "other:" + hashlib.sha256(address.encode()).hexdigest()[:16]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LoginLimits:
    """Counts failed sign-ins; `blocked` answers before the password is checked."""

    def __init__(self, redis: Redis, keys: Keys, *, per_account: int, per_ip: int,
                 window: int) -> None:
        self.redis = redis
        self.keys = keys
        self.per_account = per_account
        self.per_ip = per_ip
        self.window = window

    def _keys(self, name: str, address: str) -> tuple[str, str]:
        return (self.keys.login_limit("account", account_key(name)),
                self.keys.login_limit("ip", address_key(address)))

    async def blocked(self, name: str, address: str) -> Blocked | None:
        account, ip = self._keys(name, address)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(ip)
        pipe.ttl(ip)
        pipe.get(account)
        pipe.ttl(account)
        ip_n, ip_ttl, acc_n, acc_ttl = await pipe.execute()
        if ip_n is not None and int(ip_n) >= self.per_ip:
            return Blocked("ip", max(1, int(ip_ttl)))
        if acc_n is not None and int(acc_n) >= self.per_account:
            return Blocked("account", max(1, int(acc_ttl)))
        return None

    async def failed(self, name: str, address: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        for key in self._keys(name, address):
            # SET NX EX starts the window; INCR keeps its expiry. One MULTI: never a counter
            # without an expiry (that would lock an account for good).
            pipe.set(key, 0, ex=self.window, nx=True)
            pipe.incr(key)
        await pipe.execute()

    async def succeeded(self, name: str) -> None:
        """A right password clears the account's count (not the address's: one valid
        account must not reset the count of guesses at others from the same place)."""
        account, _ = self._keys(name, "")
        await self.redis.delete(account)
