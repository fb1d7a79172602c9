"""Session fixation, secrets kept out of the logs, and the security headers."""

from __future__ import annotations

import logging

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, make_settings, running_server
from tests.e2e.deskkit import PASSWORD, Desk, add_user, login_form
from ticker.newsroom.auth import SESSION_COOKIE


async def test_sign_in_never_adopts_a_planted_session(
    server: Server, redis: Redis, prefix: str
) -> None:
    await add_user(redis, prefix, "alice")
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as attacker, \
            httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as victim:
        # The attacker opens the sign-in form and plants its pre-auth cookie, its CSRF
        # nonce and a session id of their choosing in the victim's browser.
        nonce = await login_form(attacker)
        for name, value in attacker.cookies.items():
            victim.cookies.set(name, value)
        planted = "attacker-chosen-session-id"
        victim.cookies.set(SESSION_COOKIE, planted)
        r = await victim.post("/login", data={"username": "alice", "password": PASSWORD,
                                              "csrf": nonce},
                              headers={"Accept": "application/json"})
        assert r.status_code == 200, r.text
        issued = r.cookies[SESSION_COOKIE]
        assert issued != planted  # a fresh, unguessable session id at every sign-in
        fresh = httpx.Cookies({SESSION_COOKIE: issued})
        async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT,
                                     cookies=fresh) as signed_in:
            me = await signed_in.get("/desk/api/session")
        assert me.json()["user"] == "alice"
        # Everything the attacker holds opens nothing.
        attacker.cookies.set(SESSION_COOKIE, planted)
        assert (await attacker.get("/desk/api/session")).status_code == 401


async def test_secrets_never_reach_the_logs(
    redis_url: str, prefix: str, redis: Redis, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await add_user(redis, prefix, "alice")
    async with running_server(make_settings(redis_url, prefix, log_level="debug")) as server:
        async with httpx.AsyncClient(base_url=server.http) as http:
            auth = {"Authorization": f"Bearer {token}"}
            assert (await http.post("/api/channels/en/items", headers=auth,
                                    json={"text": "logged?"})).status_code == 201
            await http.post("/api/channels/en/items?token=" + token, headers=auth,
                            json={"text": "a token in a query string"})
            await http.post("/api/channels/en/items", json={"text": "x"},
                            headers={"Authorization": "Bearer tkr_wrong-" + PASSWORD})
        desk = await Desk.sign_in(server, "alice")
        cookie = desk.http.cookies[SESSION_COOKIE]
        await desk.publish("from the desk")
        await desk.close()
        wrong = httpx.AsyncClient(base_url=server.http)
        nonce = await login_form(wrong)
        await wrong.post("/login", data={"username": "alice", "password": "hunter2-wrong",
                                         "csrf": nonce})
        await wrong.aclose()
    # What the server wrote (the test's own HTTP client logs its requests too).
    logged = "\n".join(r.getMessage() for r in caplog.records
                       if r.name.split(".")[0] in ("ticker", "uvicorn", "websockets", "redis"))
    for secret in (token, PASSWORD, "hunter2-wrong", cookie, "tkr_wrong-"):
        assert secret not in logged, f"a secret reached the log: {secret[:8]}..."
    assert len(caplog.records) > 0  # the log was on at debug level


async def test_security_headers_on_every_page(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.http) as http:
        for path in ("/", "/login", "/static/ticker.js", "/api/channels", "/nothing"):
            r = await http.get(path)
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
            assert "frame-ancestors 'self'" in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "SAMEORIGIN"


async def test_frame_ancestors_is_configurable_for_embedding(
    redis_url: str, prefix: str
) -> None:
    settings = make_settings(redis_url, prefix,
                             frame_ancestors="'self' https://partner.example")
    async with running_server(settings) as server, \
            httpx.AsyncClient(base_url=server.http) as http:
        r = await http.get("/")
        assert "frame-ancestors 'self' https://partner.example" in \
            r.headers["content-security-policy"]
        assert "x-frame-options" not in r.headers  # it cannot say "these origins"
