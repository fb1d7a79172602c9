"""Aligned ticks: a process's periodic jobs wake it together, not each on its own.

Every once-a-second job of a server process (housekeeping, the reach flush, the metrics
snapshot, uvicorn's main loop, the desk scheduler's check) sleeps until the next whole
multiple of its period on the event loop's clock, so they fall due in the same loop
iteration: an idle process wakes about twice a second (these jobs, and the reader's XREAD
BLOCK) instead of about twenty times. Each wake-up costs a few hundred microseconds of CPU,
which is what a 1,000-reader fan-out spends on a few dozen deliveries (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import math

# A tick that falls due this soon after waking is taken as the one just served: a timer
# that fired a rounding error early must not run its job twice.
EARLY: float = 0.05


def until_next(period: float, now: float) -> float:
    """Seconds from `now` to the next multiple of `period` (at least EARLY of a period)."""
    target = (math.floor(now / period) + 1) * period
    if target - now < period * EARLY:
        target += period
    return target - now


async def tick(period: float = 1.0, wake: asyncio.Event | None = None,
               within: float | None = None) -> None:
    """Sleep until the next aligned multiple of `period`, or sooner: when `wake` is set,
    or after `within` seconds (a deadline of the caller's own, e.g. a scheduled item's)."""
    loop = asyncio.get_running_loop()
    delay = until_next(period, loop.time())
    if within is not None:
        delay = max(0.0, min(delay, within))
    if wake is None:
        await asyncio.sleep(delay)
        return
    if wake.is_set():
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await wake.wait()
