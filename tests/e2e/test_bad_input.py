"""Bad input gets a clear 4xx (HTTP) or is rejected (stream), and nothing good is lost."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from tests.conftest import Server, recv_json
from ticker.redis.deadletters import DeadLetters
from ticker.redis.keys import Keys


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 422, "text"),
        ({"text": ""}, 422, "text"),
        ({"text": "   "}, 422, "text"),
        ({"text": "x" * 281}, 422, "text"),
        ({"text": "line one\nline two"}, 422, "text"),
        ({"text": "tab\there"}, 422, "text"),
        ({"text": "reversed \u202eevil"}, 422, "text"),
        ({"text": 42}, 422, "text"),
        ({"text": "ok", "urgency": "apocalyptic"}, 422, "urgency"),
        ({"text": "ok", "link": "javascript:alert(1)"}, 422, "link"),
        ({"text": "ok", "ttl": -5}, 422, "ttl"),
        ({"text": "ok", "tags": ["fine", "NOT OK!"]}, 422, "tags"),
        ({"text": "ok", "colour": "red"}, 422, "colour"),
        ({"text": "ok", "by": "impostor"}, 422, "by"),
    ],
)
async def test_bad_publish_bodies_get_422_naming_the_field(
    server: Server, token: str, body: dict[str, Any], status: int, field: str
) -> None:
    async with httpx.AsyncClient(base_url=server.http) as http:
        r = await http.post("/api/channels/en/items", json=body, headers=auth(token))
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert r.json()["message"]


async def test_text_at_the_limit_is_accepted(server: Server, token: str) -> None:
    async with httpx.AsyncClient(base_url=server.http) as http:
        r = await http.post("/api/channels/en/items", json={"text": "é" * 280},
                            headers=auth(token))
    assert r.status_code == 201


async def test_envelope_errors(server: Server, token: str) -> None:
    async with httpx.AsyncClient(base_url=server.http) as http:
        r = await http.post("/api/channels/nope/items", json={"text": "x"}, headers=auth(token))
        assert r.status_code == 404 and r.json()["field"] == "channel"
        r = await http.post("/api/channels/en/items", json={"text": "x"})
        assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
        r = await http.post("/api/channels/en/items", json={"text": "x"},
                            headers=auth("tkr_not-a-real-token"))
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = await http.post("/api/channels/en/items", content=b"{not json",
                            headers={**auth(token), "content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"] == "bad_json"
        r = await http.post("/api/channels/en/items", content=b"[1, 2]",
                            headers={**auth(token), "content-type": "application/json"})
        assert r.status_code == 422
        r = await http.post("/api/channels/en/items", content=b"text=hello",
                            headers={**auth(token),
                                     "content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 415
        big = json.dumps({"text": "x", "source": "y" * 100_000}).encode()
        r = await http.post("/api/channels/en/items", content=big,
                            headers={**auth(token), "content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "too_large"

        async def chunks() -> Any:
            for _ in range(100):
                yield b"x" * 1024

        r = await http.post("/api/channels/en/items", content=chunks(),
                            headers={**auth(token), "content-type": "application/json"})
        assert r.status_code == 413
        r = await http.post("/api/channels/en/items/1-0/nuke", json={}, headers=auth(token))
        assert r.status_code == 404 and r.json()["field"] == "op"
        r = await http.post("/api/channels/en/items/1-0/kill", json={}, headers=auth(token))
        assert r.status_code == 404 and r.json()["field"] == "item"
        r = await http.get("/api/nothing-here")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
    # None of it reached the stream.
    assert server.runtime.hub.channels["en"].state.items == {}


async def test_malformed_stream_entries_are_rejected_and_the_next_good_one_arrives(
    server: Server, redis: Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    key = keys.stream("en")
    bad_entries: list[dict[Any, Any]] = [
        {"source": "no text at all"},
        {"text": ""},
        {"op": "explode", "text": "unknown op"},
        {"op": "kill"},
        {"op": "kill", "item": "12345-0"},
        {"text": b"\xff\xfe invalid utf-8"},
        {b"\xc3\x28": "invalid utf-8 key"},
        {"text": "x" * (1024 * 1024)},
        {"text": "two\nlines"},
    ]
    async with websockets.connect(server.ws()) as ws:
        await recv_json(ws)
        for entry in bad_entries:
            await redis.xadd(key, entry)
        good = await redis.xadd(key, {"text": "the good one"})
        frame = await recv_json(ws)
        assert [e["item"]["text"] for e in frame["events"]] == ["the good one"]
        assert frame["cursor"] == good.decode()
    hub = server.runtime.hub
    assert hub.counters.rejected == len(bad_entries)
    # Each is recorded once in the dead-letter stream, with its reason.
    for _ in range(50):
        letters = await DeadLetters(redis, keys).latest(100)
        if len(letters) == len(bad_entries):
            break
        import asyncio

        await asyncio.sleep(0.05)
    assert len(letters) == len(bad_entries)
    reasons = " | ".join(f["reason"] for _, f in letters)
    for fragment in ("text is missing", "text is empty", "unknown op", "needs the item",
                     "no item 12345-0", "UTF-8", "larger than", "one line"):
        assert fragment in reasons
    assert len(json.loads(letters[-1][1]["entry"])) >= 1
    assert not hub.channels["en"].state.items.keys() - {good.decode()}


async def test_websocket_inbound_frames_are_bounded(server: Server) -> None:
    async with websockets.connect(server.ws()) as ws:
        await recv_json(ws)
        await ws.send("x" * 5000)
        with pytest.raises(websockets.ConnectionClosed) as caught:
            await recv_json(ws)
        assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009
    async with websockets.connect(server.ws()) as ws:
        await recv_json(ws)
        await ws.send(b"\x00\x01")
        with pytest.raises(websockets.ConnectionClosed) as caught:
            await recv_json(ws)
        assert caught.value.rcvd is not None and caught.value.rcvd.code == 1003
    async with websockets.connect(server.ws()) as ws:
        await recv_json(ws)
        await ws.send('{"type":"hello"}')  # a small text frame is fine and ignored
        pong = await ws.ping()
        await pong
