"""ticker.transport.sse without a server: SSEConnection against a real ChannelHub (queue,
block at the cap, exact catch-up when drained, drop), and the cursor rules of the request."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.requests import Request

from ticker.core.channels import Channel
from ticker.core.errors import HTTPError
from ticker.core.hub import Hub
from ticker.transport.sse import SSEConnection, cursor_of

EN = Channel(name="en", lang="en", dir="ltr", title="Breaking")
T0 = 1_732_662_000_000


def sid(k: int) -> str:
    return f"{T0 + k}-0"


def publish(hub: Hub, k: int, text: str) -> None:
    channel = hub.channels["en"]
    assert channel.apply([(sid(k), {b"text": text.encode()})], T0 + k) == []


def events(data: bytes) -> list[tuple[str | None, dict[str, object]]]:
    """The SSE events in `data`: (id, JSON) each."""
    out: list[tuple[str | None, dict[str, object]]] = []
    for block in data.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            out.append((fields.get("id"), json.loads(fields["data"])))
    return out


def test_a_reader_over_the_cap_is_blocked_and_caught_up_exactly_once_drained() -> None:
    hub = Hub([EN])
    channel = hub.channels["en"]
    left: list[int] = []
    conn = SSEConnection(channel, limit=750, on_leave=lambda: left.append(1))
    assert channel.subscribe(conn, None, T0)
    (first_id, snapshot), = events(conn.take())
    assert snapshot["type"] == "snapshot" and first_id == "0-0"
    assert conn in channel.sse_writers

    publish(hub, 1, "x" * 200)
    assert conn.queued < 750 and conn in channel.sse_writers
    publish(hub, 2, "y" * 200)  # crosses the cap: blocked, nothing more is queued
    assert conn in channel.blocked and conn not in channel.sse_writers and conn.blocked_since
    queued = conn.queued
    publish(hub, 3, "z")
    publish(hub, 4, "w")
    assert conn.queued == queued

    got = events(conn.take())
    assert [e[0] for e in got] == [sid(1), sid(2)]
    conn.drained(T0 + 5)  # the queue went out: what it missed, then live again
    (resume_id, resume), = events(conn.take())
    assert resume_id == sid(4) and resume["missed"] == 2
    assert [e["item"]["text"] for e in resume["events"]] == ["z", "w"]  # type: ignore[index]
    assert conn in channel.sse_writers and not channel.blocked and not conn.blocked_since
    publish(hub, 5, "v")
    assert [e[0] for e in events(conn.take())] == [sid(5)]

    conn.drop(1013, "too slow")
    assert conn.ended == (1013, "too slow") and channel.subscribers() == 0 and left == [1]
    publish(hub, 6, "after")
    conn.write(b"late")
    assert conn.take() == b""
    conn.leave()
    assert left == [1]  # leaving is counted once


async def test_a_restart_drop_lets_the_pump_finish_and_other_drops_stop_it() -> None:
    hub = Hub([EN])
    channel = hub.channels["en"]

    async def forever() -> None:
        await asyncio.Event().wait()

    restart = SSEConnection(channel, limit=1024)
    restart.pump = asyncio.create_task(forever())
    restart.drop(1012, "service restart")
    await asyncio.sleep(0)
    assert not restart.pump.done() and restart.wake.is_set()

    slow = SSEConnection(channel, limit=1024)
    slow.pump = asyncio.create_task(forever())
    slow.drop(1013, "too slow")
    with pytest.raises(asyncio.CancelledError):
        await slow.pump
    restart.pump.cancel()


def request(query: str = "", **headers: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/sse/en",
                    "query_string": query.encode(),
                    "headers": [(k.lower().replace("_", "-").encode(), v.encode())
                                for k, v in headers.items()]})


def test_the_cursor_comes_from_last_event_id_first_then_the_query() -> None:
    assert cursor_of(request()) is None
    assert cursor_of(request("cursor=5-1")) == "5-1"
    assert cursor_of(request("cursor=5-1", Last_Event_ID="7-0")) == "7-0"
    assert cursor_of(request("cursor=5-1", Last_Event_ID=" ")) == "5-1"
    for query, headers, field in (("cursor=abc", {}, "cursor"),
                                  ("", {"Last_Event_ID": "1-2-3"}, "Last-Event-ID"),
                                  ("cursor=" + "1" * 70 + "-0", {}, "cursor")):
        with pytest.raises(HTTPError) as caught:
            cursor_of(request(query, **headers))
        assert caught.value.status == 400 and caught.value.field == field
