"""The desk's live feed, pushed (ticker.node.deskfeed): what it costs Redis while nothing happens,
how fast another node's changes reach it, and its `stale`, keepalive and lifetime.

Real redis-server, real uvicorn; Redis commands are counted with MONITOR (only this test's
keys, by their prefix).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, make_settings, running_server, start_redis
from tests.e2e.deskkit import Desk, add_user
from ticker.desk import api as deskapi
from ticker.node import deskfeed
from ticker.redis.connection import connect as redis_client
from ticker.redis.keys import Keys

DESKS = 20
WINDOW = 3.0  # seconds of quiet while Redis commands are counted


@dataclass
class Feed:
    """One open `/desk/api/events` stream, read in the background: (event, data, when)."""

    messages: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    comments: list[tuple[str, float]] = field(default_factory=list)
    ended: bool = False  # the server ended the response
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def read(self, http: httpx.AsyncClient) -> None:
        try:
            async with http.stream("GET", "/desk/api/events",
                                   timeout=httpx.Timeout(TIMEOUT, read=None)) as r:
                assert r.status_code == 200, await r.aread()
                event, data = "", ""
                async for line in r.aiter_lines():
                    if line.startswith(":"):
                        self.comments.append((line, time.monotonic()))
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif line == "" and event:
                        self.messages.append((event, json.loads(data), time.monotonic()))
                        event, data = "", ""
                    else:
                        continue
                    self.arrived.set()
        finally:
            self.ended = True
            self.arrived.set()

    def states(self) -> list[dict[str, Any]]:
        return [data for event, data, _ in self.messages if event == "state"]

    async def until(self, check: Callable[[Feed], Any], what: str) -> float:
        """Wait until `check(self)` holds; returns when (monotonic) it first did."""
        deadline = time.monotonic() + TIMEOUT
        while not check(self):
            assert not self.ended, f"the feed ended before {what}: {self.messages}"
            self.arrived.clear()
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {what} within {TIMEOUT} s: {self.messages}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)
        return time.monotonic()


@contextlib.asynccontextmanager
async def feeds(http: httpx.AsyncClient, n: int) -> AsyncIterator[list[Feed]]:
    opened = [Feed() for _ in range(n)]
    for feed in opened:
        feed.task = asyncio.create_task(feed.read(http))
    try:
        for feed in opened:
            await feed.until(lambda f: f.states(), "first state")
        yield opened
    finally:
        for feed in opened:
            assert feed.task is not None
            feed.task.cancel()
        await asyncio.gather(*(f.task for f in opened if f.task), return_exceptions=True)


def texts(state: dict[str, Any], channel: str = "en") -> list[str]:
    return [i["text"] for ch in state["channels"] if ch["name"] == channel
            for i in ch["items"]]


@contextlib.asynccontextmanager
async def monitor(url: str, prefix: str) -> AsyncIterator[list[str]]:
    """Every Redis command naming one of `prefix`'s keys, while the block runs."""
    seen: list[str] = []
    client = Redis.from_url(url)

    async def listen() -> None:
        async with client.monitor() as m:
            started.set()
            async for info in m.listen():
                if prefix in info["command"]:
                    seen.append(info["command"])

    started = asyncio.Event()
    task = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(started.wait(), TIMEOUT)
        await asyncio.sleep(0.1)  # MONITOR is in effect once its reply came
        yield seen
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


def kinds(commands: list[str], prefix: str) -> Counter[str]:
    """Commands by what they are for: the desk-version watcher, session checks, the rest."""
    out: Counter[str] = Counter()
    for command in commands:
        if command.upper().startswith("GET ") and command.endswith(f"{prefix}:desk-version"):
            out["desk-version"] += 1
        elif command.upper().startswith("HGETALL ") and (
                f"{prefix}:session:" in command or f"{prefix}:user:" in command):
            out["session"] += 1
        else:
            out["rest"] += 1
    return out


