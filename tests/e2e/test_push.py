"""Web Push end to end (docs/push.md): real Redis, real ticker nodes and a local push service
that checks every VAPID JWT and decrypts every payload as a browser would. Every push
endpoint is on 127.0.0.1, allowed by TICKER_PUSH_ALLOW; nothing is sent anywhere else."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, make_settings, running_server
from tests.e2e.deskkit import Desk, add_user
from tests.e2e.pushservice import push_service
from ticker.core.push import topic
from ticker.node import push as node_push
from ticker.node.push import make_keys
from ticker.process.settings import Settings
from ticker.redis.keys import Keys
from ticker.redis.tokens import Tokens

CHANNELS = "en,ar:ar:rtl:عاجل,es:es:ltr:Última hora"
PAGE = "https://news.example/live"


def push_settings(redis_url: str, prefix: str, tmp_path: Path, **extra: Any) -> Settings:
    settings = make_settings(redis_url, prefix, channels=CHANNELS, push_allow="127.0.0.1",
                             push_key_file=str(tmp_path / "vapid.pem"), push_urgent="ar",
                             **extra)
    make_keys(settings)
    return settings


async def subscribe(server: Server, edition: str, subscription: dict[str, Any],
                    **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http) as http:
        return await http.post("/push/subscriptions", headers=headers, json={
            "edition": edition, "subscription": subscription, "page": PAGE})


async def publish(server: Server, token: str, channel: str, **body: Any) -> str:
    async with httpx.AsyncClient(base_url=server.http,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        r = await http.post(f"/api/channels/{channel}/items", json=body)
    assert r.status_code == 201, r.text
    item_id: str = r.json()["id"]
    return item_id


async def leader(*servers: Server) -> None:
    deadline = time.monotonic() + TIMEOUT * 2
    while not any(s.runtime.push.leader for s in servers):
        assert time.monotonic() < deadline, "no node took the push lease"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # its positions are read


async def test_a_flash_reaches_every_subscriber_once_encrypted_and_signed_and_a_kill_withdraws_it(
    redis: Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    token = await Tokens(redis, Keys(prefix)).create("push")
    settings = push_settings(redis_url, prefix, tmp_path)
    async with running_server(settings) as server, push_service() as service:
        async with httpx.AsyncClient(base_url=server.http) as http:
            key = (await http.get("/push/key")).json()
        assert key["publicKey"] == server.runtime.push.public_key
        assert key["editions"] == ["en", "ar", "es"]
        readers = [service.browser() for _ in range(3)]
        for b in readers:
            assert (await subscribe(server, "en", b.subscription())).status_code == 201
        again = await subscribe(server, "en", readers[0].subscription())
        assert again.status_code == 200  # the same browser again: refreshed, not doubled
        spanish = service.browser()
        assert (await subscribe(server, "es", spanish.subscription())).status_code == 201
        await leader(server)

        await publish(server, token, "en", text="A breaking line: not pushed")
        await publish(server, token, "en", text="An urgent line: not pushed in en",
                      urgency="urgent")
        flash = await publish(server, token, "en", text="Three drones toward Eilat",
                              source="Israeli media", urgency="flash",
                              link="https://news.example/drones")
        deliveries = await service.wait_for(3)
        assert sorted(d.token for d in deliveries) == sorted(b.token for b in readers)
        for d in deliveries:
            assert d.payload == {
                "type": "flash", "edition": "en", "lang": "en", "dir": "ltr",
                "title": "Breaking", "body": "Israeli media: Three drones toward Eilat",
                "id": flash, "tag": topic("en", flash), "url": "https://news.example/drones",
                "urgency": "flash"}
            assert d.headers["topic"] == topic("en", flash)
            assert 60 <= int(d.headers["ttl"]) <= 3600
            assert d.claims["aud"] == service.origin
            assert d.claims["sub"] == "mailto:newsroom@localhost"

        # Killed while its push may still be shown: withdrawn under the same Topic.
        async with httpx.AsyncClient(base_url=server.http,
                                     headers={"Authorization": f"Bearer {token}"}) as http:
            r = await http.post(f"/api/channels/en/items/{flash}/kill", json={"reason": "x"})
            assert r.status_code == 201
        withdrawn = (await service.wait_for(6))[3:]
        for d in withdrawn:
            assert d.payload["type"] == "withdrawn" and d.payload["tag"] == topic("en", flash)
            assert d.payload["body"] == "Withdrawn: Israeli media: Three drones toward Eilat"
            assert d.headers["topic"] == topic("en", flash)
        await asyncio.sleep(0.5)
        assert len(service.deliveries) == 6  # once each, nothing for es or the other lines
        assert server.runtime.push.counts["sent"] == 3
        assert server.runtime.push.counts["withdrawn"] == 3


async def test_a_line_from_the_desk_and_urgent_ones_where_the_edition_chose_it(
    redis: Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    await add_user(redis, prefix, "layla", "editor")
    async with running_server(push_settings(redis_url, prefix, tmp_path)) as server, \
            push_service() as service:
        arabic = service.browser()
        await subscribe(server, "ar", arabic.subscription())
        await leader(server)
        desk = await Desk.sign_in(server, "layla")
        try:
            # Urgent, on the Arabic desk: pushed, since TICKER_PUSH_URGENT includes ar.
            (item,) = await desk.publish("إطلاق مسيّرات نحو إيلات", ["ar"], urgency="urgent")
        finally:
            await desk.close()
        (d,) = await service.wait_for(1)
        assert d.payload["dir"] == "rtl" and d.payload["title"] == "عاجل"
        assert d.payload["url"] == PAGE  # no link: the page the reader subscribed on
        assert d.payload["id"] == item


async def test_expired_subscriptions_are_removed_and_busy_services_retried(
    redis: Redis, redis_url: str, prefix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_push, "RETRY_BASE", 0.05)
    token = await Tokens(redis, Keys(prefix)).create("push")

    async with running_server(push_settings(redis_url, prefix, tmp_path)) as server, \
            push_service() as service:
        gone, busy, fine = service.browser(), service.browser(), service.browser()

        def answer(tok: str, n: int) -> tuple[int, dict[str, str]]:
            if tok == gone.token:
                return 410, {}
            if tok == busy.token and n < 2:
                return (429, {"Retry-After": "0"}) if n == 0 else (503, {})
            return 201, {}

        service.answer = answer
        for b in (gone, busy, fine):
            await subscribe(server, "en", b.subscription())
        store = server.runtime.push.store
        assert await store.count("en") == 3
        await leader(server)
        await publish(server, token, "en", text="Flash one", urgency="flash")
        await service.wait_for(1, busy.token)
        await service.wait_for(1, fine.token)
        assert [d.status for d in service.deliveries if d.token == busy.token] == [429, 503, 201]
        deadline = time.monotonic() + TIMEOUT
        while await store.count("en") != 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await publish(server, token, "en", text="Flash two", urgency="flash")
        await service.wait_for(2, fine.token)
        assert len([d for d in service.deliveries if d.token == gone.token]) == 1
        assert server.runtime.push.counts["expired"] == 1


async def test_two_nodes_push_each_subscription_once_per_item(
    redis: Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    token = await Tokens(redis, Keys(prefix)).create("push")
    settings = push_settings(redis_url, prefix, tmp_path)
    async with running_server(settings) as a, running_server(settings) as b, \
            push_service() as service:
        readers = [service.browser() for _ in range(5)]
        for n, reader in enumerate(readers):
            await subscribe(a if n % 2 else b, "en", reader.subscription())
        await leader(a, b)
        items = [await publish(a if n % 2 else b, token, "en", text=f"Flash {n}",
                               urgency="flash") for n in range(4)]
        await service.wait_for(20)
        await asyncio.sleep(1.0)
        assert len(service.deliveries) == 20
        for reader in readers:
            got = [d.payload["id"] for d in service.deliveries if d.token == reader.token]
            assert got == items  # once each, in order
        assert sorted([a.runtime.push.leader, b.runtime.push.leader]) == [False, True]


async def test_subscriptions_are_checked_capped_and_only_from_allowed_origins(
    redis: Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    settings = push_settings(redis_url, prefix, tmp_path, push_rate=3)
    async with running_server(settings) as server, push_service() as service:
        good = service.browser().subscription()
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"edition": "fr", "subscription": good}, 422, "edition"),
            ({"edition": "en", "subscription": "x"}, 422, "subscription"),
            ({"edition": "en", "subscription": {**good, "endpoint": "http://push.example/x"}},
             422, "endpoint"),
            ({"edition": "en", "subscription": {**good, "endpoint": "https://10.0.0.1/x"}},
             422, "endpoint"),
            ({"edition": "en", "subscription": {**good,
                                               "endpoint": "https://169.254.169.254/x"}},
             422, "endpoint"),
            ({"edition": "en", "subscription": {**good, "keys": {"p256dh": "AAAA",
                                                                "auth": "AAAA"}}},
             422, "keys"),
            ({"edition": "en", "subscription": {**good, "keys": "nope"}}, 422, "keys"),
            ({"edition": "en", "subscription": good, "page": "javascript:alert(1)"}, 422,
             "page"),
            ({"edition": "en", "subscription": good, "extra": 1}, 422, "extra"),
        ]
        async with httpx.AsyncClient(base_url=server.http) as http:
            for body, status, field in cases:
                r = await http.post("/push/subscriptions", json=body)
                assert r.status_code == status, (body, r.text)
                assert r.json()["field"] == field, (body, r.text)
            r = await http.post("/push/subscriptions", json={"edition": "en",
                                                             "subscription": good},
                                headers={"Origin": "https://evil.example"})
            assert r.status_code == 403
            r = await http.options("/push/subscriptions",
                                   headers={"Origin": "https://evil.example",
                                            "Access-Control-Request-Method": "POST"})
            assert "access-control-allow-origin" not in r.headers
            for _ in range(3):
                b = service.browser().subscription()
                r = await http.post("/push/subscriptions", json={"edition": "en",
                                                                 "subscription": b})
                assert r.status_code == 201, r.text
            r = await http.post("/push/subscriptions", json={
                "edition": "en", "subscription": service.browser().subscription()})
            assert r.status_code == 429 and r.headers["retry-after"] == "3600"
            # Unsubscribing needs no rate: the browser forgets, so do we.
            r = await http.request("DELETE", "/push/subscriptions",
                                   json={"edition": "en", "endpoint": b["endpoint"]})
            assert r.status_code == 200
            r = await http.request("DELETE", "/push/subscriptions",
                                   json={"edition": "en", "endpoint": b["endpoint"]})
            assert r.status_code == 404
        assert await server.runtime.push.store.count("en") == 2
        stored = await redis.hgetall(f"{prefix}:push:subs:en")
        for raw in stored.values():  # what is kept about a reader, and nothing more
            assert set(json.loads(raw)) == {"edition", "endpoint", "p256dh", "auth", "page",
                                            "created"}


async def test_push_is_off_without_keys(redis_url: str, prefix: str, tmp_path: Path) -> None:
    settings = make_settings(redis_url, prefix, push_key_file=str(tmp_path / "none.pem"))
    async with running_server(settings) as server, \
            httpx.AsyncClient(base_url=server.http) as http:
        r = await http.get("/push/key")
        assert r.status_code == 404 and "ticker push keys" in r.json()["message"]
        r = await http.post("/push/subscriptions", json={"edition": "en"})
        assert r.status_code == 404
        sw = await http.get("/ticker-sw.js")
        assert sw.status_code == 200 and "showNotification" in sw.text
        assert sw.headers["content-type"].startswith("text/javascript")
