"""Editions that work together (docs/editions.md), end to end: real Redis, real uvicorn, real
websocket clients, the real CLI. The same flow in Chromium is tests/browser/test_editions_flow.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, make_settings, recv_json, running_server
from tests.e2e.deskkit import Desk, add_user
from tests.e2e.test_api_contract import folded
from tests.e2e.test_desk_cli import ticker
from ticker.redis.keys import Keys
from ticker.redis.tokens import Tokens

CHANNELS = "en,ar:ar:rtl:عاجل,es:es:ltr:Última hora"


@pytest.fixture
async def node(redis_url: str, prefix: str) -> AsyncIterator[Server]:
    async with running_server(make_settings(redis_url, prefix, channels=CHANNELS)) as handle:
        yield handle


@pytest.fixture
async def auth(redis: Redis, prefix: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await Tokens(redis, Keys(prefix)).create('wire')}"}


async def until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def next_event(ws: Any, op: str) -> dict[str, Any]:
    """The next event `op` on `ws` (other frames are skipped)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        frame = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        for event in frame.get("events", []):
            if event["op"] == op:
                return dict(event)


def item_of(node: Server, channel: str, item_id: str) -> dict[str, Any]:
    return dict(node.runtime.hub.channels[channel].state.items[item_id].public())


async def test_a_version_is_linked_over_http_readers_and_feeds_follow_and_kill_takes_all(
    node: Server, auth: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=node.http, headers=auth, timeout=TIMEOUT) as http:
        r = await http.post("/api/channels/en/items", json={
            "text": "Three drones launched toward Eilat", "urgency": "flash"})
        en_id = r.json()["id"]
        await folded(node, "en", en_id)
        feed = await http.get("/feeds/en.json")
        etag_before = feed.headers["etag"]
        async with websockets.connect(node.ws("en")) as en_ws, \
                websockets.connect(node.ws("ar")) as ar_ws:
            await recv_json(en_ws), await recv_json(ar_ws)
            r = await http.post("/api/channels/ar/items", json={
                "text": "إطلاق ثلاث مسيّرات نحو إيلات",
                "translation_of": {"channel": "en", "id": en_id}})
            assert r.status_code == 201, r.text
            ar_id = r.json()["id"]
            both = {"ar": ar_id, "en": en_id}
            published = await next_event(ar_ws, "publish")
            assert published["item"]["story"] == f"en:{en_id}"
            assert published["item"]["versions"] == both
            relinked = await next_event(en_ws, "versions")
            assert "cursor" not in relinked and relinked["item"]["versions"] == both

            # Every read of the item says the same: on-air list, snapshot, JSON Feed.
            for channel, item_id in (("en", en_id), ("ar", ar_id)):
                listed = (await http.get(f"/api/channels/{channel}/items")).json()["items"]
                snap = (await http.get(f"/api/channels/{channel}/snapshot")).json()["items"]
                jf = (await http.get(f"/feeds/{channel}.json")).json()["items"]
                assert [i["versions"] for i in listed if i["id"] == item_id] == [both]
                assert [i["versions"] for i in snap if i["id"] == item_id] == [both]
                assert [i["_ticker"]["versions"] for i in jf
                        if i["_ticker"]["id"] == item_id] == [both]
            feed = await http.get("/feeds/en.json", headers={"If-None-Match": etag_before})
            assert feed.status_code == 200 and feed.headers["etag"] != etag_before

            # Refused at the edge, with the field named, and nothing written.
            await folded(node, "ar", ar_id)
            before = {ch: len(h.state.items) for ch, h in node.runtime.hub.channels.items()}
            refusals: list[tuple[str, Any, int, str]] = [
                ("es", {"channel": "en", "id": "1-0"}, 422, "no item 1-0 in en"),
                ("es", {"channel": "fr", "id": en_id}, 422, "not an edition here"),
                ("en", {"channel": "en", "id": en_id}, 422, "of en itself"),
                ("es", {"channel": "ar", "id": ar_id}, 422, f"link to en:{en_id}"),
                ("ar", {"channel": "en", "id": en_id}, 409, f"already has a ar version "
                                                            f"({ar_id})"),
                ("es", f"en:{en_id}", 422, "translation_of"),
                ("es", {"channel": "en"}, 422, "translation_of"),
                ("es", {"channel": "en", "id": en_id, "x": 1}, 422, "translation_of"),
                ("es", {"channel": "EN!", "id": en_id}, 422, "translation_of"),
            ]
            for channel, link, status, why in refusals:
                r = await http.post(f"/api/channels/{channel}/items",
                                    json={"text": "x", "translation_of": link})
                assert r.status_code == status, (link, r.text)
                assert r.json()["field"] == "translation_of" and why in r.json()["message"]
            assert {ch: len(h.state.items) for ch, h in
                    node.runtime.hub.channels.items()} == before

            # Kill with every version: one entry per edition, every reader told.
            r = await http.post(f"/api/channels/en/items/{en_id}/kill",
                                json={"reason": "not confirmed", "all_versions": True})
            assert r.status_code == 201, r.text
            killed = r.json()
            assert (killed["channel"], killed["id"]) == ("en", en_id)
            assert [(v["channel"], v["id"], v["op"]) for v in killed["versions"]] == [
                ("ar", ar_id, "kill")]
            assert (await next_event(en_ws, "kill"))["id"] == en_id
            assert (await next_event(ar_ws, "kill"))["id"] == ar_id
        for channel in ("en", "ar"):
            await folded(node, channel, node.runtime.hub.channels[channel].state.cursor)
            assert (await http.get(f"/api/channels/{channel}/items")).json()["items"] == []
            assert (await http.get(f"/feeds/{channel}.json")).json()["items"] == []
            assert "deleted-entry" in (await http.get(f"/feeds/{channel}.atom")).text
        # Killing only one edition stays the default.
        ids: list[str] = []
        for channel in ("en", "es"):
            r = await http.post(f"/api/channels/{channel}/items", json={
                "text": "Second story",
                **({"translation_of": {"channel": "en", "id": ids[0]}} if ids else {})})
            ids.append(r.json()["id"])
            await folded(node, channel, ids[-1])
        r = await http.post(f"/api/channels/en/items/{ids[0]}/kill", json={"reason": "x"})
        assert "versions" not in r.json()
        await folded(node, "en", r.json()["cursor"])
        assert not node.runtime.hub.channels["es"].state.items[ids[1]].killed


