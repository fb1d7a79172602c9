"""Signing in and out: the cookies, CSRF on the form, ended sessions, the rate limits, and no
way to tell an unknown user from a wrong password."""

from __future__ import annotations

import time
from http.cookies import SimpleCookie

import httpx
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, make_settings, running_server
from tests.e2e.deskkit import PASSWORD, Desk, add_user, login_form, post_login
from ticker.newsroom.signin_limits import account_key
from ticker.newsroom.users import Users
from ticker.redis.keys import Keys


def cookie_attrs(response: httpx.Response, name: str) -> dict[str, str]:
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if name in jar:
            morsel = jar[name]
            attrs = {k.lower(): str(v) for k, v in morsel.items() if v}
            attrs["value"] = morsel.value
            attrs["raw"] = header.lower()
            return attrs
    raise AssertionError(f"no Set-Cookie for {name}")


async def test_sign_in_sets_a_signed_httponly_samesite_cookie_and_opens_the_desk(
    server: Server, redis: Redis, prefix: str
) -> None:
    await add_user(redis, prefix, "alice")
    async with httpx.AsyncClient(base_url=server.http) as http:
        r = await http.get("/login")
        assert r.status_code == 200 and 'name="csrf"' in r.text
        assert r.headers["cache-control"] == "no-store"
        form_cookie = cookie_attrs(r, "ticker_login")
        assert "httponly" in form_cookie["raw"] and "samesite=lax" in form_cookie["raw"]
        nonce = await login_form(http)
        r = await http.post("/login", data={"username": "alice", "password": PASSWORD,
                                            "csrf": nonce})
        assert r.status_code == 303 and r.headers["location"] == "/desk"
        session = cookie_attrs(r, "ticker_session")
        assert "httponly" in session["raw"] and "samesite=lax" in session["raw"]
        assert "path=/" in session["raw"] and "secure" not in session["raw"]
        assert session["value"].count(".") == 2  # itsdangerous: value.timestamp.signature
        page = await http.get("/desk")
        assert page.status_code == 200 and "<b>alice</b>" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        # A tampered cookie is just not signed in.
        http.cookies.set("ticker_session", session["value"][:-3] + "abc")
        assert (await http.get("/desk/api/state")).status_code == 401


async def test_the_cookie_is_secure_behind_an_https_proxy_we_trust_only(
    server: Server, redis: Redis, prefix: str, redis_url: str
) -> None:
    await add_user(redis, prefix, "alice")
    async with httpx.AsyncClient(base_url=server.http) as http:
        r = await post_login(http, "alice", PASSWORD, **{"X-Forwarded-Proto": "https"})
        assert r.status_code == 200
        assert "secure" in cookie_attrs(r, "ticker_session")["raw"]
    untrusting = make_settings(redis_url, prefix, trusted_proxies="")
    async with running_server(untrusting) as other, \
            httpx.AsyncClient(base_url=other.http) as http:
        r = await post_login(http, "alice", PASSWORD, **{"X-Forwarded-Proto": "https"})
        assert r.status_code == 200
        assert "secure" not in cookie_attrs(r, "ticker_session")["raw"]


async def test_wrong_password_and_unknown_user_look_the_same(
    server: Server, redis: Redis, prefix: str
) -> None:
    await add_user(redis, prefix, "alice")
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        await post_login(http, "nobody", "warming the dummy hash")
        answers = []
        for name in ("alice", "nobody", "alice", "nobody"):
            started = time.perf_counter()
            r = await post_login(http, name, "not the password")
            answers.append((r.status_code, r.text, time.perf_counter() - started))
        assert {a[:2] for a in answers} == {
            (401, '{"error":"unauthorized","message":"Wrong user name or password."}')}
        known = min(answers[0][2], answers[2][2])
        unknown = min(answers[1][2], answers[3][2])
        assert 0.25 < unknown / known < 4.0, (known, unknown)  # a skipped verify: ~100x
        # The HTML form says the same, and keeps what was typed (escaped).
        nonce = await login_form(http)
        r = await http.post("/login", data={"username": "<b>x</b>", "password": "nope",
                                            "csrf": nonce})
        assert r.status_code == 401
        assert "Wrong user name or password." in r.text
        assert 'value="&lt;b&gt;x&lt;/b&gt;"' in r.text and "<b>x</b>" not in r.text


