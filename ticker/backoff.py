"""Jittered exponential backoff, for every retry loop (Redis reconnects, startup)."""

from __future__ import annotations

import random


class Backoff:
    """`next()` gives the delay to wait: base doubling up to cap, with ±50 % jitter."""

    def __init__(self, base: float = 0.1, cap: float = 5.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * float(2 ** self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        jitter: float = random.uniform(0.5, 1.5)
        return delay * jitter

    def reset(self) -> None:
        self.attempt = 0