async def test_two_nodes_fold_the_same_versions_and_a_reader_resumes_across_a_kill(
    redis_url: str, prefix: str, auth: dict[str, str]
) -> None:
    settings = make_settings(redis_url, prefix, channels=CHANNELS)
    async with running_server(settings) as a, running_server(settings) as b, \
            httpx.AsyncClient(base_url=a.http, headers=auth, timeout=TIMEOUT) as to_a, \
            httpx.AsyncClient(base_url=b.http, headers=auth, timeout=TIMEOUT) as to_b:
        en_id = (await to_a.post("/api/channels/en/items", json={"text": "Original"})).json()["id"]
        await folded(b, "en", en_id)
        # The translations go through the other node, as a second desk would.
        ar_id = (await to_b.post("/api/channels/ar/items", json={
            "text": "ترجمة", "translation_of": {"channel": "en", "id": en_id}})).json()["id"]
        await folded(a, "ar", ar_id)
        es_id = (await to_a.post("/api/channels/es/items", json={
            "text": "Traducción", "translation_of": {"channel": "en", "id": en_id}})).json()["id"]
        for node in (a, b):
            await folded(node, "es", es_id)
        expected = {"ar": ar_id, "en": en_id, "es": es_id}
        for channel, item_id in expected.items():
            assert item_of(a, channel, item_id) == item_of(b, channel, item_id)
            assert item_of(a, channel, item_id)["versions"] == expected

        # A reader of es on node b, which goes away before the kill...
        async with websockets.connect(b.ws("es")) as ws:
            cursor = (await recv_json(ws))["cursor"]
        r = await to_a.post(f"/api/channels/ar/items/{ar_id}/kill",
                            json={"reason": "wrong", "all_versions": True})
        assert [v["channel"] for v in r.json()["versions"]] == ["en", "es"]
        es_kill = r.json()["versions"][1]["cursor"]
        await folded(a, "es", es_kill)
        # ...comes back to node a with its cursor: exactly the kill it missed.
        async with websockets.connect(a.ws("es", cursor)) as ws:
            frame = await recv_json(ws)
        assert frame["type"] == "events" and frame["missed"] == 1
        assert frame["events"] == [{"op": "kill", "cursor": es_kill, "id": es_id}]


async def test_the_cli_posts_a_version_refuses_bad_links_and_kills_every_version(
    node: Server, redis_url: str, prefix: str
) -> None:
    async def cli(*args: str) -> Any:
        return await ticker(redis_url, prefix, *args, channels=CHANNELS)

    done = await cli("post", "--channel", "en", "--urgency", "flash", "Drones toward Eilat")
    assert done.returncode == 0, done.stderr
    en_id = done.stdout.strip()
    done = await cli("post", "--channel", "ar", "--translation-of", f"en:{en_id}", "مسيّرات")
    assert done.returncode == 0, done.stderr
    ar_id = done.stdout.strip()
    await folded(node, "ar", ar_id)
    assert item_of(node, "en", en_id)["versions"] == {"ar": ar_id, "en": en_id}

    for channel, link, why in (("ar", f"en:{en_id}", "already has a ar version"),
                               ("es", "en:1-0", "no item 1-0"),
                               ("es", f"ar:{ar_id}", "is itself a version"),
                               ("es", "xx", "<channel>:<item id>")):
        done = await cli("post", "--channel", channel, "--translation-of", link, "again")
        assert done.returncode == 2 and why in done.stderr, done.stderr

    done = await cli("kill", ar_id, "--channel", "ar", "--reason", "wrong", "--all-versions")
    assert done.returncode == 0, done.stderr
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    assert [(c, i) for c, i, _ in lines] == [("ar", ar_id), ("en", en_id)]
    await folded(node, "en", lines[1][2])
    assert node.runtime.hub.channels["en"].state.items[en_id].killed
    assert node.runtime.hub.channels["ar"].state.items[ar_id].killed
    done = await cli("kill", ar_id, "--channel", "ar", "--reason", "x", "--all-versions")
    assert done.returncode == 2 and "no item" in done.stderr