async def test_a_disabled_user_cannot_sign_in_and_gets_the_same_answer(
    server: Server, redis: Redis, prefix: str
) -> None:
    await add_user(redis, prefix, "alice")
    await Users(redis, Keys(prefix)).set_disabled("alice", True)
    async with httpx.AsyncClient(base_url=server.http) as http:
        r = await post_login(http, "alice", PASSWORD)
        assert r.status_code == 401 and r.json()["message"] == "Wrong user name or password."


async def test_the_sign_in_form_needs_its_csrf_token_and_its_fields(
    server: Server, redis: Redis, prefix: str
) -> None:
    await add_user(redis, prefix, "alice")
    async with httpx.AsyncClient(base_url=server.http) as http:
        json = {"Accept": "application/json"}
        r = await http.post("/login", data={"username": "alice", "password": PASSWORD},
                            headers=json)
        assert r.status_code == 403 and r.json()["field"] == "csrf"
        nonce = await login_form(http)
        r = await http.post("/login", data={"username": "alice", "password": PASSWORD,
                                            "csrf": nonce + "x"}, headers=json)
        assert r.status_code == 403
        # the HTML answer is a fresh form with the message, not a dead end
        r = await http.post("/login", data={"username": "alice", "password": PASSWORD,
                                            "csrf": "nope"})
        assert r.status_code == 403 and "expired or came from another site" in r.text
        nonce = await login_form(http)
        r = await http.post("/login", data={"username": "", "password": PASSWORD,
                                            "csrf": nonce}, headers=json)
        assert r.status_code == 422 and r.json()["field"] == "username"
        r = await http.post("/login", data={"username": "alice", "password": "",
                                            "csrf": nonce})
        assert r.status_code == 422
        assert 'id="password-error">Enter your password.</p>' in r.text
        r = await http.post("/login", data={"username": "alice", "password": "x",
                                            "csrf": nonce, "admin": "1"}, headers=json)
        assert r.status_code == 422 and r.json()["field"] == "admin"
        r = await http.post("/login", content=b'{"username": "alice"}',
                            headers={"Content-Type": "application/json"})
        assert r.status_code == 415
        r = await http.get("/login", params={"next": "//evil.example/desk"})
        assert r.status_code == 422 and r.json()["field"] == "next"
        r = await http.get("/login", params={"next": "https://evil.example"})
        assert r.status_code == 422
        r = await http.get("/login", params={"colour": "red"})
        assert r.status_code == 422 and r.json()["field"] == "colour"
        nonce = await login_form(http)
        r = await http.post("/login", data={"username": "alice", "password": PASSWORD,
                                            "csrf": nonce, "next": "/desk/audit"})
        assert r.status_code == 303 and r.headers["location"] == "/desk/audit"


async def test_sign_out_ends_the_session_even_for_a_copied_cookie(
    server: Server, redis: Redis, prefix: str
) -> None:
    await add_user(redis, prefix, "alice")
    desk = await Desk.sign_in(server, "alice")
    copied = httpx.AsyncClient(base_url=server.http, cookies=desk.http.cookies)
    try:
        assert (await copied.get("/desk/api/state")).status_code == 200
        r = await desk.http.post("/logout", data={"csrf": "forged"})
        assert r.status_code == 403  # a cross-site form cannot sign editors out
        r = await desk.http.post("/logout", data={"csrf": desk.csrf})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        assert cookie_attrs(r, "ticker_session")["value"] in ("", '""')
        assert (await copied.get("/desk/api/state")).status_code == 401
        assert (await copied.get("/desk")).status_code == 303
        # signing out twice is fine
        r = await copied.post("/logout", data={"csrf": desk.csrf})
        assert r.status_code == 303
    finally:
        await copied.aclose()
        await desk.close()


