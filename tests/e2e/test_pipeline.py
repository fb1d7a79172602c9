"""The live pipeline end to end: HTTP or raw XADD -> Redis stream -> hub -> websockets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import websockets
import websockets.exceptions
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, recv_json, recv_until
from ticker.redis.keys import Keys


def publishes(frame: dict[str, Any]) -> list[str]:
    return [e["item"]["text"] for e in frame.get("events", []) if e["op"] == "publish"]


async def publish_http(server: Server, token: str, text: str, channel: str = "en",
                       **extra: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.http) as http:
        r = await http.post(f"/api/channels/{channel}/items", json={"text": text, **extra},
                            headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_http_and_raw_xadd_reach_200_clients_in_order_exactly_once(
    server: Server, token: str, redis: Redis, prefix: str
) -> None:
    clients = [await websockets.connect(server.ws()) for _ in range(200)]
    try:
        for ws in clients:
            first = await recv_json(ws)
            assert first["type"] == "snapshot" and first["items"] == []
        await publish_http(server, token, "Over HTTP: first")
        await redis.xadd(Keys(prefix).stream("en"), {"text": "Raw XADD: second", "by": "cli"})

        async def collect(ws: Any) -> list[str]:
            seen: list[str] = []
            deadline = time.monotonic() + TIMEOUT
            while len(seen) < 2:
                seen += publishes(await recv_json(ws, deadline - time.monotonic()))
            # Nothing more may arrive: exactly once.
            try:
                extra = await asyncio.wait_for(ws.recv(), 0.3)
                seen.append(f"UNEXPECTED {extra}")
            except TimeoutError:
                pass
            return seen

        results = await asyncio.gather(*(collect(ws) for ws in clients))
        assert all(r == ["Over HTTP: first", "Raw XADD: second"] for r in results)
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))


async def test_resume_gets_exactly_the_missed_events(
    server: Server, token: str, redis: Redis, prefix: str
) -> None:
    await publish_http(server, token, "before")
    async with websockets.connect(server.ws()) as ws:
        snap = await recv_json(ws)
        cursor = snap["cursor"]
        assert [i["text"] for i in snap["items"]] == ["before"]
    for n in range(5):
        await publish_http(server, token, f"missed {n}")
    async with websockets.connect(server.ws(cursor=cursor)) as ws:
        frame = await recv_json(ws)
        assert frame["type"] == "events"
        assert frame["missed"] == 5
        assert publishes(frame) == [f"missed {n}" for n in range(5)]
        last = frame["cursor"]
        await publish_http(server, token, "live after resume")
        live = await recv_json(ws)
        assert publishes(live) == ["live after resume"] and "missed" not in live
    async with websockets.connect(server.ws(cursor=last)) as ws:
        frame = await recv_json(ws)
        assert frame["missed"] == 1 and publishes(frame) == ["live after resume"]


async def test_cursor_older_than_the_trimmed_stream_gets_a_reset_snapshot(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    from tests.conftest import make_settings, running_server

    key = Keys(prefix).stream("en")
    old = await redis.xadd(key, {"text": "old one"})
    for n in range(20):
        await redis.xadd(key, {"text": f"item {n}"})
    await redis.xtrim(key, maxlen=5, approximate=False)
    async with running_server(make_settings(redis_url, prefix)) as server:
        async with websockets.connect(server.ws(cursor=old.decode())) as ws:
            frame = await recv_json(ws)
        assert frame["type"] == "snapshot" and frame["reset"] is True
        newest = [f"item {n}" for n in (19, 18, 17, 16, 15)]
        assert [i["text"] for i in frame["items"]][:5] == newest
        # Well formed but older than anything kept: a reset snapshot.
        for unknown in ("0-0", "1-5"):
            async with websockets.connect(server.ws(cursor=unknown)) as ws:
                frame = await recv_json(ws)
            assert frame["type"] == "snapshot" and frame["reset"] is True
        # Malformed: refused before the upgrade, as SSE refuses it (ticker.transport.resume).
        for bad in ("garbage", "99999999999999-0x", "0"):
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with websockets.connect(server.ws(cursor=bad)):
                    pass
            assert refused.value.response.status_code == 400


async def test_kill_removes_the_item_everywhere(server: Server, token: str) -> None:
    keep = await publish_http(server, token, "stays on air")
    doomed = await publish_http(server, token, "will be killed")
    clients = [await websockets.connect(server.ws()) for _ in range(20)]
    try:
        for ws in clients:
            snap = await recv_json(ws)
            assert {i["id"] for i in snap["items"]} == {keep["id"], doomed["id"]}
        async with httpx.AsyncClient(base_url=server.http) as http:
            r = await http.post(f"/api/channels/en/items/{doomed['id']}/kill",
                                json={"reason": "unconfirmed"},
                                headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 201, r.text
            again = await http.post(f"/api/channels/en/items/{doomed['id']}/kill",
                                    json={"reason": "twice"},
                                    headers={"Authorization": f"Bearer {token}"})
            assert again.status_code == 409
        for ws in clients:
            frame = await recv_json(ws)
            assert frame["events"] == [{"op": "kill", "cursor": frame["cursor"],
                                        "id": doomed["id"]}]
        async with websockets.connect(server.ws()) as fresh:
            snap = await recv_json(fresh)
        assert [i["id"] for i in snap["items"]] == [keep["id"]]
        async with httpx.AsyncClient(base_url=server.http) as http:
            listed = (await http.get("/api/channels/en/items")).json()
        assert [i["id"] for i in listed["items"]] == [keep["id"]]
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))


async def test_items_read_together_go_out_in_one_frame(
    server: Server, redis: Redis, prefix: str
) -> None:
    async with websockets.connect(server.ws()) as ws:
        await recv_json(ws)
        pipe = redis.pipeline(transaction=True)
        for n in range(20):
            pipe.xadd(Keys(prefix).stream("en"), {"text": f"burst {n}"})
        await pipe.execute()
        frames = await recv_until(ws, lambda f: publishes(f) and
                                  publishes(f)[-1] == "burst 19")
        texts = [t for f in frames for t in publishes(f)]
        assert texts == [f"burst {n}" for n in range(20)]
        assert len(frames) == 1  # a MULTI lands in one XREAD reply: one frame


async def test_channels_are_separate_and_rtl_info_is_sent(
    server: Server, token: str
) -> None:
    async with websockets.connect(server.ws("ar")) as ar, \
            websockets.connect(server.ws("en")) as en:
        snap = await recv_json(ar)
        assert snap["channel_info"] == {"name": "ar", "lang": "ar", "dir": "rtl",
                                        "title": "Breaking"}
        await recv_json(en)
        await publish_http(server, token, "عاجل: خبر", channel="ar")
        frame = await recv_json(ar)
        assert publishes(frame) == ["عاجل: خبر"]
        try:
            leaked = await asyncio.wait_for(en.recv(), 0.3)
            raise AssertionError(f"en got an ar item: {leaked!r}")
        except TimeoutError:
            pass


async def test_restarted_node_rebuilds_state_from_the_stream_alone(
    redis_url: str, prefix: str, token: str
) -> None:
    from tests.conftest import make_settings, running_server

    async with running_server(make_settings(redis_url, prefix)) as first:
        a = await publish_http(first, token, "first item")
        b = await publish_http(first, token, "second item")
        await publish_http(first, token, "third item")
        async with httpx.AsyncClient(base_url=first.http) as http:
            await http.post(f"/api/channels/en/items/{b['id']}/kill", json={},
                            headers={"Authorization": f"Bearer {token}"})
            await http.post(f"/api/channels/en/items/{a['id']}/correct",
                            json={"text": "first item, corrected"},
                            headers={"Authorization": f"Bearer {token}"})
        await asyncio.sleep(0.3)
        async with websockets.connect(first.ws()) as ws:
            before = await recv_json(ws)
    async with running_server(make_settings(redis_url, prefix)) as second:
        async with websockets.connect(second.ws()) as ws:
            after = await recv_json(ws)
        async with websockets.connect(second.ws(cursor=before["cursor"])) as ws:
            resumed = await recv_json(ws)
    assert after["items"] == before["items"]
    assert after["cursor"] == before["cursor"]
    assert [i["text"] for i in after["items"]] == ["third item", "first item, corrected"]
    assert after["items"][1]["corrected"] is True and after["items"][1]["version"] == 2
    assert resumed["type"] == "events" and resumed["missed"] == 0


async def test_health_and_readiness(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True


async def test_unreachable_redis_means_not_ready_and_503_never_a_crash(prefix: str) -> None:
    from tests.conftest import free_port, make_settings, running_server

    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with running_server(make_settings(dead, prefix), wait_ready=False) as server:
        async with httpx.AsyncClient(base_url=server.http) as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["redis"] == "down"
            r = await http.post("/api/channels/en/items", json={"text": "x"},
                                headers={"Authorization": "Bearer tkr_whatever"})
            assert r.status_code == 503 and r.json()["error"] == "unavailable"
            # Wherever Redis fails under a request, one answer (ticker.ops.app.redis_error):
            # 503, `unavailable`, Retry-After; never a 500.
            bearer = {"Authorization": "Bearer tkr_whatever"}
            signed_in = {"Cookie": "ticker_session=whatever", "X-CSRF-Token": "x"}
            for method, path, headers in (
                    ("GET", "/api/channels/en/reach", bearer),
                    ("GET", "/api/channels/en/items/1-0/reach", bearer),
                    ("POST", "/api/channels/en/items/1-0/kill", bearer),
                    ("GET", "/desk/api/state", signed_in),
                    ("GET", "/desk/api/users", signed_in),
                    ("POST", "/desk/api/items", signed_in)):
                r = await http.request(method, path, headers=headers, json={})
                assert r.status_code == 503, (path, r.status_code, r.text)
                assert r.json()["error"] == "unavailable" and r.headers["retry-after"] == "1"
        await asyncio.sleep(0.5)
        assert not server.runtime.reader.ready
        assert server.runtime.reader.errors >= 1
        reader_task = [t for t in asyncio.all_tasks() if t.get_name() == "ticker-reader"]
        assert reader_task and not reader_task[0].done()


async def test_resume_window_is_exact_on_untrimmed_trimmed_and_deleted_streams(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    from tests.conftest import make_settings, running_server

    key = Keys(prefix).stream("en")
    ids = [(await redis.xadd(key, {"text": f"n{n}"})).decode() for n in range(6)]
    async with running_server(make_settings(redis_url, prefix)) as server:
        # Never trimmed: even a cursor from before the first entry resumes exactly.
        async with websockets.connect(server.ws(cursor="0-1")) as ws:
            frame = await recv_json(ws)
        assert frame["type"] == "events" and frame["missed"] == 6
    await redis.xdel(key, ids[2])
    async with running_server(make_settings(redis_url, prefix)) as server:
        # An entry after cursor ids[1] was deleted: that cursor cannot resume exactly.
        async with websockets.connect(server.ws(cursor=ids[1])) as ws:
            frame = await recv_json(ws)
        assert frame["type"] == "snapshot" and frame["reset"] is True
        async with websockets.connect(server.ws(cursor=ids[3])) as ws:
            frame = await recv_json(ws)
        assert frame["type"] == "events" and frame["missed"] == 2
