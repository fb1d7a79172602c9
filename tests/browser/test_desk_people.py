"""People, API tokens and settings in real Chromium: an admin adds a user, changes their role,
language and editions, resets their password, ends their sessions and disables them (their
session stops working each time it should); creates a token that is shown once and works
against the publishing API, then revokes it (refused from then on); an editor sets their own
language and editions and is refused the admin pages. Errors from the API show next to
their field; names and channel titles are text; at phone width nothing overflows."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from tests.conftest import TIMEOUT, RedisServer, Server, make_settings, running_server
from tests.e2e.deskkit import PASSWORD, Desk, add_user, post_login
from ticker.redis.connection import connect as redis_client

TRIP = "window.__xss=(window.__xss||0)+1"
TITLE = f'<img src=x onerror="{TRIP}">"T&T\''
WATCH = """
window.__violations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
"""
NEW_PASSWORD = "a brand new passphrase"


@dataclass
class Scene:
    server: Server
    context: BrowserContext
    page: Page
    dialogs: list[str]


@contextlib.asynccontextmanager
async def browsing(browser: Browser, server: Server) -> AsyncIterator[Scene]:
    """A browser context on `server` that records CSP violations and may use the clipboard,
    with one page whose dialogs are recorded and whose script errors fail the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.add_init_script(WATCH)
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.http)
    page = await context.new_page()
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda d: dialogs.append(d.message))
    try:
        yield Scene(server, context, page, dialogs)
    finally:
        await context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture(scope="module")
async def scene(browser: Browser, redis_server: RedisServer) -> AsyncIterator[Scene]:
    prefix = "bq" + uuid.uuid4().hex[:8]
    redis = redis_client(redis_server.url)
    await add_user(redis, prefix, "ada", "admin")
    await add_user(redis, prefix, "eve", "editor")
    settings = make_settings(redis_server.url, prefix, channels=f"en,ar,xx:en:ltr:{TITLE}")
    try:
        async with running_server(settings) as server, browsing(browser, server) as scene:
            yield scene
    finally:
        await redis.aclose()


async def open_as(scene: Scene, name: str, path: str) -> Page:
    """`path` in the scene's page, signed in as `name` (a fresh session, nothing else)."""
    desk = await Desk.sign_in(scene.server, name)
    await desk.close()
    await scene.context.clear_cookies()
    await scene.context.add_cookies([{"name": k, "value": v, "url": scene.server.http}
                                     for k, v in desk.http.cookies.items()])
    page = scene.page
    await page.goto(scene.server.http + path)
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


async def clean(scene: Scene, page: Page) -> None:
    """Nothing injected ran, no CSP violation, no alert; the page fits a phone's width."""
    state: dict[str, Any] = await page.evaluate("""() => ({
        xss: window.__xss === undefined ? null : window.__xss,
        violations: window.__violations,
        foreign: document.querySelectorAll('img, svg, iframe, [onerror], [onload]').length,
    })""")
    assert state == {"xss": None, "violations": [], "foreign": 0}, state
    assert scene.dialogs == []
    await page.set_viewport_size({"width": 375, "height": 800})
    try:
        overflow = await page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{overflow} px wider than a phone"
    finally:
        await page.set_viewport_size({"width": 1280, "height": 900})


async def session_works(desk: Desk) -> bool:
    r = await desk.http.get("/desk/api/session")
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


async def can_sign_in(scene: Scene, name: str, password: str) -> bool:
    async with httpx.AsyncClient(base_url=scene.server.http, timeout=TIMEOUT) as http:
        r = await post_login(http, name, password)
        assert r.status_code in (200, 401), r.text
        return r.status_code == 200


def card(page: Page, name: str) -> Locator:
    return page.locator(f'#people li.person[data-name="{name}"]')


async def confirm(page: Page, title: str, answer: str = "confirm") -> None:
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#confirm-title")).to_have_text(title)
    await dialog.locator(f'button[value="{answer}"]').click()
    await expect(dialog).to_be_hidden()


