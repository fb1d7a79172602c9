"""Webhooks on the desk over HTTP (docs/desk.md, docs/webhooks.md), against a real Redis,
uvicorn and a real receiver on loopback that verifies every signature: only admins, with a
session and the CSRF token, manage subscriptions; hostile input is a 422 naming the field
and stores nothing; unknown subscriptions and dead letters are 404s naming `id` or `dead`,
never a 500; every change is audited under the admin's name, never with the secret; a test
event and a retried dead letter arrive signed; an admin token made on the desk manages
`/api/webhooks` while a plain one is refused."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, make_settings, running_server
from tests.e2e.deskkit import Desk, add_user
from tests.e2e.receiver import receiver
from ticker.redis.keys import Keys

FAST = {"webhook_allow": "127.0.0.1", "webhook_retry_base": 0.05}
# A documentation address (RFC 5737): refused when sending, so nothing is ever sent to it;
# on `ar`, which these tests never publish to, it is never even tried.
NOWHERE = {"url": "https://192.0.2.10/hook", "channels": ["ar"]}
API = "/desk/api/webhooks"


@dataclass
class Scene:
    server: Server
    redis: Redis
    keys: Keys
    desks: dict[str, Desk]  # ada (admin), eve (editor), carl (contributor)


@pytest.fixture
async def scene(redis: Redis, redis_url: str, prefix: str) -> AsyncIterator[Scene]:
    people = {"ada": "admin", "eve": "editor", "carl": "contributor"}
    for name, role in people.items():
        await add_user(redis, prefix, name, role)
    async with running_server(make_settings(redis_url, prefix, **FAST)) as server:
        desks = {name: await Desk.sign_in(server, name) for name in people}
        try:
            yield Scene(server, redis, Keys(prefix), desks)
        finally:
            for desk in desks.values():
                await desk.close()


async def audit(scene: Scene) -> list[dict[str, str]]:
    """The desk-wide audit stream's webhook and token entries, oldest first."""
    entries: Any = await scene.redis.xrange(scene.keys.audit)
    rows = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]
    return [r for r in rows if r["action"].startswith(("webhook-", "token-"))]


async def footprint(scene: Scene) -> tuple[int, int]:
    return (await scene.redis.hlen(scene.keys.webhooks),
            await scene.redis.xlen(scene.keys.audit))