async def test_passwd_and_disable_end_open_sessions(
    server: Server, redis: Redis, prefix: str
) -> None:
    await add_user(redis, prefix, "alice")
    await add_user(redis, prefix, "bob")
    alice, bob = await Desk.sign_in(server, "alice"), await Desk.sign_in(server, "bob")
    try:
        users = Users(redis, Keys(prefix))
        await users.set_password("alice", "an entirely new passphrase")
        await users.set_disabled("bob", True)
        for desk in (alice, bob):
            assert (await desk.http.get("/desk/api/state")).status_code == 401
            r = await desk.post("/desk/api/items", {"text": "still here?", "channels": ["en"]})
            assert r.status_code == 401
        fresh = await Desk.sign_in(server, "alice", "an entirely new passphrase")
        assert (await fresh.http.get("/desk/api/state")).status_code == 200
        await fresh.close()
    finally:
        await alice.close()
        await bob.close()


async def test_failed_sign_ins_lock_the_account_for_everyone_with_a_clear_message(
    redis: Redis, prefix: str, redis_url: str
) -> None:
    settings = make_settings(redis_url, prefix, login_limit_account=3, login_limit_ip=100,
                             login_window=60)
    await add_user(redis, prefix, "alice")
    await add_user(redis, prefix, "bob")
    async with running_server(settings) as server, \
            httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        for n in range(3):
            r = await post_login(http, "alice", f"guess {n}",
                                 **{"X-Forwarded-For": f"198.51.100.{n}"})
            assert r.status_code == 401
        # Locked now, even with the right password and from another address.
        r = await post_login(http, "alice", PASSWORD, **{"X-Forwarded-For": "198.51.100.99"})
        assert r.status_code == 429
        assert r.json()["message"].startswith("Too many failed sign-ins for this account.")
        assert 0 < int(r.headers["retry-after"]) <= 60
        # The HTML form shows the same message.
        nonce = await login_form(http)
        page = await http.post("/login", data={"username": "alice", "password": PASSWORD,
                                               "csrf": nonce})
        assert page.status_code == 429 and "Too many failed sign-ins" in page.text
        # Other accounts are not affected.
        assert (await post_login(http, "bob", PASSWORD)).status_code == 200
        # Unknown names lock the same way: no telling which accounts exist.
        for n in range(3):
            assert (await post_login(http, "ghost", f"guess {n}")).status_code == 401
        r = await post_login(http, "ghost", PASSWORD)
        assert r.status_code == 429 and "for this account" in r.json()["message"]
        # The window ends, the account opens again.
        await redis.delete(Keys(prefix).login_limit("account", account_key("alice")))
        assert (await post_login(http, "alice", PASSWORD)).status_code == 200


async def test_failed_sign_ins_from_one_address_lock_that_address(
    redis: Redis, prefix: str, redis_url: str
) -> None:
    settings = make_settings(redis_url, prefix, login_limit_account=100, login_limit_ip=4,
                             login_window=60)
    await add_user(redis, prefix, "alice")
    async with running_server(settings) as server, \
            httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        attacker = {"X-Forwarded-For": "203.0.113.7"}
        for n in range(4):
            r = await post_login(http, f"user{n}", "guess", **attacker)
            assert r.status_code == 401
        r = await post_login(http, "alice", PASSWORD, **attacker)
        assert r.status_code == 429
        assert r.json()["message"].startswith("Too many failed sign-ins from your network.")
        # Someone else, elsewhere, signs in fine.
        r = await post_login(http, "alice", PASSWORD, **{"X-Forwarded-For": "203.0.113.8"})
        assert r.status_code == 200
        # A successful sign-in does not reset the address's count.
        r = await post_login(http, "alice", PASSWORD, **attacker)
        assert r.status_code == 429


async def test_a_session_made_on_one_node_works_on_another(
    redis: Redis, prefix: str, redis_url: str
) -> None:
    await add_user(redis, prefix, "alice")
    settings = make_settings(redis_url, prefix)
    async with running_server(settings) as one, running_server(settings) as two:
        desk = await Desk.sign_in(one, "alice")
        try:
            other = httpx.AsyncClient(base_url=two.http, cookies=desk.http.cookies)
            r = await other.post("/desk/api/items", json={"text": "from node two",
                                                          "channels": ["en"]},
                                 headers={"X-CSRF-Token": desk.csrf})
            assert r.status_code == 201, r.text
            await other.aclose()
        finally:
            await desk.close()
