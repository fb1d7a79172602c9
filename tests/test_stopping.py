"""ticker.process.stopping: background tasks end at shutdown even when a cancel goes astray."""

from __future__ import annotations

import asyncio
import contextlib
import sys

from redis.exceptions import RedisError

from ticker.process.stopping import stop_tasks, where
from ticker.redis import connection as redisconn


async def xread_loop(client: redisconn.Redis) -> None:
    """The shape of ticker.redis.reader's loop: XREAD BLOCK, and go on after a Redis error."""
    while True:
        try:
            await client.xread({"nothing-here": "$"}, count=10, block=200)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError):
            await asyncio.sleep(0.05)


async def test_a_reader_whose_cancel_redis_py_dropped_is_still_stopped(redis_url: str) -> None:
    """The shutdown hang CI caught: the Redis client is closed and the reader cancelled in
    the iterations where it reconnects; on Python 3.11 `wait_for` inside redis-py drops
    that cancel and the loop runs on. `stop_tasks` cancels again until it ends."""
    lost = 0
    for yields in range(8):
        client = redisconn.connect(redis_url)
        task = asyncio.create_task(xread_loop(client))
        await asyncio.sleep(0.05)  # in its XREAD BLOCK
        await client.aclose()
        for _ in range(yields):
            await asyncio.sleep(0)
        task.cancel()
        _, pending = await asyncio.wait([task], timeout=0.5)
        lost += bool(pending)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await stop_tasks([task], 2.0) == set()
        assert loop.time() - started < 0.5
        assert task.cancelled()
        await client.aclose()
    if sys.version_info < (3, 12):
        # The test reproduces the race it guards against (it fails without the re-cancel).
        assert lost > 0


async def test_a_task_that_ignores_one_cancel_stops_at_the_next() -> None:
    ignored = 0

    async def stubborn() -> None:
        nonlocal ignored
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if ignored:
                    raise
                ignored += 1

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await stop_tasks([task, task], 5.0) == set()
    assert ignored == 1 and task.cancelled()
    assert loop.time() - started < 0.5


async def test_a_task_that_never_stops_is_returned_after_the_limit_with_where_it_waits(
) -> None:
    release = asyncio.Event()

    async def refuses_to_stop() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    async def outer() -> None:
        await refuses_to_stop()

    task = asyncio.create_task(outer(), name="stuck-one")
    done = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    left = await stop_tasks([task, done], 0.3)
    assert left == {task}
    assert 0.3 <= loop.time() - started < 1.0
    trace = where(task).splitlines()
    assert "in outer" in trace[0] and "in refuses_to_stop" in trace[1]
    assert any("wait" in line for line in trace[2:])
    release.set()
    await asyncio.wait_for(task, 1.0)