def refused(r: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["message"] and body.get("field") == field, body
    return body


async def add(desk: Desk, **body: Any) -> dict[str, Any]:
    r = await desk.post(API, {**NOWHERE, **body})
    assert r.status_code == 201, r.text
    answer: dict[str, Any] = r.json()
    return answer


async def wait_for(check: Any, what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while not (value := await check()):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)
    return value


async def test_only_admins_with_a_session_and_the_csrf_token_manage_webhooks(
    scene: Scene
) -> None:
    ada, eve, carl = (scene.desks[n] for n in ("ada", "eve", "carl"))
    made = await add(ada)
    hook = made["webhook"]
    assert made["secret"].startswith("whsec_")
    assert hook["url"] == NOWHERE["url"] and hook["channels"] == ["ar"]
    assert (hook["urgencies"], hook["ops"], hook["by"]) == ([], [], "ada")
    assert hook["delivery"]["sent"] == 0 and hook["delivery"]["retrying"] is False
    sub = hook["id"]
    dead = "1700000000000-0"
    reads = [f"{API}", f"{API}/{sub}/dead"]
    writes: list[tuple[str, dict[str, Any] | None]] = [
        (API, {"url": "https://192.0.2.11/x", "channels": ["ar"]}),
        (f"{API}/{sub}/test", None), (f"{API}/{sub}/dead/{dead}/retry", None),
        (f"{API}/{sub}/remove", None)]
    anonymous = httpx.AsyncClient(base_url=scene.server.http, timeout=TIMEOUT)
    try:
        before = await footprint(scene)
        for path in reads:
            assert (await anonymous.get(path)).status_code == 401, path
            for desk in (eve, carl):
                refused(await desk.http.get(path), 403)
            assert (await ada.http.get(path)).status_code == 200, path
        for path, body in writes:
            r = await anonymous.post(path, json=body, headers={"X-CSRF-Token": ada.csrf})
            assert r.status_code == 401, path
            for desk in (eve, carl):
                refused(await desk.post(path, body), 403)
            refused(await ada.http.post(path, json=body), 403, "csrf")  # no CSRF token
            refused(await ada.post(path, body, csrf="forged"), 403, "csrf")
            r = await ada.http.post(path, json=body, headers={
                "X-CSRF-Token": ada.csrf, "Sec-Fetch-Site": "cross-site"})
            assert r.status_code == 403, r.text
        assert await footprint(scene) == before  # nothing stored, nothing audited

        # The page: admins only; a signed-out visitor is sent to sign in and back.
        page = await ada.http.get("/desk/webhooks")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert f'data-id="{sub}"' in page.text and made["secret"] not in page.text
        assert (await eve.http.get("/desk/webhooks")).status_code == 403
        r = await anonymous.get("/desk/webhooks")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/desk/webhooks"
        for path in ("/desk", "/desk/audit", "/desk/people", "/desk/tokens", "/desk/settings"):
            assert 'href="/desk/webhooks"' in (await ada.http.get(path)).text, path
            assert 'href="/desk/webhooks"' not in (await eve.http.get(path)).text, path
    finally:
        await anonymous.aclose()

    listed = (await ada.http.get(API)).json()
    assert [h["id"] for h in listed["webhooks"]] == [sub]
    assert abs(listed["now"] - time.time() * 1000) < 60_000
    assert "secret" not in json.dumps(listed)


HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({"url": "javascript:alert(1)"}, "url"),
    ({"url": "ftp://x.example/feed"}, "url"),
    ({"url": "file:///etc/passwd"}, "url"),
    ({"url": "data:text/html,<script>alert(1)</script>"}, "url"),
    ({"url": "//x.example/hook"}, "url"),
    ({"url": "https://user:pw@x.example/hook"}, "url"),
    ({"url": "https://x.example/hook#part"}, "url"),
    ({"url": "https://x.example/<img src=x onerror=alert(1)>"}, "url"),
    ({"url": "https://x.example/\u00e9t\u00e9"}, "url"),
    ({"url": "https://x.example/" + "a" * 2000}, "url"),
    ({"url": ""}, "url"),
    ({"url": None}, "url"),
    ({"url": 5}, "url"),
    ({"url": ["https://x.example/"]}, "url"),
    ({"channels": ["fr"]}, "channels"),
    ({"channels": []}, "channels"),
    ({"channels": "ar"}, "channels"),
    ({"channels": [1]}, "channels"),
    ({"channels": None}, "channels"),
    ({"urgencies": ["catastrophic"]}, "urgencies"),
    ({"urgencies": "flash"}, "urgencies"),
    ({"ops": ["confirm"]}, "ops"),  # never sent to readers, so never to a webhook
    ({"ops": ["<script>"]}, "ops"),
    ({"secret": "whsec_chosen"}, "secret"),
    ({"by": "someone else"}, "by"),
]


async def test_hostile_input_is_refused_naming_the_field(scene: Scene) -> None:
    ada = scene.desks["ada"]
    before = await footprint(scene)
    wrong = []
    for change, field in HOSTILE:
        r = await ada.post(API, {**NOWHERE, **change})
        if r.status_code != 422 or r.json().get("field") != field:
            wrong.append(f"{change!r:.80}: {r.status_code} {r.text[:120]}")
    assert not wrong, "\n".join(wrong)
    assert await footprint(scene) == before


