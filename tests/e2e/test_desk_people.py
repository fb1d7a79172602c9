"""People and preferences over HTTP, against a real Redis and uvicorn: each user's language
and default editions (set by an admin, by themself through /desk/api/me, or from the shell),
ending a user's sessions without touching the password, strict validation naming the field,
roles (403), an admin who cannot lock themself out (409), the audit trail, and the people,
tokens and settings pages with their 403 and sign-in redirects."""

from __future__ import annotations

import html
import re
import subprocess
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server
from tests.e2e.deskkit import PASSWORD, Desk, add_user, post_login
from tests.e2e.test_desk_cli import ticker
from ticker.desk import texts
from ticker.newsroom.users import Users
from ticker.redis.keys import Keys


@pytest.fixture
async def desks(server: Server, redis: Redis, prefix: str
                ) -> AsyncIterator[dict[str, Desk]]:
    """Signed-in desks: ada (admin), eve (editor), carl (contributor), omar (editor)."""
    people = {"ada": "admin", "eve": "editor", "carl": "contributor", "omar": "editor"}
    for name, role in people.items():
        await add_user(redis, prefix, name, role)
    desks = {name: await Desk.sign_in(server, name) for name in people}
    yield desks
    for desk in desks.values():
        await desk.close()


async def audit(redis: Redis, prefix: str) -> list[tuple[str, str, str]]:
    """(user, action, detail) of the desk-wide audit stream, oldest first."""
    entries: Any = await redis.xrange(Keys(prefix).audit)
    return [(f[b"user"].decode(), f[b"action"].decode(), f.get(b"detail", b"").decode())
            for _, f in entries]


async def users_of(desk: Desk) -> dict[str, dict[str, Any]]:
    r = await desk.http.get("/desk/api/users")
    assert r.status_code == 200, r.text
    return {u["name"]: u for u in r.json()["users"]}


def refused(r: httpx.Response, status: int, field: str | None) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body.get("field") == field and body["message"], body


async def test_an_admin_sets_language_and_editions_and_the_sessions_go_on(
    desks: dict[str, Desk], redis: Redis, prefix: str
) -> None:
    ada, omar = desks["ada"], desks["omar"]
    assert (await users_of(ada))["omar"] | {"created": 0, "updated": 0} == {
        "name": "omar", "role": "editor", "disabled": False, "created": 0, "updated": 0,
        "lang": "en", "editions": []}
    r = await ada.post("/desk/api/users/omar/lang", {"lang": " AR "})
    assert r.status_code == 200 and r.json()["user"]["lang"] == "ar", r.text
    # Kept in the configured order (en, ar), each once.
    r = await ada.post("/desk/api/users/omar/editions", {"editions": ["ar", "en", "ar"]})
    assert r.status_code == 200 and r.json()["user"]["editions"] == ["en", "ar"], r.text
    listed = (await users_of(ada))["omar"]
    assert (listed["lang"], listed["editions"]) == ("ar", ["en", "ar"])
    # omar is still signed in, and his session says so.
    r = await omar.http.get("/desk/api/session")
    assert r.status_code == 200
    assert (r.json()["lang"], r.json()["editions"]) == ("ar", ["en", "ar"])
    assert (await omar.http.get("/desk/api/me")).json()["user"]["lang"] == "ar"
    # An empty list is every edition again.
    r = await ada.post("/desk/api/users/omar/editions", {"editions": []})
    assert r.status_code == 200 and r.json()["user"]["editions"] == []
    assert (await omar.http.get("/desk/api/state")).status_code == 200
    assert (await audit(redis, prefix))[-3:] == [
        ("ada", "user-lang", "omar: language ar"),
        ("ada", "user-editions", "omar: default editions en, ar"),
        ("ada", "user-editions", "omar: default editions all"),
    ]


