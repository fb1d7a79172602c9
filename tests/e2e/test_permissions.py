"""Who may do what: each role (and no session, a disabled user, an ended session, a wrong or
missing CSRF token) against each state-changing desk route, and the reading routes."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, RedisServer, Server, make_settings, running_server
from tests.e2e.deskkit import PASSWORD, Desk, add_user
from ticker.newsroom.users import Users
from ticker.redis.connection import connect as redis_client
from ticker.redis.keys import Keys
from ticker.redis.tokens import Tokens

ROLES = ("contributor", "editor", "admin")
RANK = {"contributor": 1, "editor": 2, "admin": 3}


@dataclass
class World:
    server: Server
    redis: Redis
    prefix: str
    desks: dict[str, Desk]  # role -> signed-in client
    stale: dict[str, Desk]  # "disabled" / "ended" -> a client whose session no longer counts


@pytest.fixture(scope="module")
async def world(redis_server: RedisServer) -> AsyncIterator[World]:
    prefix = "perm" + uuid.uuid4().hex[:8]
    redis = redis_client(redis_server.url)
    async with running_server(make_settings(redis_server.url, prefix)) as server:
        for role in ROLES:
            await add_user(redis, prefix, role, role)
        await add_user(redis, prefix, "gone", "editor")
        await add_user(redis, prefix, "moved", "editor")
        await add_user(redis, prefix, "target", "editor")
        desks = {role: await Desk.sign_in(server, role) for role in ROLES}
        stale = {"disabled": await Desk.sign_in(server, "gone"),
                 "ended": await Desk.sign_in(server, "moved")}
        users = Users(redis, Keys(prefix))
        await users.set_disabled("gone", True)
        await users.set_password("moved", "a completely new passphrase")
        try:
            yield World(server, redis, prefix, desks, stale)
        finally:
            for desk in [*desks.values(), *stale.values()]:
                await desk.close()
    await redis.aclose()


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:6]}"


Setup = Callable[[World], Awaitable[tuple[str, dict[str, Any] | None]]]


async def publish_setup(w: World) -> tuple[str, dict[str, Any] | None]:
    return "/desk/api/items", {"text": unique("Line"), "channels": ["en"]}


def op_setup(op: str, before: tuple[str, ...] = (), **body: Any) -> Setup:
    async def setup(w: World) -> tuple[str, dict[str, Any] | None]:
        editor = w.desks["editor"]
        item, = await editor.publish(unique("Target line"))
        for prior in before:
            assert (await editor.op(item, prior)).status_code == 201
        return f"/desk/api/items/en/{item}/{op}", body
    return setup


def job_setup(action: str, kind: str) -> Setup:
    async def setup(w: World) -> tuple[str, dict[str, Any] | None]:
        desk = w.desks["contributor" if kind == "pending" else "editor"]
        body: dict[str, Any] = {"text": unique("Held back"), "channels": ["en"]}
        if kind == "scheduled":
            body["at"] = int(time.time() * 1000) + 3600_000
        r = await desk.post("/desk/api/items", body)
        assert r.status_code == 202, r.text
        return f"/desk/api/jobs/{r.json()['job']}/{action}", None
    return setup


def fixed(path: str, body: Callable[[], dict[str, Any] | None]) -> Setup:
    async def setup(w: World) -> tuple[str, dict[str, Any] | None]:
        return path, body()
    return setup


async def revoke_setup(w: World) -> tuple[str, dict[str, Any] | None]:
    name = "tok-" + uuid.uuid4().hex[:8]
    await Tokens(w.redis, Keys(w.prefix)).create(name)
    return f"/desk/api/tokens/{name}/revoke", None


def webhook_setup(action: str, dead: bool = False) -> Setup:
    """A subscription to a documentation address (refused when sending: nothing is ever sent)
    and, for a retry, one dead letter of it."""
    async def setup(w: World) -> tuple[str, dict[str, Any] | None]:
        subs = w.server.runtime.newsroom.subscriptions
        sub, _ = await subs.add("https://192.0.2.10/hook", ["ar"], [], ["kill"], by="setup")
        if dead:
            entry = await w.redis.xadd(Keys(w.prefix).webhook(sub.id, "dead"), {
                "mid": f"msg_{sub.id[3:]}_ar_1-0", "ch": "ar", "body": "{}", "at": "1",
                "error": "HTTP 410", "status": "410", "attempts": "1", "gave_up": "2"})
            dead_id = entry.decode() if isinstance(entry, bytes) else entry
            return f"/desk/api/webhooks/{sub.id}/dead/{dead_id}/{action}", None
        return f"/desk/api/webhooks/{sub.id}/{action}", None
    return setup


# route name -> (least role, setup, success statuses)
WRITES: dict[str, tuple[str, Setup, set[int]]] = {
    "publish": ("contributor", publish_setup, {201, 202}),
    "correct": ("editor", op_setup("correct", text="Corrected line"), {201}),
    "hold": ("editor", op_setup("hold"), {201}),
    "release": ("editor", op_setup("release", ("hold",)), {201}),
    "pin": ("editor", op_setup("pin"), {201}),
    "unpin": ("editor", op_setup("unpin", ("pin",)), {201}),
    "extend": ("editor", op_setup("extend", ttl=600), {201}),
    "kill": ("editor", op_setup("kill", reason="wrong"), {201}),
    "approve": ("editor", job_setup("approve", "pending"), {201}),
    "reject": ("editor", job_setup("reject", "pending"), {200}),
    "cancel-scheduled": ("editor", job_setup("cancel", "scheduled"), {200}),
    "user-add": ("admin", fixed("/desk/api/users", lambda: {
        "name": "u" + uuid.uuid4().hex[:8], "role": "editor", "password": PASSWORD}), {201}),
    "user-role": ("admin", fixed("/desk/api/users/target/role", lambda: {"role": "editor"}),
                  {200}),
    "user-enable": ("admin", fixed("/desk/api/users/target/enable", lambda: None), {200}),
    "user-passwd": ("admin", fixed("/desk/api/users/target/passwd",
                                   lambda: {"password": PASSWORD}), {200}),
    "user-lang": ("admin", fixed("/desk/api/users/target/lang", lambda: {"lang": "ar"}), {200}),
    "user-editions": ("admin", fixed("/desk/api/users/target/editions",
                                     lambda: {"editions": ["en"]}), {200}),
    "user-end-sessions": ("admin", fixed("/desk/api/users/target/end-sessions", lambda: None),
                          {200}),
    "prefs": ("contributor", fixed("/desk/api/me", lambda: {"lang": "es"}), {200}),
    "token-create": ("admin", fixed("/desk/api/tokens",
                                    lambda: {"name": "t" + uuid.uuid4().hex[:8]}), {201}),
    "token-revoke": ("admin", revoke_setup, {200}),
    "webhook-add": ("admin", fixed("/desk/api/webhooks", lambda: {
        "url": "https://192.0.2.10/" + uuid.uuid4().hex[:8], "channels": ["ar"]}), {201}),
    "webhook-test": ("admin", webhook_setup("test"), {202}),
    "webhook-remove": ("admin", webhook_setup("remove"), {200}),
    "webhook-retry": ("admin", webhook_setup("retry", dead=True), {202}),
}


async def footprint(w: World) -> tuple[int, ...]:
    keys = Keys(w.prefix)
    return (await w.redis.xlen(keys.stream("en")), await w.redis.hlen(keys.jobs),
            await w.redis.scard(keys.users), await w.redis.hlen(keys.tokens),
            await w.redis.xlen(keys.channel_audit("en")), await w.redis.hlen(keys.webhooks),
            await w.redis.xlen(keys.audit))


async def test_each_role_against_each_state_changing_route(world: World) -> None:
    wrong: list[str] = []
    anonymous = httpx.AsyncClient(base_url=world.server.http, timeout=TIMEOUT)
    editor = world.desks["editor"]
    try:
        for route, (least, setup, ok) in WRITES.items():
            callers: list[tuple[str, Callable[[str, dict[str, Any] | None],
                                              Awaitable[httpx.Response]], int]] = []
            for role in ROLES:
                desk = world.desks[role]
                expected = 0 if RANK[role] >= RANK[least] else 403
                callers.append((role, desk.post, expected))
            callers += [
                ("no session", lambda p, b: anonymous.post(
                    p, json=b, headers={"X-CSRF-Token": editor.csrf}), 401),
                ("disabled user", world.stale["disabled"].post, 401),
                ("ended session", world.stale["ended"].post, 401),
                ("wrong CSRF", lambda p, b: editor.post(p, b, csrf="forged-token"), 403),
                ("no CSRF", lambda p, b: editor.http.post(p, json=b), 403),
                ("cross-site", lambda p, b: editor.http.post(
                    p, json=b, headers={"X-CSRF-Token": editor.csrf,
                                        "Sec-Fetch-Site": "cross-site"}), 403),
            ]
            for who, call, expected in callers:
                path, body = await setup(world)
                before = await footprint(world)
                r = await call(path, body)
                allowed = expected == 0
                if allowed and r.status_code not in ok:
                    wrong.append(f"{route} as {who}: {r.status_code} {r.text[:120]}")
                elif not allowed:
                    if r.status_code != expected:
                        wrong.append(f"{route} as {who}: {r.status_code}, want {expected}")
                    elif await footprint(world) != before:
                        wrong.append(f"{route} as {who}: refused but something changed")
    finally:
        await anonymous.aclose()
    assert not wrong, "\n".join(wrong)


async def test_a_contributor_may_withdraw_only_their_own_submission(
    world: World, redis_server: RedisServer
) -> None:
    await add_user(world.redis, world.prefix, "other", "contributor")
    other = await Desk.sign_in(world.server, "other")
    try:
        mine = await world.desks["contributor"].post(
            "/desk/api/items", {"text": unique("Mine"), "channels": ["en"]})
        job = mine.json()["job"]
        r = await other.post(f"/desk/api/jobs/{job}/cancel")
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        r = await world.desks["contributor"].post(f"/desk/api/jobs/{job}/approve")
        assert r.status_code == 403
        r = await world.desks["contributor"].post(f"/desk/api/jobs/{job}/cancel")
        assert r.status_code == 200
    finally:
        await other.close()


READS = {
    "/desk/api/state": "contributor",
    "/desk/api/session": "contributor",
    "/desk/api/me": "contributor",
    "/desk/api/audit": "editor",
    "/desk/api/users": "admin",
    "/desk/api/tokens": "admin",
    "/desk/api/webhooks": "admin",
}


async def test_reading_routes_need_a_session_and_the_role(world: World) -> None:
    anonymous = httpx.AsyncClient(base_url=world.server.http, timeout=TIMEOUT)
    try:
        for path, least in READS.items():
            assert (await anonymous.get(path)).status_code == 401, path
            for stale in world.stale.values():
                assert (await stale.http.get(path)).status_code == 401, path
            for role in ROLES:
                r = await world.desks[role].http.get(path)
                want = 200 if RANK[role] >= RANK[least] else 403
                assert r.status_code == want, (path, role, r.text)
        # Pages: no session -> the sign-in page; a lower role -> 403.
        r = await anonymous.get("/desk")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/desk"
        r = await anonymous.get("/desk/audit")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/desk/audit"
        assert (await world.stale["disabled"].http.get("/desk")).status_code == 303
        assert (await world.desks["contributor"].http.get("/desk")).status_code == 200
        assert (await world.desks["contributor"].http.get("/desk/audit")).status_code == 403
        assert (await world.desks["editor"].http.get("/desk/audit")).status_code == 200
        for page, least in (("/desk/people", "admin"), ("/desk/tokens", "admin"),
                            ("/desk/webhooks", "admin"), ("/desk/settings", "contributor")):
            r = await anonymous.get(page)
            assert r.status_code == 303 and r.headers["location"] == f"/login?next={page}"
            for role in ROLES:
                want = 200 if RANK[role] >= RANK[least] else 403
                assert (await world.desks[role].http.get(page)).status_code == want, page
    finally:
        await anonymous.aclose()


async def test_an_admin_cannot_lock_themself_out(world: World) -> None:
    admin = world.desks["admin"]
    r = await admin.post("/desk/api/users/admin/disable")
    assert r.status_code == 409 and r.json()["field"] == "name"
    r = await admin.post("/desk/api/users/admin/role", {"role": "editor"})
    assert r.status_code == 409
    r = await admin.post("/desk/api/users/nobody/enable")
    assert r.status_code == 404 and r.json()["field"] == "name"
    r = await admin.post("/desk/api/users/target/launch")
    assert r.status_code == 404 and r.json()["field"] == "action"
    r = await admin.post("/desk/api/users", {"name": "x", "role": "owner",
                                             "password": PASSWORD})
    assert r.status_code == 422 and r.json()["field"] == "role"
    r = await admin.post("/desk/api/users", {"name": "y", "role": "editor", "password": 5})
    assert r.status_code == 422 and r.json()["field"] == "password"
    assert (await admin.http.get("/desk/api/state")).status_code == 200