async def test_an_admin_adds_changes_and_disables_a_person(scene: Scene) -> None:
    page = await open_as(scene, "ada", "/desk/people")
    await expect(page).to_have_title("People · Ticker desk")
    await expect(page.locator(".topbar .links a[aria-current=page]")).to_have_text("People")
    await expect(card(page, "ada").locator(".you")).to_have_text("(you)")
    add = page.locator("#add-user")

    # A bad password and a taken name: the server's messages, next to their fields.
    await add.locator('[name="name"]').fill("omar")
    await add.locator('[name="password"]').fill("short")
    await add.locator('button[type="submit"]').click()
    error = add.locator('[data-error-for="password"]')
    await expect(error).to_have_text("password must be at least 10 characters")
    await expect(add.locator('[name="password"]')).to_have_attribute("aria-invalid", "true")
    await add.locator('[name="name"]').fill("eve")
    await add.locator('[name="password"]').fill(PASSWORD)
    await add.locator('button[type="submit"]').click()
    await expect(add.locator('[data-error-for="name"]')).to_have_text("user 'eve' exists")
    await expect(error).to_be_hidden()

    # Added with a role, a language and an edition.
    await add.locator('[name="name"]').fill("Omar")
    await add.locator('[name="role"]').select_option("contributor")
    await add.locator('[name="lang"]').select_option("ar")
    await add.get_by_label("ar (Breaking)").check()
    await add.locator('button[type="submit"]').click()
    await expect(add.locator('[data-cell="status"]')).to_have_text("omar added.")
    omar = card(page, "omar")
    await expect(omar.locator('[data-cell="role"]')).to_have_text("Contributor")
    await expect(omar.locator('[data-cell="lang"]')).to_have_text("Arabic")
    await expect(omar.locator('[data-cell="editions"]')).to_have_text("ar")
    await expect(omar.locator('[data-cell="state"]')).to_have_text("Active")
    assert await page.locator("#people li.person").evaluate_all(
        "(cards) => cards.map((c) => c.dataset.name)") == ["ada", "eve", "omar"]
    await expect(add.locator('[name="name"]')).to_have_value("")  # the form is reset
    await expect(add.locator('[name="name"]')).to_be_focused()
    omar_desk = await Desk.sign_in(scene.server, "omar")
    assert (await omar_desk.http.get("/desk/api/session")).json()["editions"] == ["ar"]

    # Role, language, editions: each saved on its own; the session goes on.
    await omar.locator("summary").click()
    await omar.locator('select[name="role"]').select_option("editor")
    await omar.get_by_role("button", name="Change role").click()
    await expect(omar.locator('[data-cell="status"]')).to_have_text("omar is now Editor.")
    await expect(omar.locator('[data-cell="role"]')).to_have_text("Editor")
    await omar.locator('select[name="lang"]').select_option("es")
    await omar.get_by_role("button", name="Change language").click()
    await expect(omar.locator('[data-cell="lang"]')).to_have_text("Spanish")
    editions = omar.locator('form[data-action="editions"]')
    await editions.get_by_label("ar (Breaking)").uncheck()
    await editions.get_by_label("en (Breaking)").check()
    await editions.get_by_label(f"xx ({TITLE})").check()
    await omar.get_by_role("button", name="Save editions").click()
    await expect(omar.locator('[data-cell="editions"]')).to_have_text("en, xx")
    session = (await omar_desk.http.get("/desk/api/session")).json()
    assert (session["role"], session["lang"], session["editions"]) == (
        "editor", "es", ["en", "xx"])

    # A new password: the old one and the old session stop working.
    await omar.locator('input[name="password"]').fill("too short")
    await omar.get_by_role("button", name="Set password").click()
    await expect(omar.locator('[data-error-for="password"]')).to_have_text(
        "password must be at least 10 characters")
    await omar.locator('input[name="password"]').fill(NEW_PASSWORD)
    await omar.get_by_role("button", name="Set password").click()
    await expect(omar.locator('[data-cell="status"]')).to_have_text(
        "omar has a new password; their sessions ended.")
    await expect(omar.locator('input[name="password"]')).to_have_value("")
    await expect(omar.locator('[data-error-for="password"]')).to_be_hidden()
    assert not await session_works(omar_desk)
    assert not await can_sign_in(scene, "omar", PASSWORD)
    await omar_desk.close()

    # End sessions (after a "no" first): signed out, the password still good.
    omar_desk = await Desk.sign_in(scene.server, "omar", NEW_PASSWORD)
    await omar.get_by_role("button", name="End sessions").click()
    await confirm(page, "End every session of omar?", "cancel")
    assert await session_works(omar_desk)
    await omar.get_by_role("button", name="End sessions").click()
    await confirm(page, "End every session of omar?")
    await expect(omar.locator('[data-cell="status"]')).to_have_text(
        "Every session of omar ended.")
    assert not await session_works(omar_desk)
    await omar_desk.close()

    # Disabled: signed out at once and refused at sign-in; enabled again, back in.
    omar_desk = await Desk.sign_in(scene.server, "omar", NEW_PASSWORD)
    await omar.get_by_role("button", name="Disable").click()
    await confirm(page, "Disable omar?")
    await expect(omar.locator('[data-cell="state"]')).to_have_text("Disabled")
    await expect(omar).to_have_attribute("data-disabled", "true")
    await expect(omar.get_by_role("button", name="Enable")).to_be_focused()
    await expect(omar.get_by_role("button", name="Disable")).to_be_hidden()
    assert not await session_works(omar_desk)
    assert (await omar_desk.post("/desk/api/items", {"text": "Still on?", "channels": ["en"]})
            ).status_code == 401
    await omar_desk.close()
    assert not await can_sign_in(scene, "omar", NEW_PASSWORD)

    # What the server keeps is what the page showed.
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    for cell, text in (("role", "Editor"), ("lang", "Spanish"), ("editions", "en, xx"),
                       ("state", "Disabled")):
        await expect(omar.locator(f'[data-cell="{cell}"]')).to_have_text(text)
    await omar.locator("summary").click()
    await omar.get_by_role("button", name="Enable").click()
    await expect(omar.locator('[data-cell="state"]')).to_have_text("Active")
    assert await can_sign_in(scene, "omar", NEW_PASSWORD)

    # An admin cannot demote or disable themself: the API's message, on their card.
    ada = card(page, "ada")
    await ada.locator("summary").click()
    await ada.locator('select[name="role"]').select_option("editor")
    await ada.get_by_role("button", name="Change role").click()
    refusal = ada.locator('[data-error-for="name"]')
    await expect(refusal).to_have_text("you cannot disable or demote yourself; ask another "
                                       "admin")
    await expect(ada.locator('[data-cell="role"]')).to_have_text("Admin")
    await ada.get_by_role("button", name="Disable").click()
    await confirm(page, "Disable ada?")
    await expect(refusal).to_contain_text("you cannot disable or demote yourself")
    await expect(ada.locator('[data-cell="state"]')).to_have_text("Active")
    await clean(scene, page)