async def test_bad_preferences_are_refused_naming_the_field_and_change_nothing(
    desks: dict[str, Desk], redis: Redis, prefix: str
) -> None:
    ada = desks["ada"]
    await ada.post("/desk/api/users/omar/editions", {"editions": ["ar"]})
    before = await audit(redis, prefix)
    for action, body, field in (
            ("lang", {"lang": "fr"}, "lang"),
            ("lang", {"lang": ""}, "lang"),
            ("lang", {"lang": 5}, "lang"),
            ("lang", {}, "lang"),
            ("lang", {"lang": "es", "editions": []}, "editions"),
            ("editions", {"editions": ["en", "fr"]}, "editions"),
            ("editions", {"editions": ["<b>x</b>"]}, "editions"),
            ("editions", {"editions": "en"}, "editions"),
            ("editions", {"editions": [1]}, "editions"),
            ("editions", {"editions": None}, "editions"),
            ("role", {"role": "owner"}, "role"),
            ("role", {"role": "editor", "password": PASSWORD}, "password"),
            ("passwd", {"password": "short"}, "password"),
            ("end-sessions", {"now": True}, "now")):
        r = await ada.post(f"/desk/api/users/omar/{action}", body)
        refused(r, 422, field)
    omar = (await users_of(ada))["omar"]
    assert (omar["lang"], omar["editions"], omar["role"]) == ("en", ["ar"], "editor")
    assert (await desks["omar"].http.get("/desk/api/session")).status_code == 200
    # Unknown users and actions are 404s naming what is unknown.
    refused(await ada.post("/desk/api/users/nobody/lang", {"lang": "ar"}), 404, "name")
    refused(await ada.post("/desk/api/users/nobody/end-sessions"), 404, "name")
    refused(await ada.post("/desk/api/users/omar/language", {"lang": "ar"}), 404, "action")
    # A new user's preferences are checked like the rest, before anything is made.
    for body, field in (({"lang": "de"}, "lang"), ({"editions": ["fr"]}, "editions"),
                        ({"editions": "en,ar"}, "editions"), ({"colour": "red"}, "colour")):
        r = await ada.post("/desk/api/users", {"name": "nadia", "role": "editor",
                                               "password": PASSWORD, **body})
        refused(r, 422, field)
    assert "nadia" not in await users_of(ada)
    assert await audit(redis, prefix) == before


async def test_adding_a_user_with_preferences_is_audited_without_the_password(
    desks: dict[str, Desk], server: Server, redis: Redis, prefix: str
) -> None:
    ada = desks["ada"]
    r = await ada.post("/desk/api/users", {"name": "Nadia", "role": "contributor",
                                           "password": PASSWORD, "lang": "es",
                                           "editions": ["ar"]})
    assert r.status_code == 201, r.text
    user = r.json()["user"]
    assert (user["name"], user["role"], user["lang"], user["editions"]) == (
        "nadia", "contributor", "es", ["ar"])
    r = await ada.post("/desk/api/users", {"name": "pablo", "role": "editor",
                                           "password": PASSWORD})
    assert (r.json()["user"]["lang"], r.json()["user"]["editions"]) == ("en", [])
    trail = await audit(redis, prefix)
    assert trail[-2:] == [
        ("ada", "user-add", "nadia as contributor; language es; default editions ar"),
        ("ada", "user-add", "pablo as editor; language en; default editions all")]
    entries: Any = await redis.xrange(Keys(prefix).audit)
    raw = b"".join(v for _, f in entries for v in f.values())
    assert PASSWORD.encode() not in raw
    nadia = await Desk.sign_in(server, "nadia")
    try:
        session = (await nadia.http.get("/desk/api/session")).json()
        assert (session["role"], session["lang"], session["editions"]) == (
            "contributor", "es", ["ar"])
    finally:
        await nadia.close()


async def test_ending_sessions_signs_the_user_out_everywhere_and_keeps_the_password(
    desks: dict[str, Desk], server: Server, redis: Redis, prefix: str
) -> None:
    ada, omar = desks["ada"], desks["omar"]
    phone = await Desk.sign_in(server, "omar")
    try:
        for desk in (omar, phone):
            assert (await desk.http.get("/desk/api/session")).status_code == 200
        r = await ada.post("/desk/api/users/omar/end-sessions")
        assert r.status_code == 200 and r.json()["user"]["disabled"] is False, r.text
        for desk in (omar, phone):
            assert (await desk.http.get("/desk/api/session")).status_code == 401
            r = await desk.post("/desk/api/items", {"text": "Still here?", "channels": ["en"]})
            assert r.status_code == 401
            assert (await desk.http.get("/desk")).status_code == 303
        # The same password still signs in: only the sessions ended.
        again = await Desk.sign_in(server, "omar")
        assert (await again.http.get("/desk/api/session")).status_code == 200
        await again.close()
        assert (await ada.http.get("/desk/api/session")).status_code == 200
        assert (await audit(redis, prefix))[-2][1:] == ("user-end-sessions",
                                                         "omar: sessions ended")
        # An admin may end their own sessions (it is no lock-out): they sign in again.
        assert (await ada.post("/desk/api/users/ada/end-sessions")).status_code == 200
        assert (await ada.http.get("/desk/api/session")).status_code == 401
    finally:
        await phone.close()