async def test_unknown_subscriptions_and_dead_letters_are_404s_and_bodies_are_checked(
    scene: Scene
) -> None:
    ada = scene.desks["ada"]
    sub = (await add(ada))["webhook"]["id"]
    for bad in ("wh_AAAAAAAAAAAAAAAA", "nope", "%3Cscript%3E", "wh_" + "x" * 300):
        refused(await ada.post(f"{API}/{bad}/test"), 404, "id")
        refused(await ada.post(f"{API}/{bad}/remove"), 404, "id")
        refused(await ada.http.get(f"{API}/{bad}/dead"), 404, "id")
        refused(await ada.post(f"{API}/{bad}/dead/1-0/retry"), 404, "id")
    for dead in ("1-0", "bogus", "-", "1-0-0", "9" * 20 + "-0", "%3Cb%3E", "1-" + "0" * 70):
        refused(await ada.post(f"{API}/{sub}/dead/{dead}/retry"), 404, "dead")
    # Bodies: JSON objects only, strictly; the writes without a body take none.
    r = await ada.http.post(API, content=b"{not json", headers={
        "X-CSRF-Token": ada.csrf, "Content-Type": "application/json"})
    refused(r, 400)
    r = await ada.http.post(API, content=b"url=x", headers={
        "X-CSRF-Token": ada.csrf, "Content-Type": "application/x-www-form-urlencoded"})
    refused(r, 415)
    refused(await ada.post(API, None), 415)
    refused(await ada.post(f"{API}/{sub}/test", {"urgent": True}), 422, "urgent")
    refused(await ada.post(f"{API}/{sub}/remove", {"really": True}), 422, "really")
    assert (await ada.http.get(f"{API}/{sub}/dead")).json() == {"dead": []}


async def test_a_subscription_made_on_the_desk_is_tested_dead_lettered_and_retried(
    scene: Scene
) -> None:
    ada = scene.desks["ada"]
    refuse = {"on": False}

    def answer(n: int, mid: str) -> tuple[int, dict[str, str]]:
        return (410, {}) if refuse["on"] else (204, {})

    async with receiver(answer=answer) as rec:
        made = await add(ada, url=rec.url, channels=["en"], urgencies=["flash"],
                         ops=["publish"])
        sub, rec.secret = made["webhook"]["id"], made["secret"]
        assert (made["webhook"]["urgencies"], made["webhook"]["ops"]) == (["flash"], ["publish"])

        # A test event arrives, signed with the secret the desk showed; the list says so.
        r = await ada.post(f"{API}/{sub}/test")
        assert r.status_code == 202 and r.json()["queued"].startswith(f"msg_{sub[3:]}_test_")
        (hit,) = await rec.wait_for(1)
        assert hit.verified and hit.body["type"] == "webhook.test"
        assert (hit.body["subscription"], hit.body["by"]) == (sub, "ada")

        async def delivery() -> dict[str, Any]:
            hooks = (await ada.http.get(API)).json()["webhooks"]
            found: dict[str, Any] = next(h for h in hooks if h["id"] == sub)["delivery"]
            return found

        async def sent() -> dict[str, Any] | None:
            d = await delivery()
            return d if d["sent"] == 1 else None
        assert (await wait_for(sent, "the test event counted as sent"))["waiting"] == 0

        # Refused with a 410: a dead letter with its event and item text, as data.
        await asyncio.sleep(0.3)  # the fan-out has its positions
        refuse["on"] = True
        text = "<script>alert(1)</script> Flash: \u0639\u0627\u062c\u0644 & more"
        item, = await ada.publish(text, urgency="flash")
        await ada.publish("A breaking line it does not follow")

        async def dead_letters() -> list[dict[str, Any]]:
            r = await ada.http.get(f"{API}/{sub}/dead")
            assert r.status_code == 200, r.text
            rows: list[dict[str, Any]] = r.json()["dead"]
            return rows
        letter, = await wait_for(dead_letters, "a dead letter")
        assert {k: letter[k] for k in ("channel", "type", "item", "text", "error", "status",
                                       "attempts")} == {
            "channel": "en", "type": "item.published", "item": item, "text": text,
            "error": "HTTP 410", "status": 410, "attempts": 1}
        assert letter["gave_up"] >= letter["queued"] > 0
        assert letter["message_id"] == rec.hits[1].message_id
        d = await delivery()
        assert (d["dead"], d["last_error"], d["last_status"]) == (1, "HTTP 410", 410)

        # Retried once the receiver takes it: the same webhook-id, verified.
        refuse["on"] = False
        r = await ada.post(f"{API}/{sub}/dead/{letter['id']}/retry")
        assert r.status_code == 202, r.text
        hits = await rec.wait_for(2)
        assert hits[1].message_id == letter["message_id"] and hits[1].verified
        assert hits[1].body["item"]["text"] == text
        assert await dead_letters() == []
        refused(await ada.post(f"{API}/{sub}/dead/{letter['id']}/retry"), 404, "dead")

        r = await ada.post(f"{API}/{sub}/remove")
        assert r.status_code == 200 and r.json() == {"id": sub, "removed": True}
        refused(await ada.post(f"{API}/{sub}/test"), 404, "id")
        assert (await ada.http.get(API)).json()["webhooks"] == []

    # Each change in the audit trail, under ada's name; the secret in none of them.
    entries = await audit(scene)
    assert [(e["user"], e["action"], e.get("item")) for e in entries] == [
        ("ada", "webhook-add", sub), ("ada", "webhook-test", sub),
        ("ada", "webhook-retry", sub), ("ada", "webhook-remove", sub)]
    assert entries[0]["detail"] == f"{rec.url} for en; urgencies flash; ops publish"
    assert entries[2]["detail"] == letter["id"]
    assert made["secret"] not in json.dumps(entries)