async def test_a_token_is_shown_once_works_and_is_refused_once_revoked(scene: Scene) -> None:
    page = await open_as(scene, "ada", "/desk/tokens")
    await expect(page).to_have_title("API tokens · Ticker desk")
    form = page.locator("#create-token")
    await form.locator('[name="name"]').fill("wire feed")
    await form.locator('button[type="submit"]').click()
    await expect(form.locator('[data-error-for="name"]')).to_have_text(
        "token name: 1-64 of letters, digits, '-', '_'")
    await expect(page.locator("#token-once")).to_be_hidden()

    await form.locator('[name="name"]').fill("wire-feed")
    await form.locator('button[type="submit"]').click()
    once = page.locator("#token-once")
    await expect(once).to_be_visible()
    await expect(once.locator("h2")).to_have_text("New token: wire-feed")
    await expect(once.locator(".once-warning")).to_have_text(
        "Copy it now. It will not be shown again.")
    token = await page.locator("#token-value").input_value()
    assert token.startswith("tkr_") and len(token) > 40
    await expect(page.locator('#tokens tr[data-name="wire-feed"] td.name')).to_have_text(
        "wire-feed")
    await expect(page.locator("#token-copy")).to_have_text("Copy")
    await page.locator("#token-copy").click()
    await expect(page.locator("#token-copied")).to_have_text("Copied.")
    assert await page.evaluate("() => navigator.clipboard.readText()") == token

    # The token publishes.
    bearer = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=scene.server.http, timeout=TIMEOUT) as http:
        r = await http.post("/api/channels/en/items", json={"text": "Wire: quake felt"},
                            headers=bearer)
        assert r.status_code == 201, r.text

        # The same name again is refused next to the field.
        await form.locator('[name="name"]').fill("wire-feed")
        await form.locator('button[type="submit"]').click()
        await expect(form.locator('[data-error-for="name"]')).to_contain_text(
            "a token named 'wire-feed' exists")

        # Done: the token leaves the page, and no page shows it again.
        await page.locator("#token-done").click()
        await expect(once).to_be_hidden()
        await expect(page.locator("#token-value")).to_have_value("")
        await page.reload()
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        assert token not in await page.content()
        await expect(page.locator('#tokens tr[data-name="wire-feed"]')).to_have_count(1)

        # Revoked after a confirmation (a "no" first): refused from then on.
        row = page.locator('#tokens tr[data-name="wire-feed"]')
        await row.get_by_role("button", name="Revoke").click()
        await confirm(page, "Revoke the token wire-feed?", "cancel")
        assert (await http.post("/api/channels/en/items", json={"text": "Wire: again"},
                                headers=bearer)).status_code == 201
        await row.get_by_role("button", name="Revoke").click()
        await confirm(page, "Revoke the token wire-feed?")
        await expect(page.locator("#tokens-status")).to_have_text("Token wire-feed revoked.")
        await expect(row).to_have_count(0)
        await expect(page.locator("#no-tokens")).to_be_visible()
        r = await http.post("/api/channels/en/items", json={"text": "Wire: refused"},
                            headers=bearer)
        assert r.status_code == 401 and r.json()["message"] == "unknown or revoked token"
    await clean(scene, page)


