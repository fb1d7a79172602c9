"""Webhooks end to end (docs/webhooks.md): real Redis, real ticker nodes (in process and as
`ticker serve` processes), and a real receiver on loopback that verifies every signature
with the `standardwebhooks` package. Every receiver is on 127.0.0.1 and allowed by
TICKER_WEBHOOK_ALLOW; nothing is ever sent anywhere else."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, make_settings, recv_json, running_server
from tests.e2e.fleet import ticker as ticker_process
from tests.e2e.receiver import Receiver, receiver
from tests.e2e.test_desk_cli import ticker as ticker_cli
from ticker.node import webhooks as node_webhooks
from ticker.redis.keys import Keys
from ticker.redis.tokens import Tokens

FAST = {"webhook_allow": "127.0.0.1", "webhook_retry_base": 0.05}


async def admin_token(redis: Redis, prefix: str) -> dict[str, str]:
    token = await Tokens(redis, Keys(prefix)).create("hooks-admin", admin=True)
    return {"Authorization": f"Bearer {token}"}


async def subscribe(server: Server, auth: dict[str, str], rec: Receiver,
                    **body: Any) -> str:
    async with httpx.AsyncClient(base_url=server.http, headers=auth) as http:
        r = await http.post("/api/webhooks", json={"url": rec.url, "channels": ["en"], **body})
    assert r.status_code == 201, r.text
    rec.secret = r.json()["secret"]
    assert rec.secret.startswith("whsec_")
    sub_id: str = r.json()["webhook"]["id"]
    return sub_id


async def publish(server: Server, auth: dict[str, str], text: str, channel: str = "en",
                  **extra: Any) -> str:
    async with httpx.AsyncClient(base_url=server.http, headers=auth) as http:
        r = await http.post(f"/api/channels/{channel}/items", json={"text": text, **extra})
    assert r.status_code == 201, r.text
    item_id: str = r.json()["id"]
    return item_id


async def test_a_flash_line_arrives_once_signed_as_a_websocket_reader_gets_it(
    redis: Redis, redis_url: str, prefix: str
) -> None:
    auth = await admin_token(redis, prefix)
    async with running_server(make_settings(redis_url, prefix, **FAST)) as server, \
            receiver() as rec, websockets.connect(server.ws("en")) as ws:
        await recv_json(ws)
        sub_id = await subscribe(server, auth, rec, urgencies=["flash"])
        await asyncio.sleep(0.3)  # the fan-out has taken its lease and positions
        await publish(server, auth, "A breaking line the subscription does not want")
        flash = await publish(server, auth, "Flash: drones toward Eilat", urgency="flash")
        (hit,) = await rec.wait_for(1)
        assert hit.verified
        assert hit.body["type"] == "item.published" and hit.body["channel"] == "en"
        # Exactly the event a websocket reader of en applied.
        events = []
        while len(events) < 2:
            events += (await recv_json(ws))["events"]
        wire = events[1]
        assert {k: v for k, v in hit.body.items() if k not in ("type", "channel")} == wire
        assert hit.body["item"]["id"] == flash
        assert hit.message_id.startswith(f"msg_{sub_id[3:]}_en_")
        # Its kill follows it (a kill event names only the id: the urgency is looked up).
        async with httpx.AsyncClient(base_url=server.http, headers=auth) as http:
            r = await http.post(f"/api/channels/en/items/{flash}/kill", json={"reason": "x"})
            assert r.status_code == 201
        hits = await rec.wait_for(2)
        assert hits[1].body == {"type": "item.killed", "channel": "en", "op": "kill",
                                "cursor": r.json()["cursor"], "id": flash}
        await asyncio.sleep(0.5)
        assert len(rec.hits) == 2 and all(h.verified for h in rec.hits)
        # What /metrics says of it.
        async with httpx.AsyncClient(base_url=server.http) as http:
            metrics = (await http.get("/metrics")).text
        assert f'ticker_webhook_sent_total{{subscription="{sub_id}",worker="0"}} 2.0' in metrics
        assert 'ticker_webhook_fanout_leader{worker="0"} 1.0' in metrics


async def test_a_failing_receiver_gets_the_same_id_again_then_the_rest_in_order(
    redis: Redis, redis_url: str, prefix: str
) -> None:
    auth = await admin_token(redis, prefix)

    def answer(n: int, mid: str) -> tuple[int, dict[str, str]]:
        # The first three attempts fail three ways a receiver fails: all are retried.
        return [(503, {}), (429, {"Retry-After": "0"}), (408, {})][n] if n < 3 else (200, {})

    async with running_server(make_settings(redis_url, prefix, **FAST)) as server, \
            receiver(answer=answer) as rec:
        await subscribe(server, auth, rec)
        await asyncio.sleep(0.3)
        ids = [await publish(server, auth, f"line {n}") for n in range(5)]
        hits = await rec.wait_for(5)
        assert [h.status for h in rec.hits[:4]] == [503, 429, 408, 200]
        assert len({h.message_id for h in rec.hits[:4]}) == 1  # one event, four attempts
        assert [h.body["item"]["id"] for h in hits] == ids  # and then the rest, in order
        assert len({h.message_id for h in hits}) == 5 and all(h.verified for h in rec.hits)


async def test_a_receiver_slower_than_the_timeout_is_given_up_on_and_retried(
    redis: Redis, redis_url: str, prefix: str
) -> None:
    auth = await admin_token(redis, prefix)
    settings = make_settings(redis_url, prefix, webhook_timeout=0.5, **FAST)
    async with running_server(settings) as server, receiver(delay=1.5) as rec:
        sub_id = await subscribe(server, auth, rec)
        await asyncio.sleep(0.3)
        item = await publish(server, auth, "slow receiver")
        deadline = time.monotonic() + TIMEOUT
        while not rec.hits:  # the first request, answered after the ticker stopped waiting
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        state = await server.runtime.newsroom.subscriptions.store.state(sub_id)
        assert state.attempts >= 1 and "within 0.5 s" in state.last_error
        rec.delay = 0.0
        await rec.wait_for(len(rec.hits) + 1)
        assert {h.message_id for h in rec.hits} == {rec.hits[0].message_id}
        assert all(h.body["item"]["id"] == item for h in rec.hits)


async def test_a_refusing_receiver_makes_a_dead_letter_an_admin_can_retry(
    redis: Redis, redis_url: str, prefix: str
) -> None:
    auth = await admin_token(redis, prefix)
    refuse = {"on": True}

    def answer(n: int, mid: str) -> tuple[int, dict[str, str]]:
        return (410, {}) if refuse["on"] else (200, {})

    async with running_server(make_settings(redis_url, prefix, **FAST)) as server, \
            receiver(answer=answer) as rec, \
            httpx.AsyncClient(base_url=server.http, headers=auth) as http:
        sub_id = await subscribe(server, auth, rec)
        await asyncio.sleep(0.3)
        first = await publish(server, auth, "refused")
        deadline = time.monotonic() + TIMEOUT
        while not (dead := (await http.get(f"/api/webhooks/{sub_id}/dead")).json()["dead"]):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert len(rec.hits) == 1  # a 4xx other than 408/429 is not retried
        assert dead[0]["status"] == "410" and json.loads(dead[0]["body"])["item"]["id"] == first
        refuse["on"] = False
        second = await publish(server, auth, "accepted")
        await rec.wait_for(1)
        r = await http.post(f"/api/webhooks/{sub_id}/dead/{dead[0]['id']}/retry")
        assert r.status_code == 202
        hits = await rec.wait_for(2)
        assert [h.body["item"]["id"] for h in hits] == [second, first]
        assert hits[1].message_id == rec.hits[0].message_id  # the same webhook-id
        described = (await http.get(f"/api/webhooks/{sub_id}")).json()["delivery"]
        assert (described["sent"], described["dead"], described["waiting"]) == (2, 1, 0)
        assert (await http.get(f"/api/webhooks/{sub_id}/dead")).json()["dead"] == []


@pytest.mark.slow
async def test_a_receiver_down_for_60_s_gets_everything_afterwards_in_order(
    redis: Redis, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_webhooks, "MAX_BACKOFF", 2.0)
    auth = await admin_token(redis, prefix)
    async with running_server(make_settings(redis_url, prefix, **FAST)) as server:
        async with receiver() as rec:
            await subscribe(server, auth, rec)
            await asyncio.sleep(0.3)
            ids = [await publish(server, auth, "before the outage")]
            await rec.wait_for(1)
        # Down: nothing listens on its port for 60 s, while the ticker goes on.
        started = time.monotonic()
        for n in range(10):
            ids.append(await publish(server, auth, f"during the outage {n}"))
            await asyncio.sleep(5.5)
        await asyncio.sleep(max(0.0, 60 - (time.monotonic() - started)))
        back = Receiver(port=rec.port, secret=rec.secret)
        await back.start()
        try:
            ids.append(await publish(server, auth, "after the outage"))
            hits = await back.wait_for(len(ids) - 1, timeout=30)
            assert [h.body["item"]["id"] for h in hits] == ids[1:]
            assert all(h.verified for h in back.hits)
        finally:
            await back.stop()


@pytest.mark.slow
async def test_a_node_killed_mid_delivery_loses_nothing(
    tmp_path: Path, redis: Redis, redis_url: str, prefix: str
) -> None:
    auth = await admin_token(redis, prefix)
    async with receiver(delay=1.0) as rec:
        with ticker_process(tmp_path, "a", redis_url=redis_url, key_prefix=prefix,
                            webhook_allow="127.0.0.1", webhook_retry_base=0.05) as a:
            async with httpx.AsyncClient(base_url=a.http, headers=auth) as http:
                r = await http.post("/api/webhooks", json={"url": rec.url, "channels": ["en"]})
                rec.secret = r.json()["secret"]
                await asyncio.sleep(1.5)  # the node's fan-out has its lease
                ids = []
                for n in range(6):
                    r = await http.post("/api/channels/en/items", json={"text": f"kill {n}"})
                    ids.append(r.json()["id"])
            deadline = time.monotonic() + TIMEOUT * 2
            while len(rec.hits) < 2:  # mid-delivery: an answer is 1 s away
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            os.kill(a.proc.pid, signal.SIGKILL)
            a.proc.wait()
        async with running_server(make_settings(redis_url, prefix, **FAST)):
            deadline = time.monotonic() + 40  # after the dead node's leases have run out
            while len({h.body["item"]["id"] for h in rec.accepted()}) < len(ids):
                assert time.monotonic() < deadline, [h.body["item"]["id"] for h in rec.hits]
                await asyncio.sleep(0.05)
        hits = rec.accepted()
        delivered = [h.body["item"]["id"] for h in hits]
        # At least once, in order: the event in flight at the kill may come twice, with
        # its id the same both times.
        assert list(dict.fromkeys(delivered)) == ids
        by_id: dict[str, set[str]] = {}
        for h in hits:
            by_id.setdefault(h.body["item"]["id"], set()).add(h.message_id)
        assert all(len(mids) == 1 for mids in by_id.values())
        assert all(h.verified for h in rec.hits)


async def test_two_nodes_send_each_event_once(
    redis: Redis, redis_url: str, prefix: str
) -> None:
    auth = await admin_token(redis, prefix)
    settings = make_settings(redis_url, prefix, **FAST)
    async with running_server(settings) as a, running_server(settings) as b, \
            receiver() as rec:
        await subscribe(a, auth, rec)
        await asyncio.sleep(1.5)
        ids = [await publish(a if n % 2 else b, auth, f"two nodes {n}") for n in range(30)]
        hits = await rec.wait_for(30)
        await asyncio.sleep(1.0)
        assert [h.body["item"]["id"] for h in rec.hits] == ids  # once each, in order
        leaders = [n.runtime.webhooks.fanout_leader for n in (a, b)]
        assert sorted(leaders) == [False, True]
        assert all(h.verified for h in hits)


async def test_an_internal_destination_that_is_not_allowed_is_never_called(
    redis: Redis, redis_url: str, prefix: str
) -> None:
    auth = await admin_token(redis, prefix)
    async with running_server(make_settings(redis_url, prefix, webhook_retry_base=0.05)) \
            as server, receiver() as rec, \
            httpx.AsyncClient(base_url=server.http, headers=auth) as http:
        sub_id = await subscribe(server, auth, rec)
        for url in (rec.url, rec.url.replace("127.0.0.1", "localhost")):
            await publish(server, auth, f"to {url}")
        deadline = time.monotonic() + TIMEOUT
        while len((await http.get(f"/api/webhooks/{sub_id}/dead")).json()["dead"]) < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        dead = (await http.get(f"/api/webhooks/{sub_id}/dead")).json()["dead"]
        assert "internal address" in dead[0]["error"]
        assert "TICKER_WEBHOOK_ALLOW" in dead[0]["error"]
        await asyncio.sleep(0.5)
        assert rec.hits == []  # nothing reached the receiver


async def test_hostile_subscriptions_get_clear_errors_and_only_admin_tokens_manage(
    redis: Redis, redis_url: str, prefix: str, server: Server
) -> None:
    auth = await admin_token(redis, prefix)
    publisher = {"Authorization": f"Bearer {await Tokens(redis, Keys(prefix)).create('pub')}"}
    async with httpx.AsyncClient(base_url=server.http) as http:
        assert (await http.get("/api/webhooks")).status_code == 401
        assert (await http.get("/api/webhooks", headers=publisher)).status_code == 403
        r = await http.post("/api/webhooks", headers=publisher,
                            json={"url": "https://x.example/h", "channels": ["en"]})
        assert r.status_code == 403
        cases: list[tuple[Any, str]] = [
            ({"url": "javascript:alert(1)", "channels": ["en"]}, "url"),
            ({"url": "ftp://x.example/h", "channels": ["en"]}, "url"),
            ({"url": "https://user:pw@x.example/h", "channels": ["en"]}, "url"),
            ({"url": "https://x.example/a b", "channels": ["en"]}, "url"),
            ({"url": "https://x.example/#frag", "channels": ["en"]}, "url"),
            ({"url": "https://" + "a" * 2000 + ".example/", "channels": ["en"]}, "url"),
            ({"url": "https:///nohost", "channels": ["en"]}, "url"),
            ({"url": "https://x.example/h", "channels": ["zz"]}, "channels"),
            ({"url": "https://x.example/h", "channels": []}, "channels"),
            ({"url": "https://x.example/h", "channels": "en"}, "channels"),
            ({"url": "https://x.example/h", "channels": ["en"], "urgencies": ["huge"]},
             "urgencies"),
            ({"url": "https://x.example/h", "channels": ["en"], "ops": ["explode"]}, "ops"),
            ({"url": "https://x.example/h", "channels": ["en"], "secret": "mine"}, "secret"),
            ({"channels": ["en"]}, "url"),
        ]
        for body, field in cases:
            r = await http.post("/api/webhooks", headers=auth, json=body)
            assert r.status_code == 422, (body, r.text)
            assert r.json()["field"] == field, (body, r.text)
        r = await http.post("/api/webhooks", content=b"[1,2]",
                            headers={**auth, "Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["field"] == "body", r.text
        assert (await http.get("/api/webhooks/wh_nope", headers=auth)).status_code == 404
        assert (await http.delete("/api/webhooks/../../x", headers=auth)).status_code == 404
        assert (await http.get("/api/webhooks", headers=auth)).json() == {"webhooks": []}


async def test_the_cli_manages_subscriptions_and_every_change_is_audited(
    redis: Redis, redis_url: str, prefix: str
) -> None:
    async with running_server(make_settings(redis_url, prefix, **FAST)) as server, \
            receiver() as rec:
        done = await ticker_cli(redis_url, prefix, "webhook", "add", rec.url, "--channel",
                                "en", "--urgency", "flash", "--by", "maria")
        assert done.returncode == 0, done.stderr
        rec.secret = done.stdout.strip()
        sub_id = done.stderr.strip().splitlines()[-1]
        assert rec.secret.startswith("whsec_") and "shown once" in done.stderr
        done = await ticker_cli(redis_url, prefix, "webhook", "list")
        assert sub_id in done.stdout and rec.url in done.stdout and "whsec_" not in done.stdout
        done = await ticker_cli(redis_url, prefix, "webhook", "test", sub_id)
        assert done.returncode == 0, done.stderr
        (hit,) = await rec.wait_for(1)
        assert hit.verified and hit.body["type"] == "webhook.test"
        done = await ticker_cli(redis_url, prefix, "webhook", "add", "ftp://x", "--channel",
                                "en")
        assert done.returncode == 2 and "url must start with https://" in done.stderr
        done = await ticker_cli(redis_url, prefix, "webhook", "remove", sub_id)
        assert done.returncode == 0 and "removed" in done.stdout
        done = await ticker_cli(redis_url, prefix, "webhook", "remove", sub_id)
        assert done.returncode == 2 and "no webhook" in done.stderr
        audit = await server.runtime.newsroom.audit.query(limit=20)
        seen = [(e.user, e.action, e.item) for e in audit.entries]
        assert ("maria", "webhook-add", sub_id) in seen
        assert ("cli", "webhook-test", sub_id) in seen
        assert ("cli", "webhook-remove", sub_id) in seen
        assert not any("whsec_" in json.dumps(e.public()) for e in audit.entries)