async def test_an_admin_token_made_on_the_desk_manages_webhooks_and_a_plain_one_may_not(
    scene: Scene
) -> None:
    ada = scene.desks["ada"]
    r = await ada.post("/desk/api/tokens", {"name": "hooks", "admin": True})
    assert r.status_code == 201 and r.json()["admin"] is True, r.text
    admin_token = r.json()["token"]
    r = await ada.post("/desk/api/tokens", {"name": "wire"})
    assert r.status_code == 201 and r.json()["admin"] is False
    plain_token = r.json()["token"]
    refused(await ada.post("/desk/api/tokens", {"name": "odd", "admin": "yes"}), 422, "admin")
    refused(await scene.desks["eve"].post("/desk/api/tokens", {"name": "x", "admin": True}),
            403)

    listed = (await ada.http.get("/desk/api/tokens")).json()["tokens"]
    assert [(t["name"], t["admin"]) for t in listed] == [("hooks", True), ("wire", False)]
    assert all(isinstance(t["created"], int) and t["created"] > 0 for t in listed)
    page = (await ada.http.get("/desk/tokens")).text
    assert page.count('<td class="kind" data-admin="true">Publishing and webhooks</td>') == 1
    assert page.count('<td class="kind" data-admin="false">Publishing</td>') == 2  # + blank
    assert admin_token not in page and plain_token not in page

    entries = await audit(scene)
    assert [(e["user"], e["action"], e["detail"]) for e in entries] == [
        ("ada", "token-create", "hooks (admin token: may manage webhooks)"),
        ("ada", "token-create", "wire")]

    async with httpx.AsyncClient(base_url=scene.server.http, timeout=TIMEOUT) as http:
        as_admin = {"Authorization": f"Bearer {admin_token}"}
        as_plain = {"Authorization": f"Bearer {plain_token}"}
        r = await http.post("/api/webhooks", json=NOWHERE, headers=as_admin)
        assert r.status_code == 201, r.text
        sub = r.json()["webhook"]["id"]
        assert (await http.get("/api/webhooks", headers=as_admin)).status_code == 200
        # A dead letter's id Redis would refuse is a 404 over the API too, not a 503.
        refused(await http.post(f"/api/webhooks/{sub}/dead/bogus/retry", headers=as_admin),
                404, "dead")
        for call in (http.get("/api/webhooks", headers=as_plain),
                     http.post("/api/webhooks", json=NOWHERE, headers=as_plain),
                     http.delete(f"/api/webhooks/{sub}", headers=as_plain),
                     http.post(f"/api/webhooks/{sub}/test", headers=as_plain)):
            refused(await call, 403)
        # The plain token still publishes; the admin one's subscription is on the desk.
        r = await http.post("/api/channels/en/items", json={"text": "Wire line"},
                            headers=as_plain)
        assert r.status_code == 201
    hooks = (await ada.http.get(API)).json()["webhooks"]
    assert [(h["id"], h["by"]) for h in hooks] == [(sub, "hooks")]