async def test_an_editor_sets_their_own_settings_and_is_refused_people(scene: Scene) -> None:
    page = await open_as(scene, "eve", "/desk")
    links = page.locator(".topbar .links a")
    assert "People" not in await links.all_text_contents()
    await page.locator('.topbar a[href="/desk/settings"]').click()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await expect(page).to_have_title("Your settings · Ticker desk")
    assert await links.all_text_contents() == ["Desk", "Audit trail", "Settings",
                                               "Reader page"]
    form = page.locator("#prefs")
    await expect(form.locator('[name="lang"]')).to_have_value("en")
    label = form.locator("label.check").nth(2)
    await expect(label).to_have_text(f"xx ({TITLE})")  # a channel title is text
    await form.locator('[name="lang"]').select_option("ar")
    await form.get_by_label("ar (Breaking)").check()
    await form.get_by_role("button", name="Save").click()
    await expect(form.locator('[data-cell="status"]')).to_have_text("Saved.")
    session = await page.evaluate(
        "() => fetch('/desk/api/session').then((r) => r.json())")
    assert (session["lang"], session["editions"]) == ("ar", ["ar"])
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await expect(page.locator("html")).to_have_attribute("lang", "ar")  # the page is Arabic now
    await expect(form.locator('[name="lang"]')).to_have_value("ar")
    await expect(form.get_by_label("ar (Breaking)")).to_be_checked()
    await expect(form.get_by_label("en (Breaking)")).not_to_be_checked()
    await clean(scene, page)

    # An edition that does not exist (a stale page): the server's refusal, by the field.
    await form.locator('input[name="editions"]').first.evaluate("(box) => { box.value = 'fr'; }")
    await form.get_by_label("ar (Breaking)").uncheck()
    await form.locator('input[name="editions"]').first.check()
    await form.get_by_role("button", name="احفظ").click()
    await expect(form.locator('[data-error-for="editions"]')).to_have_text(
        "no edition 'fr'; one of en, ar, xx")

    for path in ("/desk/people", "/desk/tokens"):
        response = await page.goto(scene.server.http + path)
        assert response is not None and response.status == 403
        await expect(page).to_have_title("غير متاحة لدورك · غرفة أخبار تيكر")  # eve's Arabic