async def test_only_admins_manage_people_and_no_admin_locks_themself_out(
    desks: dict[str, Desk], server: Server, redis: Redis, prefix: str
) -> None:
    before = await audit(redis, prefix)
    for name in ("eve", "carl"):
        desk = desks[name]
        for action, body in (("lang", {"lang": "ar"}), ("editions", {"editions": ["ar"]}),
                             ("end-sessions", None), ("disable", None)):
            r = await desk.post(f"/desk/api/users/omar/{action}", body)
            assert r.status_code == 403 and r.json()["error"] == "forbidden", (name, action)
        for path in ("/desk/people", "/desk/tokens"):
            r = await desk.http.get(path)
            assert r.status_code == 403 and "This page needs the admin role" in r.text
    assert await audit(redis, prefix) == before
    assert (await desks["omar"].http.get("/desk/api/session")).status_code == 200
    ada = desks["ada"]
    r = await ada.post("/desk/api/users/ada/role", {"role": "editor"})
    refused(r, 409, "name")
    assert "yourself" in r.json()["message"]
    refused(await ada.post("/desk/api/users/ada/disable"), 409, "name")
    assert (await users_of(ada))["ada"]["role"] == "admin"
    # Their own language and editions are no lock-out.
    r = await ada.post("/desk/api/users/ada/lang", {"lang": "es"})
    assert r.status_code == 200 and r.json()["user"]["lang"] == "es"
    # No CSRF token, no change.
    r = await ada.http.post("/desk/api/users/omar/lang", json={"lang": "ar"})
    assert r.status_code == 403 and r.json()["error"] == "csrf"
    assert (await users_of(ada))["omar"]["lang"] == "en"
    # Signed out: the pages send you to sign in, and back.
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as anonymous:
        for path in ("/desk/people", "/desk/tokens", "/desk/settings"):
            r = await anonymous.get(path)
            assert r.status_code == 303 and r.headers["location"] == f"/login?next={path}"
        assert (await anonymous.get("/desk/api/me")).status_code == 401
        r = await post_login(anonymous, "eve", PASSWORD)
        assert r.status_code == 200
        r = await anonymous.get("/desk/settings")
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"


async def test_everyone_sets_their_own_language_and_editions(
    desks: dict[str, Desk], redis: Redis, prefix: str
) -> None:
    carl = desks["carl"]
    r = await carl.http.get("/desk/api/me")
    assert r.status_code == 200
    assert r.json()["user"]["name"] == "carl" and r.json()["channels"] == ["en", "ar"]
    r = await carl.post("/desk/api/me", {"lang": "es"})
    assert r.status_code == 200 and r.json()["user"]["lang"] == "es", r.text
    r = await carl.post("/desk/api/me", {"editions": ["ar"]})
    assert r.status_code == 200, r.text
    assert (r.json()["user"]["lang"], r.json()["user"]["editions"]) == ("es", ["ar"])
    r = await carl.post("/desk/api/me", {"lang": "en", "editions": []})
    assert (r.json()["user"]["lang"], r.json()["user"]["editions"]) == ("en", [])
    before = await audit(redis, prefix)
    for body, field in (({}, "body"), ({"lang": "xx"}, "lang"), ({"editions": ["zz"]}, "editions"),
                        ({"lang": "ar", "editions": ["en", "zz"]}, "editions"),
                        ({"role": "admin"}, "role"), ({"name": "ada", "lang": "ar"}, "name"),
                        ({"lang": ["ar"]}, "lang")):
        refused(await carl.post("/desk/api/me", body), 422, field)
    r = await carl.post("/desk/api/me", {"lang": "ar"}, csrf="forged")
    assert r.status_code == 403
    assert await audit(redis, prefix) == before
    me = (await carl.http.get("/desk/api/me")).json()["user"]
    assert (me["role"], me["lang"], me["editions"]) == ("contributor", "en", [])
    assert (await carl.http.get("/desk/api/state")).status_code == 200
    prefs = [(u, d) for u, a, d in await audit(redis, prefix) if a == "prefs"]
    assert prefs == [("carl", "language es"), ("carl", "default editions ar"),
                     ("carl", "language en; default editions all")]