async def quiet(url: str, prefix: str) -> Counter[str]:
    async with monitor(url, prefix) as commands:
        await asyncio.sleep(WINDOW)
    return kinds(list(commands), prefix)


async def test_quiet_desks_cost_redis_nothing_per_desk(
    server: Server, redis: Redis, redis_url: str, prefix: str
) -> None:
    await add_user(redis, prefix, "alice", "editor")
    alice = await Desk.sign_in(server, "alice")
    limits = httpx.Limits(max_connections=DESKS + 5)
    http = httpx.AsyncClient(base_url=server.http, cookies=alice.http.cookies, limits=limits)
    try:
        # No desk open: the watcher does not read Redis at all.
        none = await quiet(redis_url, prefix)
        assert none["desk-version"] == 0 and none["session"] == 0, none

        async with feeds(http, 1) as one:
            await asyncio.sleep(0.5)
            alone = await quiet(redis_url, prefix)
            async with feeds(http, DESKS - 1) as more:
                await asyncio.sleep(0.5)
                many = await quiet(redis_url, prefix)
                everyone = one + more
                assert server.runtime.desk_feed.desks == DESKS
                # Nothing happened, so nothing was sent (one state each, on opening).
                assert all(len(f.states()) == 1 for f in everyone)

                # One watcher per process: a read of desk-version per POLL, not per desk.
                assert many["desk-version"] <= WINDOW / deskfeed.POLL + 2, many
                # Everything but the session checks is the same with 20 desks as with 1
                # (the reader's XREADs, the once-a-second shared refresh, the scheduler):
                # the view is built once for all. Polling per desk, 20 desks made ~200
                # desk-version reads and ~20 rebuilds a second.
                assert many["rest"] <= alone["rest"] + 12, (alone, many)
                # Each desk checks its session every FEED_SESSION_CHECK s (2 commands).
                checks = WINDOW / deskapi.FEED_SESSION_CHECK + 1
                assert many["session"] <= 2 * DESKS * checks, many

                # An entry written straight into Redis reaches every open desk at once.
                written = time.monotonic()
                await redis.xadd(Keys(prefix).stream("en"), {"text": "Pushed to every desk"})
                arrivals = await asyncio.gather(*(
                    f.until(lambda f: any("Pushed to every desk" in texts(s)
                                          for s in f.states()), "the new item")
                    for f in everyone))
                assert max(arrivals) - written < 1.0, [a - written for a in arrivals]
        deadline = time.monotonic() + TIMEOUT
        while server.runtime.desk_feed.desks:  # closed feeds are no longer counted
            assert time.monotonic() < deadline, server.runtime.desk_feed.desks
            await asyncio.sleep(0.05)
    finally:
        await http.aclose()
        await alice.close()


async def test_another_nodes_item_and_job_reach_this_nodes_desk_promptly(
    redis: Redis, redis_url: str, prefix: str
) -> None:
    await add_user(redis, prefix, "alice", "editor")
    settings = make_settings(redis_url, prefix)
    async with running_server(settings) as here, running_server(settings) as there:
        # Only the pushes can deliver here: no once-a-second refresh (which would also
        # bring both changes within a second).
        here.runtime.desk_feed.refresh = 3600.0
        desk_here = await Desk.sign_in(here, "alice")
        desk_there = await Desk.sign_in(there, "alice")
        try:
            async with feeds(desk_here.http, 1) as (feed,):
                await asyncio.sleep(0.5)
                # An item published on the other node: this node's reader folds it and
                # wakes the feed.
                asked = time.monotonic()
                await desk_there.publish("Published on the other node")
                got = await feed.until(lambda f: "Published on the other node" in
                                       texts(f.states()[-1]), "the other node's item")
                assert got - asked < 1.5, got - asked

                # A job made on the other node (nothing on the stream): desk-version moves,
                # this node's one watcher sees it.
                asked = time.monotonic()
                r = await desk_there.post("/desk/api/items", {
                    "text": "Embargoed on the other node", "channels": ["en"],
                    "at": int(time.time() * 1000) + 3_600_000})
                assert r.status_code == 202, r.text
                job = r.json()["job"]
                got = await feed.until(lambda f: [j["id"] for j in f.states()[-1]["scheduled"]]
                                       == [job], "the other node's job")
                assert got - asked < 1.5, got - asked

                asked = time.monotonic()
                r = await desk_there.post(f"/desk/api/jobs/{job}/cancel")
                assert r.status_code == 200, r.text
                got = await feed.until(lambda f: f.states()[-1]["scheduled"] == [],
                                       "the job cancelled on the other node")
                assert got - asked < 1.5, got - asked
        finally:
            await desk_here.close()
            await desk_there.close()


