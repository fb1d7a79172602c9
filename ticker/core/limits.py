"""Caps per client address: open connections, and a request rate. Pure, per process.

The address is the TCP peer, or, when the peer is one of TICKER_TRUSTED_PROXIES, the
nearest address in X-Forwarded-For that is not a trusted proxy (so a client cannot spoof
it by sending the header itself through the proxy).
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Proxies:
    """The trusted proxies; `client(peer, forwarded_for)` is the real client address."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self.any = "*" in trusted
        self.networks: list[Network] = [
            ipaddress.ip_network(t, strict=False) for t in trusted if t != "*"]

    def trusted(self, address: str) -> bool:
        if self.any:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        if not forwarded_for or not self.trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self.trusted(hop):
                return hop
        return hops[0] if hops else peer


class ConnectionCap:
    """At most `limit` open connections per client address (0: no cap)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: Counter[str] = Counter()
        self.refused = 0

    def admit(self, address: str) -> bool:
        if self.limit and self.open[address] >= self.limit:
            self.refused += 1
            return False
        self.open[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


class RateLimit:
    """A token bucket per address: `rate` per second, bursts up to `burst` (0: no limit).

    Remembers at most `max_clients` addresses (least recently seen forgotten first), so a
    flood of distinct addresses costs bounded memory.
    """

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.refused = 0

    def allow(self, address: str, now: float | None = None) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic() if now is None else now
        tokens, last = self.buckets.pop(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        else:
            self.refused += 1
        self.buckets[address] = (tokens, now)
        if len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        return allowed
