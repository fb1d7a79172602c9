"""Aligned ticks: a process's periodic jobs wake it together, not each on its own.

Every once-a-second job of a server process (housekeeping, the reach flush, the metrics
snapshot, uvicorn's main loop, the desk scheduler's check) sleeps until the next whole
multiple of its period on the event loop's clock, so they fall due in the same loop
iteration: an idle process wakes about twice a second (these jobs, and the reader's XREAD
BLOCK) instead of about twenty times. Each wake-up costs a few hundred microseconds of CPU,
which is what a 1,000-reader fan-out spends on a few dozen deliveries (docs/performance.md).

Jobs waiting for the same tick share one timer. A timer each would not do: a job reads the
clock to compute its delay and uvloop reads it again (in milliseconds) when it starts the
timer, so a millisecond boundary or a preemption between the two sets that timer a
millisecond late, and the jobs wake in two iterations (tests/test_ticks.py caught it).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import weakref

# A tick that falls due this soon after waking is taken as the one just served: a timer
# that fired a rounding error early must not run its job twice.
EARLY: float = 0.05

# loop -> {due time in ms: the future its one timer resolves}
_pending: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Future[None]]] \
    = weakref.WeakKeyDictionary()


def until_next(period: float, now: float) -> float:
    """Seconds from `now` to the next multiple of `period` (at least EARLY of a period)."""
    target = (math.floor(now / period) + 1) * period
    if target - now < period * EARLY:
        target += period
    return target - now


def shared_tick(loop: asyncio.AbstractEventLoop, due: float) -> asyncio.Future[None]:
    """A future resolved at `due` (loop time) by the one timer every caller asking for that
    millisecond shares. Await it through `asyncio.shield` or `asyncio.wait`: it is shared."""
    key = round(due * 1000)
    pending = _pending.setdefault(loop, {})
    future = pending.get(key)
    if future is None:
        future = pending[key] = loop.create_future()

        def fire(future: asyncio.Future[None] = future) -> None:
            pending.pop(key, None)
            if not future.done():
                future.set_result(None)

        loop.call_at(due, fire)
    return future


async def tick(period: float = 1.0, wake: asyncio.Event | None = None,
               within: float | None = None) -> None:
    """Sleep until the next aligned multiple of `period`, or sooner: when `wake` is set,
    or after `within` seconds (a deadline of the caller's own, e.g. a scheduled item's)."""
    if wake is not None and wake.is_set():
        return
    loop = asyncio.get_running_loop()
    now = loop.time()
    delay = until_next(period, now)
    if within is not None and within < delay:
        # The caller's own deadline comes first: a timer of its own.
        if wake is None:
            await asyncio.sleep(max(0.0, within))
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, within)):
                await wake.wait()
        return
    due = shared_tick(loop, now + delay)
    if wake is None:
        await asyncio.shield(due)
        return
    woken = loop.create_task(wake.wait())
    try:
        await asyncio.wait((due, woken), return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
