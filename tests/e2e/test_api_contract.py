"""Every answer of the JSON API has exactly the shape its response Struct (ticker.core.contract)
and so /api/openapi.json describe: real server, real Redis, every operation once."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import msgspec

from tests.conftest import TIMEOUT, Server
from ticker.core import contract
from ticker.core.contract import Applied, Channels, Error, Item, OnAir, Published, Snapshot
from ticker.core.items import parse_stream_id
from ticker.transport.openapi import spec

S = msgspec.Struct


def exactly(shape: type[S], response: httpx.Response, status: int = 200) -> Any:
    """The body decoded (strictly) as `shape`; its keys, and those of each item and channel
    in it, are the Struct's fields: none missing (but defaults), none extra."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    value = msgspec.json.decode(response.content, type=shape)
    raw = response.json()
    same_keys(shape, raw)
    for nested, key in ((Item, "items"), (contract.ChannelInfo, "channels")):
        for element in raw.get(key, []) if isinstance(raw.get(key), list) else []:
            same_keys(nested, element)
    if "channel_info" in raw:
        same_keys(contract.ChannelInfo, raw["channel_info"])
    return value


def same_keys(shape: type[S], raw: dict[str, Any]) -> None:
    fields = msgspec.structs.fields(shape)
    assert set(raw) <= {f.encode_name for f in fields}, (shape.__name__, raw)
    assert {f.encode_name for f in fields if f.required} <= set(raw), (shape.__name__, raw)


async def folded(server: Server, channel: str, cursor: str) -> None:
    """Wait until the node has applied the entry at `cursor`."""
    state = server.runtime.hub.channels[channel].state
    target = parse_stream_id(cursor)
    assert target is not None
    deadline = time.monotonic() + TIMEOUT
    while (parse_stream_id(state.cursor) or (0, 0)) < target:
        assert time.monotonic() < deadline, "the node never folded the entry"
        await asyncio.sleep(0.01)


async def test_every_answer_has_its_structs_shape(server: Server, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.http) as http:
        doc = (await http.get("/api/openapi.json")).json()
        assert doc == spec(server.settings.channel_names)

        channels = exactly(Channels, await http.get("/api/channels"))
        assert [c.name for c in channels.channels] == ["en", "ar"]
        assert channels.channels[1].dir == "rtl"

        r = await http.post("/api/channels/en/items", headers=auth, json={
            "text": "Three drones launched toward Eilat", "source": "Israeli media",
            "urgency": 3, "link": "https://example.com/a", "tags": ["yemen", "Israel"],
            "ttl": 600, "idem": "contract-1"})
        published = exactly(Published, r, 201)
        assert "duplicate" not in r.json()
        assert r.headers["location"] == f"/api/channels/en/items/{published.id}"
        again = exactly(Published, await http.post(
            "/api/channels/en/items", headers=auth,
            json={"text": "Three drones launched toward Eilat", "idem": "contract-1"}))
        assert again.duplicate is True and again.id == published.id
        await folded(server, "en", published.cursor)

        on_air = exactly(OnAir, await http.get("/api/channels/en/items"))
        item = next(i for i in on_air.items if i.id == published.id)
        assert (item.urgency, item.tags, item.source) == ("urgent", ["yemen", "israel"],
                                                          "Israeli media")
        snapshot = exactly(Snapshot, await http.get("/api/channels/en/snapshot"))
        assert snapshot.items == on_air.items and snapshot.channel_info.name == "en"

        bodies: dict[str, dict[str, Any]] = {
            "correct": {"text": "Two drones launched toward Eilat", "reason": "count"},
            "hold": {"reason": "checking"}, "release": {}, "pin": {}, "unpin": {},
            "extend": {"ttl": 3600}, "confirm": {}, "kill": {"reason": "unconfirmed"}}
        assert set(bodies) == set(contract.OP_REQUESTS)
        for op, body in bodies.items():
            r = await http.post(f"/api/channels/en/items/{published.id}/{op}", headers=auth,
                                json=body)
            applied = exactly(Applied, r, 201)
            assert (applied.id, applied.op, applied.channel) == (published.id, op, "en")
            await folded(server, "en", applied.cursor)

        # Reach: the figures readers' screens add up to, by item and by channel.
        reach = exactly(contract.ItemReach, await http.get(
            f"/api/channels/en/items/{published.id}/reach", headers=auth))
        assert (reach.channel, reach.id, reach.reach) == ("en", published.id, 0)
        several = exactly(contract.ChannelReach, await http.get(
            f"/api/channels/en/reach?ids={published.id}", headers=auth))
        assert several.reach == {published.id: 0}
        exactly(Error, await http.get(f"/api/channels/en/items/{published.id}/reach"), 401)

        # Errors: the Error body, naming the field.
        cases = [
            (await http.post("/api/channels/en/items", headers=auth, json={"text": 5}),
             422, "text"),
            (await http.post("/api/channels/en/items", headers=auth,
                             json={"text": "ok", "tags": ["a b"]}), 422, "tags"),
            (await http.post("/api/channels/fr/items", headers=auth, json={"text": "x"}),
             404, "channel"),
            (await http.post(f"/api/channels/en/items/{published.id}/hold", headers=auth,
                             json={}), 409, "item"),
            (await http.post("/api/channels/en/items", json={"text": "x"}), 401, None),
        ]
        for response, status, field in cases:
            error = exactly(Error, response, status)
            assert error.message
            assert response.json().get("field") == field
