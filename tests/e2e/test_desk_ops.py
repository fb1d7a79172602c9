"""Every desk op against a real Redis and server: its effect on the folded state, on the
snapshot a new reader gets, on a live reader's websocket, and in the audit trail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, recv_json, recv_until
from tests.e2e.deskkit import Desk, add_user
from ticker.redis.keys import Keys


@pytest.fixture
async def alice(server: Server, redis: Redis, prefix: str) -> AsyncIterator[Desk]:
    await add_user(redis, prefix, "alice", "editor")
    desk = await Desk.sign_in(server, "alice")
    yield desk
    await desk.close()


async def snapshot(server: Server, channel: str = "en") -> dict[str, Any]:
    async with websockets.connect(server.ws(channel)) as ws:
        frame = await recv_json(ws)
    assert frame["type"] == "snapshot"
    return frame


def on_air(server: Server, channel: str = "en") -> list[dict[str, Any]]:
    state = server.runtime.hub.channel(channel)
    assert state is not None
    return [it.public() for it in state.state.on_air(int(time.time() * 1000))]


async def next_event(ws: Any) -> dict[str, Any]:
    frames = await recv_until(ws, lambda f: f["type"] == "events")
    events: list[dict[str, Any]] = frames[-1]["events"]
    assert len(events) == 1, events
    return events[0]


async def audit(desk: Desk, **query: str) -> list[dict[str, Any]]:
    r = await desk.http.get("/desk/api/audit", params=query)
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["entries"]
    return entries


async def test_publish_to_two_channels_in_one_action(
    server: Server, alice: Desk, redis: Redis, prefix: str
) -> None:
    async with websockets.connect(server.ws("en")) as en, \
            websockets.connect(server.ws("ar")) as ar:
        await recv_json(en), await recv_json(ar)
        ids = await alice.publish("Ceasefire takes effect at 04:00", ["en", "ar"],
                                  source="Qatari Foreign Ministry", urgency="urgent",
                                  tags="lebanon,ceasefire", ttl=600)
        assert len(ids) == 2  # one item per channel (ids are per stream: they may be equal)
        for ws, item_id in ((en, ids[0]), (ar, ids[1])):
            event = await next_event(ws)
            assert event["op"] == "publish" and event["item"]["id"] == item_id
            assert event["item"]["text"] == "Ceasefire takes effect at 04:00"
            assert event["item"]["urgency"] == "urgent"
            assert event["item"]["tags"] == ["lebanon", "ceasefire"]
            assert "by" not in event["item"]  # authors are not on the public wire
    for channel, item_id in (("en", ids[0]), ("ar", ids[1])):
        raw = await redis.xrange(Keys(prefix).stream(channel))
        assert [(i.decode(), f[b"by"]) for i, f in raw] == [(item_id, b"alice")]
        assert [it["id"] for it in (await snapshot(server, channel))["items"]] == [item_id]
        item = await alice.item(item_id, channel)
        assert item is not None and item["by"] == "alice" and item["status"] == "on_air"
    entries = await audit(alice)
    published = [(e["channel"], e["item"], e["entry"]) for e in entries
                 if e["action"] == "publish"]
    assert sorted(published) == sorted([("ar", ids[1], ids[1]), ("en", ids[0], ids[0])])


async def test_each_op_changes_state_snapshot_and_live_clients(
    server: Server, alice: Desk
) -> None:
    async with websockets.connect(server.ws("en")) as ws:
        await recv_json(ws)
        first, = await alice.publish("Three drones launched toward Eilat", ttl=600)
        second, = await alice.publish("Sirens sound in the north")
        await next_event(ws), await next_event(ws)
        assert [i["id"] for i in (await snapshot(server))["items"]] == [second, first]

        # correct: same id, version + 1, marked corrected
        r = await alice.op(first, "correct", text="Two drones launched toward Eilat",
                           reason="count confirmed", version=1)
        assert r.status_code == 201, r.text
        event = await next_event(ws)
        assert event["op"] == "correct" and event["item"]["id"] == first
        assert (event["item"]["version"], event["item"]["corrected"]) == (2, True)
        snap = {i["id"]: i for i in (await snapshot(server))["items"]}
        assert snap[first]["text"] == "Two drones launched toward Eilat"
        assert snap[first]["version"] == 2 and snap[first]["corrected"] is True

        # hold: hidden everywhere; release: back
        r = await alice.op(first, "hold")
        assert r.status_code == 201
        assert (await next_event(ws)) == {"op": "hold", "cursor": r.json()["cursor"],
                                          "id": first}
        assert [i["id"] for i in (await snapshot(server))["items"]] == [second]
        held = await alice.item(first)
        assert held is not None and held["status"] == "held" and held["held"] is True
        assert (await alice.op(first, "release")).status_code == 201
        event = await next_event(ws)
        assert event["op"] == "release" and event["item"]["id"] == first
        assert [i["id"] for i in (await snapshot(server))["items"]] == [second, first]

        # pin puts it first; unpin puts it back
        assert (await alice.op(first, "pin")).status_code == 201
        assert (await next_event(ws))["item"]["pinned"] is True
        assert [i["id"] for i in (await snapshot(server))["items"]] == [first, second]
        assert (await alice.op(first, "unpin")).status_code == 201
        assert (await next_event(ws))["item"]["pinned"] is False
        assert [i["id"] for i in (await snapshot(server))["items"]] == [second, first]

        # extend moves the expiry
        before = (await alice.item(first) or {})["expires"]
        started = int(time.time() * 1000)
        assert (await alice.op(first, "extend", ttl=7200)).status_code == 201
        event = await next_event(ws)
        assert event["op"] == "extend"
        assert started + 7200_000 - 2000 <= event["item"]["expires"] <= started + 7200_000 + 5000
        assert event["item"]["expires"] > before
        snap = {i["id"]: i for i in (await snapshot(server))["items"]}
        assert snap[first]["expires"] == event["item"]["expires"]

        # kill needs a reason; then it is gone everywhere
        r = await alice.op(first, "kill")
        assert r.status_code == 422 and r.json()["field"] == "reason"
        r = await alice.op(first, "kill", reason="   ")
        assert r.status_code == 422 and r.json()["field"] == "reason"
        r = await alice.op(first, "kill", reason="unconfirmed")
        assert r.status_code == 201
        assert (await next_event(ws)) == {"op": "kill", "cursor": r.json()["cursor"],
                                          "id": first}
        assert [i["id"] for i in (await snapshot(server))["items"]] == [second]
        assert await alice.item(first) is None
        r = await alice.op(first, "correct", text="too late")
        assert r.status_code == 409 and r.json()["field"] == "item"
    # the snapshot always equals the folded state
    assert (await snapshot(server))["items"] == on_air(server)
    actions = [(e["action"], e["user"], e["before"], e["after"], e["reason"])
               for e in await audit(alice, channel="en") if e["item"] == first]
    assert actions == [
        ("kill", "alice", "Two drones launched toward Eilat", "", "unconfirmed"),
        ("extend", "alice", "Two drones launched toward Eilat", "", ""),
        ("unpin", "alice", "Two drones launched toward Eilat", "", ""),
        ("pin", "alice", "Two drones launched toward Eilat", "", ""),
        ("release", "alice", "Two drones launched toward Eilat", "", ""),
        ("hold", "alice", "Two drones launched toward Eilat", "", ""),
        ("correct", "alice", "Three drones launched toward Eilat",
         "Two drones launched toward Eilat", "count confirmed"),
        ("publish", "alice", "", "Three drones launched toward Eilat", ""),
    ]


async def test_ops_on_a_held_item_reach_no_reader_until_release(
    server: Server, alice: Desk
) -> None:
    async with websockets.connect(server.ws("en")) as ws:
        await recv_json(ws)
        item, = await alice.publish("Unverified: explosion at the port")
        await next_event(ws)
        assert (await alice.op(item, "hold")).status_code == 201
        assert (await next_event(ws))["op"] == "hold"
        assert (await alice.op(item, "correct", text="Verified: blast at the port")
                ).status_code == 201
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.4)  # held: readers see nothing of it
        held = await alice.item(item)
        assert held is not None and held["text"] == "Verified: blast at the port"
        assert (await alice.op(item, "release")).status_code == 201
        event = await next_event(ws)
        assert event["item"]["text"] == "Verified: blast at the port"
        assert event["item"]["version"] == 2


async def test_conflicts_and_no_ops_are_refused_clearly(server: Server, alice: Desk) -> None:
    item, = await alice.publish("Markets open lower")
    assert (await alice.op(item, "correct", text="Markets open higher")).status_code == 201
    r = await alice.op(item, "correct", text="Markets flat", version=1)
    assert r.status_code == 409 and r.json()["field"] == "version"
    assert "now 2" in r.json()["message"]
    for op in ("release", "unpin"):
        r = await alice.op(item, op)
        assert r.status_code == 409 and r.json()["field"] == "op", op
    assert (await alice.op(item, "hold")).status_code == 201
    assert (await alice.op(item, "hold")).status_code == 409
    r = await alice.op(item, "explode")
    assert r.status_code == 404 and r.json()["field"] == "op"
    r = await alice.op("1-1", "hold")
    assert r.status_code == 404 and r.json()["field"] == "item"
    r = await alice.op("not-an-id", "hold")
    assert r.status_code == 404 and r.json()["field"] == "item"
    r = await alice.op(item, "hold", channel="fr")
    assert r.status_code == 404 and r.json()["field"] == "channel"
    r = await alice.op(item, "extend")
    assert r.status_code == 422 and r.json()["field"] == "ttl"
    r = await alice.op(item, "extend", ttl=3600, colour="red")
    assert r.status_code == 422 and r.json()["field"] == "colour"
    r = await alice.op(item, "release", version="2")
    assert r.status_code == 422 and r.json()["field"] == "version"


BAD_ITEMS: list[tuple[dict[str, Any], str]] = [
    ({"text": "x" * 281}, "text"),
    ({"text": ""}, "text"),
    ({"text": "two\nlines"}, "text"),
    ({"text": "evil \u202e override"}, "text"),
    ({"text": "isolate \u2066x\u2069"}, "text"),
    ({"source": "S"}, "text"),
    ({"text": "ok", "link": "javascript:alert(1)"}, "link"),
    ({"text": "ok", "link": "http://example.com"}, "link"),
    ({"text": "ok", "urgency": "whenever"}, "urgency"),
    ({"text": "ok", "tags": "no spaces allowed"}, "tags"),
    ({"text": "ok", "ttl": 0}, "ttl"),
    ({"text": "ok", "ttl": "soon"}, "ttl"),
    ({"text": "ok", "channels": []}, "channels"),
    ({"text": "ok", "channels": ["fr"]}, "channels"),
    ({"text": "ok", "channels": "en,ar"}, "channels"),
    ({"text": "ok", "channels": [1]}, "channels"),
    ({"text": "ok", "at": "tomorrow"}, "at"),
    ({"text": "ok", "at": 1000}, "at"),
    ({"text": "ok", "at": True}, "at"),
    ({"text": "ok", "by": "someone else"}, "by"),
    ({"text": 5}, "text"),
    ({"text": "ok", "colour": "red"}, "colour"),
]


async def test_bad_items_are_refused_with_the_field_named(
    server: Server, alice: Desk, redis: Redis, prefix: str
) -> None:
    for body, field in BAD_ITEMS:
        r = await alice.post("/desk/api/items", {"channels": ["en"], **body})
        assert r.status_code == 422, (body, r.text)
        assert r.json()["field"] == field, (body, r.text)
    assert await redis.xlen(Keys(prefix).stream("en")) == 0


async def test_bad_bodies_get_clear_4xx(server: Server, alice: Desk) -> None:
    headers = {"X-CSRF-Token": alice.csrf}
    r = await alice.http.post("/desk/api/items", content=b"{not json",
                              headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "bad_json"
    r = await alice.http.post("/desk/api/items", content=b"text=hi",
                              headers={**headers, "Content-Type": "text/plain"})
    assert r.status_code == 415
    r = await alice.http.post("/desk/api/items", content=b"[1]",
                              headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    r = await alice.http.post("/desk/api/items", content=b"{" + b" " * 20000 + b"}",
                              headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 413


async def test_a_retried_publish_with_the_same_idem_is_shown_once(
    server: Server, alice: Desk, redis: Redis, prefix: str
) -> None:
    first = await alice.publish("Polls close", ["en", "ar"], idem="polls-close-1")
    r = await alice.post("/desk/api/items", {"text": "Polls close", "channels": ["en", "ar"],
                                             "idem": "polls-close-1"})
    assert r.status_code == 200
    assert [i["id"] for i in r.json()["items"]] == first
    assert all(i.get("duplicate") for i in r.json()["items"])
    assert await redis.xlen(Keys(prefix).stream("en")) == 1


async def test_expiry_takes_an_item_off_the_air_and_extend_brings_it_back(
    server: Server, alice: Desk
) -> None:
    item, = await alice.publish("Short-lived line", ttl=1)
    assert [i["id"] for i in (await snapshot(server))["items"]] == [item]
    deadline = time.monotonic() + TIMEOUT
    while (await alice.item(item) or {}).get("status") != "expired":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert (await snapshot(server))["items"] == []
    assert (await alice.op(item, "extend", ttl=600)).status_code == 201
    assert [i["id"] for i in (await snapshot(server))["items"]] == [item]
    assert (await alice.item(item) or {}).get("status") == "on_air"


async def test_the_live_feed_sends_state_on_every_change_and_stops_when_signed_out(
    server: Server, alice: Desk
) -> None:
    async def states(http: httpx.AsyncClient, want: int) -> list[dict[str, Any]]:
        import json
        got: list[dict[str, Any]] = []
        async with http.stream("GET", "/desk/api/events") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            event = ""
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "state":
                    got.append(json.loads(line[6:]))
                    if len(got) == want:
                        return got
                elif line.startswith("data: ") and event == "ended":
                    got.append({"ended": True})
                    return got
        return got

    feed = asyncio.create_task(asyncio.wait_for(states(alice.http, 2), TIMEOUT))
    await asyncio.sleep(0.5)
    await alice.publish("Fed to the desk")
    first, second = await feed
    assert first["me"] == {"name": "alice", "role": "editor", "lang": "en", "editions": []}
    texts = [i["text"] for ch in second["channels"] if ch["name"] == "en" for i in ch["items"]]
    assert texts == ["Fed to the desk"]

    other = httpx.AsyncClient(base_url=server.http, cookies=alice.http.cookies)
    try:
        ended = asyncio.create_task(asyncio.wait_for(states(other, 5), TIMEOUT))
        await asyncio.sleep(0.5)
        r = await alice.http.post("/logout", headers={"X-CSRF-Token": alice.csrf,
                                                      "Accept": "application/json"})
        assert r.status_code == 200
        assert (await ended)[-1] == {"ended": True}
        assert (await other.get("/desk/api/events")).status_code == 401
    finally:
        await other.aclose()


async def test_the_desk_shows_each_items_reach(server: Server, alice: Desk) -> None:
    readers = [await websockets.connect(server.ws("en")) for _ in range(3)]
    try:
        for ws in readers:
            await recv_json(ws)
        (item,) = await alice.publish("Reach is counted", ["en"])
        for ws in readers:
            await recv_json(ws)
        late = await websockets.connect(server.ws("en"))  # gets it in its snapshot
        readers.append(late)
        await recv_json(late)
        deadline = time.monotonic() + TIMEOUT
        while True:  # nodes flush their counts to Redis every second
            state = (await alice.http.get("/desk/api/state")).json()
            en = next(c for c in state["channels"] if c["name"] == "en")
            reach = next(i["reach"] for i in en["items"] if i["id"] == item)
            if reach == 4 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert reach == 4
    finally:
        for ws in readers:
            await ws.close()