async def test_the_feed_says_stale_while_redis_is_down_and_state_when_it_is_back(
    tmp_path: Path, prefix: str
) -> None:
    aof = ("--appendonly", "yes", "--appendfsync", "always")
    redis_server = start_redis(tmp_path, None, *aof)
    port = redis_server.port
    client = redis_client(redis_server.url)
    try:
        await add_user(client, prefix, "alice", "editor")
        async with running_server(make_settings(redis_server.url, prefix)) as server:
            alice = await Desk.sign_in(server, "alice")
            try:
                async with feeds(alice.http, 1) as (feed,):
                    redis_server.stop()
                    await feed.until(lambda f: f.messages[-1][0] == "stale", "stale")
                    before = len(feed.messages)
                    await asyncio.sleep(1.5)  # told once, not once a second
                    assert len(feed.messages) == before, feed.messages
                    redis_server = start_redis(tmp_path, port, *aof)
                    # The view did not change, but a state says the board is live again.
                    await feed.until(lambda f: f.messages[-1][0] == "state", "state again")
            finally:
                await alice.close()
    finally:
        await client.aclose()
        redis_server.stop()


async def test_keepalives_and_the_end_of_a_response(
    server: Server, redis: Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deskapi, "FEED_KEEPALIVE", 0.4)
    monkeypatch.setattr(deskapi, "FEED_LIFETIME", 1.5)
    await add_user(redis, prefix, "alice", "editor")
    alice = await Desk.sign_in(server, "alice")
    try:
        feed = Feed()
        opened = time.monotonic()
        await asyncio.wait_for(feed.read(alice.http), TIMEOUT)  # returns when the server ends it
        lasted = time.monotonic() - opened
        assert 1.4 < lasted < 5.0, lasted
        assert [event for event, _, _ in feed.messages] == ["state"]
        assert len(feed.comments) >= 2 and all(c == ": keepalive" for c, _ in feed.comments)
    finally:
        await alice.close()


async def test_one_build_serves_every_desk_and_a_failure_is_shared(redis: Redis) -> None:
    feed = deskfeed.DeskFeed(redis, Keys("unused"))
    builds = 0

    async def build() -> int:
        nonlocal builds
        builds += 1
        await asyncio.sleep(0.05)
        return feed.version

    first = asyncio.create_task(feed.shared(build))
    await asyncio.sleep(0)
    others = [asyncio.create_task(feed.shared(build)) for _ in range(9)]
    first.cancel()  # one desk going away does not cancel the build for the others
    assert await asyncio.gather(*others) == [0] * 9 and builds == 1
    feed.touch()
    assert await feed.shared(build) == 1 and builds == 2

    async def failing() -> int:
        nonlocal builds
        builds += 1
        raise ConnectionError("down")

    feed.touch()
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await feed.shared(failing)
    assert builds == 3  # until the next change
    waiting = asyncio.create_task(feed.wait(feed.version, TIMEOUT))
    await asyncio.sleep(0.01)
    feed.touch()
    assert await asyncio.wait_for(waiting, 1.0) == feed.version
    assert await feed.wait(feed.version, 0.05) == feed.version  # no change: the timeout
