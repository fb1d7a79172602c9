"""A fixed-bucket histogram (Prometheus style), pure and cheap to observe."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

# Seconds: publish-to-write latency lives between a millisecond and a few seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class Histogram:
    """Counts per upper bound (`le`), plus sum and count; `+Inf` is implied by `count`."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, times: int = 1) -> None:
        i = bisect.bisect_left(self.bounds, value)
        if i < len(self.counts):
            self.counts[i] += times
        self.sum += value * times
        self.count += times

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= it), as Prometheus exposes them."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out
