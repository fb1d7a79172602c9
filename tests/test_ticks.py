"""ticker.process.ticks: periodic jobs of one process fall due together."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from ticker.process.ticks import EARLY, tick, until_next


def test_until_next_is_the_next_multiple_and_never_a_tick_just_served() -> None:
    assert until_next(1.0, 10.25) == pytest.approx(0.75)
    assert until_next(1.0, 10.0) == pytest.approx(1.0)
    assert until_next(5.0, 12.0) == pytest.approx(3.0)
    # Woken a rounding error before the tick: that tick is the one just served.
    assert until_next(1.0, 10.999) == pytest.approx(1.001)
    assert until_next(1.0, 11.0 - EARLY * 1.01) < 0.1  # but not a real early wake


class Iterations:
    """Which loop iteration a job woke in. `loop.time()` cannot tell (uvloop reads the clock
    afresh at each call, so jobs of one iteration can read two milliseconds): the first job
    to wake in an iteration schedules a callback, which runs only once every job woken in
    that iteration has run, and which ends the iteration's count."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.count = 0
        self.armed = False

    def _end(self) -> None:
        self.count += 1
        self.armed = False

    def now(self) -> int:
        if not self.armed:
            self.armed = True
            self.loop.call_soon(self._end)
        return self.count


def test_jobs_started_at_different_times_wake_in_the_same_loop_iteration() -> None:
    """What keeps an idle process to one wake-up a second: on uvloop (what `ticker serve`
    runs), the ticks of tasks started apart fall due together, on a multiple of the period."""
    async def main() -> tuple[list[int], list[float]]:
        loop = asyncio.get_running_loop()
        iterations = Iterations(loop)
        woke: list[int] = []
        at: list[float] = []

        async def job(offset: float) -> None:
            await asyncio.sleep(offset)
            for _ in range(2):
                await tick(0.2)
                woke.append(iterations.now())
                at.append(loop.time())

        await tick(0.2)  # just after a tick: the starts below fall in one period
        await asyncio.gather(*(job(i * 0.007) for i in range(10)))
        return woke, at

    woke, at = uvloop.run(main())
    assert len(woke) == 20
    assert len(set(woke)) == 2, woke  # two ticks, each shared by all ten
    for t in at:
        # On a multiple of the period (a timer fires a millisecond or so late, more on a busy
        # machine; jobs started up to 63 ms apart without alignment would not be).
        assert abs(t - round(t / 0.2) * 0.2) < 0.02, at


async def test_a_wake_event_or_a_deadline_cuts_the_wait_short() -> None:
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    loop.call_later(0.05, wake.set)
    started = loop.time()
    await tick(10.0, wake)
    assert loop.time() - started < 1.0
    wake.set()
    started = loop.time()
    await tick(10.0, wake)  # already set: no wait at all
    assert loop.time() - started < 0.05
    started = loop.time()
    await tick(10.0, None, within=0.05)
    assert 0.04 <= loop.time() - started < 1.0
    await tick(10.0, asyncio.Event(), within=-3.0)  # a deadline already passed


def test_a_job_cancelled_while_waiting_does_not_take_the_tick_from_the_others() -> None:
    """Jobs waiting for the same tick share one timer and one future: cancelling one job
    must not cancel what the others wait on."""
    async def main() -> tuple[list[int], bool]:
        loop = asyncio.get_running_loop()
        iterations = Iterations(loop)
        woke: list[int] = []

        async def job() -> None:
            await tick(0.2)
            woke.append(iterations.now())

        await tick(0.2)
        first = asyncio.ensure_future(job())
        quitter = asyncio.ensure_future(job())
        await asyncio.sleep(0.01)
        quitter.cancel()
        last = asyncio.ensure_future(job())
        await asyncio.gather(first, last)
        return woke, quitter.cancelled()

    woke, cancelled = uvloop.run(main())
    assert cancelled
    assert len(woke) == 2 and len(set(woke)) == 1, woke
