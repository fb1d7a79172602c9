"""The server-rendered desk pages (Jinja2, autoescaped) show hostile values as text: a user
name typed into the sign-in form, a channel title from the settings, item text, sources,
correction and kill reasons and the user filter on the audit page. Each is checked twice: in
the HTML the server sends (escaped, the raw markup nowhere) and in Chromium (the text is
exactly what was typed, no element injected, nothing ran, no CSP violation). The sign-in form
itself, posted by Chromium, carries a non-ASCII password through `request.form()` intact."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.conftest import TIMEOUT, RedisServer, Server, make_settings, running_server
from tests.e2e.deskkit import Desk, add_user, login_form
from ticker.redis.connection import connect as redis_client

TRIP = "window.__xss=(window.__xss||0)+1"
# At most 64 characters (the sign-in form keeps that much of a user name), no comma (the
# channel list is comma separated), nothing the item rules refuse.
PAYLOADS = [
    f"<script>{TRIP}</script>",
    f'"><img src=x onerror="{TRIP}">',
    f"'><svg onload={TRIP}>",
    f"</title><script>{TRIP}</script>",
    f"</textarea><img src=x onerror={TRIP}>",
    f'" autofocus onfocus="{TRIP}" x="',
    "{{ 7*7 }} {% raw %} &amp; &lt;b&gt; &#60;i&#62;",
]
TITLE = f'<img src=x onerror="{TRIP}">"T&T\''
ODD_PASSWORD = "пароль 😀 a+b&c=d 100%zz"
WATCH = """
window.__violations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
"""


@dataclass
class Scene:
    server: Server
    context: BrowserContext
    page: Page
    alice: Desk
    dialogs: list[str]


@pytest.fixture(scope="module")
async def scene(browser: Browser, redis_server: RedisServer) -> AsyncIterator[Scene]:
    prefix = "bp" + uuid.uuid4().hex[:8]
    redis = redis_client(redis_server.url)
    await add_user(redis, prefix, "alice", "editor")
    await add_user(redis, prefix, "carl", "contributor")
    await add_user(redis, prefix, "olga", "editor", ODD_PASSWORD)
    settings = make_settings(redis_server.url, prefix, channels=f"en,ar,xx:en:ltr:{TITLE}")
    async with running_server(settings) as server:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        await context.add_init_script(WATCH)
        dialogs: list[str] = []
        page = await context.new_page()
        page.on("dialog", lambda d: dialogs.append(d.message))
        alice = await Desk.sign_in(server, "alice")
        try:
            yield Scene(server, context, page, alice, dialogs)
        finally:
            await alice.close()
            await context.close()
    await redis.aclose()


async def browse_as(scene: Scene, desk: Desk) -> Page:
    """The scene's page, signed in with `desk`'s session cookie (and nothing else)."""
    await scene.context.clear_cookies()
    await scene.context.add_cookies([{"name": name, "value": value, "url": scene.server.http}
                                     for name, value in desk.http.cookies.items()])
    return scene.page


async def nothing_ran(scene: Scene, page: Page, label: str) -> None:
    state: dict[str, Any] = await page.evaluate("""() => ({
        xss: window.__xss === undefined ? null : window.__xss,
        violations: window.__violations || [],
        scripts: Array.from(document.scripts).filter((s) => s.type !== 'application/json')
          .map((s) => s.src.replace(location.origin, '')),
        foreign: document.querySelectorAll('img, svg, iframe, object, embed, [onerror], '
                                           + '[onload], [onfocus], [autofocus]:not(#username)')
          .length,
    })""")
    assert state["xss"] is None, f"{label}: a payload ran"
    assert state["violations"] == [], f"{label}: CSP violations {state['violations']}"
    assert state["foreign"] == 0, f"{label}: injected elements or attributes"
    # Ours only (the page's strings are JSON data, never run: left out above).
    assert all(s in ("/static/ticker.js", "/static/i18n.js", "/static/desk.js")
               for s in state["scripts"]), \
        f"{label}: scripts {state['scripts']}"
    assert scene.dialogs == [], f"{label}: dialogs {scene.dialogs}"


def assert_escaped(page_html: str, values: list[str]) -> None:
    """No value with markup characters is in the HTML as it is: each went out escaped."""
    for value in values:
        if any(c in value for c in "<>\"'&"):
            assert value not in page_html, value


def texts(page_html: str, pattern: str) -> list[str]:
    """The text of every match of `pattern` (one group), as a browser reads it."""
    return [html.unescape(m) for m in re.findall(pattern, page_html)]


async def test_a_hostile_user_name_on_the_sign_in_page_is_text(scene: Scene) -> None:
    page = scene.page
    await scene.context.clear_cookies()
    for name in PAYLOADS:
        await page.goto(scene.server.http + "/login")
        await page.fill("#username", name)
        await page.fill("#password", "not the password")
        async with page.expect_response(lambda r: r.request.method == "POST") as answer:
            await page.keyboard.press("Enter")
        assert (await answer.value).status == 401
        await expect(page.locator("#form-error")).to_have_text("Wrong user name or password.")
        await expect(page.locator("#username")).to_have_value(name.strip())
        await nothing_ran(scene, page, f"sign-in page for {name!r}")
    async with httpx.AsyncClient(base_url=scene.server.http, timeout=TIMEOUT) as http:
        for name in PAYLOADS:
            nonce = await login_form(http)
            r = await http.post("/login", data={"username": name, "password": "nope",
                                                "csrf": nonce})
            assert r.status_code == 401
            assert_escaped(r.text, [name])
            assert texts(r.text, r'id="username" name="username" type="text" value="([^"]*)"'
                         ) == [name.strip()]


async def test_chromium_posts_a_non_ascii_password_that_signs_in(scene: Scene) -> None:
    page = scene.page
    await scene.context.clear_cookies()
    await page.goto(scene.server.http + "/login?next=/desk/audit")
    await page.fill("#username", "olga")
    await page.fill("#password", ODD_PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/desk/audit")
    await expect(page.locator(".me .who b")).to_have_text("olga")


async def test_a_hostile_channel_title_on_the_desk_page_is_text(scene: Scene) -> None:
    r = await scene.alice.http.get("/desk")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert_escaped(r.text, [TITLE])
    assert texts(r.text, r'data-title="([^"]*)"') == ["Breaking", "Breaking", TITLE]
    # Twice: the compose form's channels, then the board's edition switch.
    assert texts(r.text, r'<span class="muted" lang="[a-z]+">([^<]*)</span>') == [
        "(Breaking)", "(Breaking)", f"({TITLE})"] * 2
    page = await browse_as(scene, scene.alice)
    await page.goto(scene.server.http + "/desk")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await expect(page.locator('label[for="ch-xx"] .muted')).to_have_text(f"({TITLE})")
    await expect(page.locator("#ch-xx")).to_have_attribute("data-title", TITLE)
    await expect(page.locator("#ch-en")).to_be_checked()
    await nothing_ran(scene, page, "desk page")


async def test_hostile_item_text_and_reasons_on_the_audit_page_are_text(scene: Scene) -> None:
    alice = scene.alice
    for text in PAYLOADS:
        item, = await alice.publish(text, ["en"], source=text[:100])
        r = await alice.op(item, "correct", text="fixed " + text, reason="why " + text)
        assert r.status_code == 201, r.text
        r = await alice.op(item, "kill", reason="kill " + text)
        assert r.status_code == 201, r.text
    r = await alice.http.get("/desk/audit?limit=1000&user=alice")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    want = {
        "after": ["fixed " + t for t in PAYLOADS] + PAYLOADS,
        "before": ["fixed " + t for t in PAYLOADS] + PAYLOADS,
        "reason": ["kill " + t for t in PAYLOADS] + ["why " + t for t in PAYLOADS],
    }
    for column, values in want.items():
        assert_escaped(r.text, values)
        shown = texts(r.text, rf'<td class="{column}"><bdi>([^<]*)</bdi></td>')
        assert sorted(v for v in shown if v) == sorted(values), column
    page = await browse_as(scene, scene.alice)
    await page.goto(scene.server.http + "/desk/audit?limit=1000&user=alice")
    for column, values in want.items():
        shown = await page.evaluate(
            "(c) => Array.from(document.querySelectorAll(`#audit-table td.${c} bdi`))"
            ".map((b) => b.textContent).filter((t) => t)", column)
        assert sorted(shown) == sorted(values), column
    await nothing_ran(scene, page, "audit page")


async def test_a_hostile_user_filter_on_the_audit_page_is_text(scene: Scene) -> None:
    page = await browse_as(scene, scene.alice)
    for value in PAYLOADS:
        r = await scene.alice.http.get("/desk/audit", params={"user": value})
        assert r.status_code == 422
        assert_escaped(r.text, [value])
        assert texts(r.text, r'<input id="f-user" name="user" type="text" value="([^"]*)"'
                     ) == [value]
        await page.goto(f"{scene.server.http}/desk/audit?{httpx.QueryParams(user=value)}")
        await expect(page.locator("#f-user")).to_have_value(value)
        await expect(page.locator("#f-user")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#user-error")).to_be_visible()
        await expect(page.locator("#audit-table tbody")).to_have_text("No entries.")
        await nothing_ran(scene, page, f"audit filter {value!r}")


async def test_the_message_page_for_a_lower_role(scene: Scene) -> None:
    carl = await Desk.sign_in(scene.server, "carl")
    try:
        r = await carl.http.get("/desk/audit")
        assert r.status_code == 403 and r.headers["cache-control"] == "no-store"
        assert "<p>This page needs the editor role; you are contributor.</p>" in r.text
        page = await browse_as(scene, carl)
        await page.goto(scene.server.http + "/desk/audit")
        await expect(page).to_have_title("Not for your role · Ticker desk")
        await expect(page.locator("main p").first).to_have_text(
            "This page needs the editor role; you are contributor.")
        await nothing_ran(scene, page, "message page")
    finally:
        await carl.close()