async def test_the_desk_queue_translations_corrections_and_kills_are_audited(
    node: Server, redis: Redis, prefix: str
) -> None:
    await add_user(redis, prefix, "maria", "editor")
    await add_user(redis, prefix, "layla", "editor")
    maria, layla = await Desk.sign_in(node, "maria"), await Desk.sign_in(node, "layla")
    try:
        (flash,) = await maria.publish("Flash: drones toward Eilat", ["en"], urgency="flash")
        (plain,) = await maria.publish("A breaking line nobody must translate", ["en"])

        def queue(state: dict[str, Any], edition: str) -> list[str]:
            channel = next(c for c in state["channels"] if c["name"] == edition)
            return [q["id"] for q in channel["to_translate"]]

        state = await layla.state()
        assert queue(state, "ar") == [flash] and queue(state, "es") == [flash]
        assert queue(state, "en") == []

        # Translated into ar through the desk: it leaves ar's queue, not es's.
        r = await layla.post("/desk/api/items", {
            "text": "عاجل: مسيّرات نحو إيلات", "channels": ["ar"], "urgency": "flash",
            "translation_of": {"channel": "en", "id": flash}})
        assert r.status_code == 201, r.text
        (ar_row,) = r.json()["items"]
        state = await layla.state()
        assert queue(state, "ar") == [] and queue(state, "es") == [flash]
        assert (await layla.item(ar_row["id"], "ar") or {})["versions"] == {
            "ar": ar_row["id"], "en": flash}
        r = await layla.post("/desk/api/items", {
            "text": "x", "channels": ["ar", "es"], "translation_of": {"channel": "en",
                                                                        "id": flash}})
        assert r.status_code == 422 and r.json()["field"] == "channels"

        # Dismissed for es: gone from es's queue, once (a repeat changes nothing).
        r = await layla.post("/desk/api/translate/es/dismiss", {"story": f"en:{flash}"})
        assert r.status_code == 201 and r.json()["duplicate"] is False
        r = await layla.post("/desk/api/translate/es/dismiss", {"story": f"en:{flash}"})
        assert r.status_code == 200 and r.json()["duplicate"] is True
        assert queue(await layla.state(), "es") == []
        for body, status, field in (({"story": "en:1-0"}, 404, "story"),
                                    ({"story": "nope"}, 422, "story"),
                                    ({"story": f"en:{flash}", "x": 1}, 422, "x"),
                                    ({"story": f"en:{plain}"}, 201, None)):
            r = await layla.post("/desk/api/translate/es/dismiss", body)
            assert r.status_code == status, r.text
            assert field is None or r.json()["field"] == field
        assert (await layla.post("/desk/api/translate/en/dismiss",
                                 {"story": f"en:{flash}"})).status_code == 422

        # A correction in en: the ar version needs an update until it is confirmed.
        r = await maria.op(flash, "correct", text="Flash: three drones toward Eilat")
        assert r.status_code == 201, r.text
        assert (await layla.item(ar_row["id"], "ar") or {})["needs_update"] == "en"
        assert (await layla.item(flash) or {})["needs_update"] is None
        r = await layla.op(ar_row["id"], "confirm", channel="ar")
        assert r.status_code == 201, r.text
        assert (await layla.item(ar_row["id"], "ar") or {})["needs_update"] is None

        # Kill in every edition from the desk: one audit entry per item, one reason.
        r = await maria.op(flash, "kill", reason="not confirmed", all_versions=True)
        assert r.status_code == 201, r.text
        assert [(v["channel"], v["id"]) for v in r.json()["versions"]] == [
            ("ar", ar_row["id"])]
        assert await layla.item(flash) is None and await layla.item(ar_row["id"], "ar") is None
        entries = (await maria.http.get("/desk/api/audit")).json()["entries"]
        kills = [(e["channel"], e["item"], e["reason"]) for e in entries
                 if e["action"] == "kill"]
        assert sorted(kills) == sorted([("en", flash, "not confirmed"),
                                        ("ar", ar_row["id"], "not confirmed")])
        actions = {(e["action"], e["user"]) for e in entries}
        assert {("dismiss", "layla"), ("confirm", "layla")} <= actions
        assert any(e["action"] == "publish" and f"version of en:{flash}" in e["detail"]
                   for e in entries)
    finally:
        await maria.close()
        await layla.close()

