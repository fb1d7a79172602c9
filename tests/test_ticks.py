"""ticker.ticks: periodic jobs of one process fall due together."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from ticker.ticks import EARLY, tick, until_next


def test_until_next_is_the_next_multiple_and_never_a_tick_just_served() -> None:
    assert until_next(1.0, 10.25) == pytest.approx(0.75)
    assert until_next(1.0, 10.0) == pytest.approx(1.0)
    assert until_next(5.0, 12.0) == pytest.approx(3.0)
    # Woken a rounding error before the tick: that tick is the one just served.
    assert until_next(1.0, 10.999) == pytest.approx(1.001)
    assert until_next(1.0, 11.0 - EARLY * 1.01) < 0.1  # but not a real early wake


def test_jobs_started_at_different_times_wake_in_the_same_loop_iteration() -> None:
    """What keeps an idle process to one wake-up a second: on uvloop (what `ticker serve`
    runs), ticks of tasks started apart land on the same millisecond."""
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        woke: list[float] = []

        async def job(offset: float) -> None:
            await asyncio.sleep(offset)
            for _ in range(2):
                await tick(0.2)
                woke.append(loop.time())

        await tick(0.2)  # just after a tick: the three starts below fall in one period
        await asyncio.gather(job(0.0), job(0.03), job(0.07))
        return woke

    woke = uvloop.run(main())
    assert len(woke) == 6
    assert len({round(t, 3) for t in woke}) == 2, woke  # two ticks, each shared by all three
    for t in woke:
        assert abs(t / 0.2 - round(t / 0.2)) < 0.005  # on a multiple of the period


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