async def test_a_user_stored_before_preferences_reads_as_the_defaults(
    server: Server, redis: Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    await add_user(redis, prefix, "ada", "admin")
    await add_user(redis, prefix, "old", "editor")
    await redis.hdel(keys.user("old"), "lang", "editions")
    old = await Users(redis, keys).get("old")
    assert old is not None and (old.lang, old.editions) == ("en", ())
    ada = await Desk.sign_in(server, "ada")
    try:
        assert (await users_of(ada))["old"]["editions"] == []
        r = await ada.post("/desk/api/users/old/lang", {"lang": "ar"})
        assert r.status_code == 200 and r.json()["user"]["editions"] == []
        assert (await redis.hget(keys.user("old"), "lang")) == b"ar"
    finally:
        await ada.close()


async def test_the_pages_list_people_and_tokens_as_text_and_link_by_role(
    desks: dict[str, Desk], redis: Redis, prefix: str
) -> None:
    ada, eve = desks["ada"], desks["eve"]
    await ada.post("/desk/api/users/omar/editions", {"editions": ["ar"]})
    await ada.post("/desk/api/users/omar/lang", {"lang": "ar"})
    await ada.post("/desk/api/users/carl/disable")
    r = await ada.post("/desk/api/tokens", {"name": "wire-feed"})
    assert r.status_code == 201
    token = r.json()["token"]

    page = await ada.http.get("/desk/people")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    cards = re.findall(r'<li class="person" data-name="([^"]*)" data-disabled="([a-z]+)">',
                       page.text)
    assert cards == [("ada", "false"), ("carl", "true"), ("eve", "false"), ("omar", "false"),
                     ("", "false")]  # the last is the blank card people.js copies
    omar = page.text[page.text.index('data-name="omar"'):]
    assert '<dd data-cell="lang">Arabic</dd>' in omar
    assert '<dd data-cell="editions">ar</dd>' in omar
    assert '<script type="application/json" id="page-strings">' in page.text
    strings = re.search(r'id="page-strings">([^<]*)</script>', page.text)
    assert strings is not None and '"nav_people": "People"' in html.unescape(strings.group(1))

    page = await ada.http.get("/desk/tokens")
    assert page.status_code == 200
    assert re.findall(r'<tr data-name="([^"]*)">', page.text) == ["wire-feed", ""]
    assert token not in page.text  # shown once, in the answer that made it

    for path in ("/desk", "/desk/audit", "/desk/settings"):
        admin_page = (await ada.http.get(path)).text
        editor_page = (await eve.http.get(path)).text
        for link in ('href="/desk/people"', 'href="/desk/tokens"'):
            assert link in admin_page and link not in editor_page, (path, link)
        assert 'href="/desk/settings"' in admin_page and 'href="/desk/settings"' in editor_page
    for path in ("/desk/people", "/desk/tokens", "/desk/settings"):
        assert "built-in method" not in (await ada.http.get(path)).text, path
    settings = (await eve.http.get("/desk/settings")).text
    assert '<option value="en" selected>English</option>' in settings


def test_no_page_string_is_shadowed_by_a_mapping_method() -> None:
    # Jinja reads t.copy as the dict's copy method before the "copy" key: no key may be one.
    for page in texts.PAGES.values():
        assert not [key for key in page if hasattr(dict, key)]


async def test_the_user_command_sets_language_and_editions(
    redis: Redis, prefix: str, redis_url: str
) -> None:
    def user(*args: str, stdin: str = "") -> Awaitable[subprocess.CompletedProcess[str]]:
        return ticker(redis_url, prefix, "user", *args, stdin=stdin, channels="en,ar")

    done = await user("add", "maria", "--lang", "es", "--editions", "ar",
                      stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    users = Users(redis, Keys(prefix))
    done = await user("lang", "maria", "ar")
    assert done.returncode == 0, done.stderr
    done = await user("editions", "maria", "ar,en")
    assert done.returncode == 0, done.stderr
    maria = await users.get("maria")
    assert maria is not None and (maria.lang, maria.editions) == ("ar", ("en", "ar"))
    done = await user("list")
    assert done.stdout.split("\t")[4:] == ["ar", "en,ar\n"]
    done = await user("lang", "maria", "fr")
    assert done.returncode == 2 and "invalid choice" in done.stderr
    done = await user("editions", "maria", "en,fr")
    assert done.returncode == 2 and "no edition 'fr'" in done.stderr
    done = await user("editions", "maria", "")
    assert done.returncode == 0, done.stderr
    maria = await users.get("maria")
    assert maria is not None and (maria.lang, maria.editions) == ("ar", ())
    assert [a for _, a, _ in await audit(redis, prefix)] == [
        "user-add", "user-lang", "user-editions", "user-editions"]
    assert (await audit(redis, prefix))[0][2] == (
        "maria as editor; language es; default editions ar")
