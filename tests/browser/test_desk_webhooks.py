"""Webhooks on the desk in real Chromium, with a real receiver on loopback that verifies every
signature (tests/e2e/receiver.py): an admin adds a subscription (its secret shown once, and
it verifies what the receiver gets), sends a test event and sees "sent" grow, sees a 410
become a dead letter (its error, and its item text as text) and retries it, and removes the
subscription after saying yes; the server's refusals show next to their field; an admin
token made on the tokens page manages webhooks; the page in Arabic is right to left and
Arabic, dead letters included; nothing injected runs and nothing overflows a phone."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.browser.test_desk_languages import (
    ARABIC_DIGITS,
    LATIN_DIGITS,
    no_overflow_at_phone_width,
)
from tests.browser.test_desk_people import Scene, browsing, clean, confirm, open_as
from tests.conftest import ARTIFACTS, TIMEOUT, RedisServer, make_settings, running_server
from tests.e2e.deskkit import Desk, add_user
from tests.e2e.receiver import receiver
from ticker.newsroom.users import Users
from ticker.redis.connection import connect as redis_client
from ticker.redis.keys import Keys

SECOND = 1000
REFRESHED = 10 * SECOND  # the page asks every 3 s; a delivery takes a moment more
SCRIPT_TEXT = "<script>window.__xss=1</script> Flash: <b>drones</b> & \u0639\u0627\u062c\u0644"
# Valid (no spaces, ASCII), and hostile as markup: the page must show it as typed. On `ar`,
# for the linking of versions only, it is never sent anything (so never even looked up).
HOSTILE_URL = "https://hostile.invalid/<img/src=x/onerror=window.__xss=1>?a=<b>"


@pytest.fixture(scope="module")
async def scene(browser: Browser, redis_server: RedisServer) -> AsyncIterator[Scene]:
    prefix = "bw" + uuid.uuid4().hex[:8]
    redis = redis_client(redis_server.url)
    await add_user(redis, prefix, "ada", "admin")
    await add_user(redis, prefix, "nour", "admin")
    await Users(redis, Keys(prefix)).set_prefs("nour", lang="ar", channels=("en", "ar"))
    settings = make_settings(redis_server.url, prefix, channels="en,ar:ar:rtl:عاجل",
                             webhook_allow="127.0.0.1", webhook_retry_base=0.05)
    try:
        async with running_server(settings) as server, browsing(browser, server) as scene:
            yield scene
    finally:
        await redis.aclose()


def card(page: Page, url: str) -> Locator:
    return page.locator("#webhooks li.hook").filter(
        has=page.locator('[data-cell="url"]', has_text=url))


def cell(scope: Locator, name: str) -> Locator:
    return scope.locator(f'[data-cell="{name}"]')


async def add_webhook(page: Page, url: str, channels: Sequence[str],
                      urgencies: Sequence[str] = (), ops: Sequence[str] = ()) -> Locator:
    form = page.locator("#add-webhook")
    await form.locator('[name="url"]').fill(url)
    for name, values in (("channels", channels), ("urgencies", urgencies), ("ops", ops)):
        for value in values:
            await form.locator(f'input[name="{name}"][value="{value}"]').check()
    await form.locator('button[type="submit"]').click()
    return form


async def test_an_admin_adds_tests_dead_letters_retries_and_removes_a_webhook(
    scene: Scene
) -> None:
    page = await open_as(scene, "ada", "/desk/webhooks")
    await expect(page).to_have_title("Webhooks · Ticker desk")
    await expect(page.locator(".topbar .links a[aria-current=page]")).to_have_text("Webhooks")
    await expect(page.locator("#no-webhooks")).to_have_text("No webhooks yet.")
    refuse: dict[str, bool | None] = {"on": False}  # None: 503, a failure worth retrying

    def answer(n: int, mid: str) -> tuple[int, dict[str, str]]:
        return (503 if refuse["on"] is None else 410 if refuse["on"] else 204), {}

    async with receiver(answer=answer) as rec:
        # Refused next to their field: a URL with spaces (and markup), no channel.
        form = await add_webhook(page, "https://x.example/<img src=x onerror=alert(1)>", ["en"])
        url_error = form.locator('[data-error-for="url"]')
        await expect(url_error).to_have_text(
            "url must be printable ASCII without spaces (percent-encode the rest)")
        await expect(form.locator('[name="url"]')).to_have_attribute("aria-invalid", "true")
        await form.locator('input[name="channels"][value="en"]').uncheck()
        await add_webhook(page, rec.url, [])
        await expect(form.locator('[data-error-for="channels"]')).to_have_text(
            "Choose at least one channel.")
        await expect(url_error).to_be_hidden()
        await expect(page.locator("#secret-once")).to_be_hidden()

        # Added: the secret is shown once, with how to verify it.
        await add_webhook(page, rec.url, ["en"], ops=["publish"])
        await expect(form.locator('[data-cell="status"]')).to_have_text(
            f"Webhook added for {rec.url}.")
        once = page.locator("#secret-once")
        await expect(once).to_be_visible()
        await expect(once.locator("h2")).to_have_text(f"Signing secret for {rec.url}")
        await expect(once.locator(".once-warning")).to_have_text(
            "Copy it now. It will not be shown again.")
        await expect(once.locator(".hint")).to_contain_text(
            "Standard Webhooks: verify webhook-signature with this secret")
        secret = await page.locator("#secret-value").input_value()
        assert secret.startswith("whsec_")
        await page.locator("#secret-copy").click()
        await expect(page.locator("#secret-copied")).to_have_text("Copied.")
        assert await page.evaluate("() => navigator.clipboard.readText()") == secret
        rec.secret = secret  # the receiver verifies every request with what the page showed
        await expect(form.locator('[name="url"]')).to_have_value("")  # the form is reset
        await expect(form.locator('input[name="channels"]:checked')).to_have_count(0)

        hook = card(page, rec.url)
        await expect(hook).to_have_count(1)
        facts = {"channels": "en", "urgencies": "All", "ops": "Published", "by": "ada",
                 "state": "Up to date", "sent": "0", "waiting": "0", "dead": "0"}
        for name, text in facts.items():
            await expect(cell(hook, name)).to_have_text(text)
        sub_id = await cell(hook, "id").inner_text()
        assert sub_id.startswith("wh_")
        await expect(cell(hook, "url")).to_have_attribute("dir", "ltr")
        await expect(page.locator("#no-webhooks")).to_be_hidden()

        await page.locator("#secret-done").click()
        await expect(once).to_be_hidden()
        await expect(page.locator("#secret-value")).to_have_value("")
        await page.reload()
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        assert secret not in await page.content()

        # A test event arrives, signed with that secret; the page sees "sent" grow.
        await hook.get_by_role("button", name="Send a test event").click()
        await expect(cell(hook, "status")).to_have_text(
            f"A test event is on its way to {rec.url}.")
        (hit,) = await rec.wait_for(1)
        assert hit.verified and hit.body["type"] == "webhook.test" and hit.body["by"] == "ada"
        await expect(cell(hook, "sent")).to_have_text("1", timeout=REFRESHED)

        # A 410: the event is a dead letter; the page shows it, its item text as text.
        refuse["on"] = True
        desk = await Desk.sign_in(scene.server, "ada")
        try:
            item, = await desk.publish(SCRIPT_TEXT, urgency="flash")
        finally:
            await desk.close()
        await expect(cell(hook, "dead")).to_have_text("1", timeout=REFRESHED)
        await expect(cell(hook, "last-error")).to_have_text("Last error: HTTP 410")
        await expect(cell(hook, "state")).to_have_text("Up to date")
        dead = hook.locator("details.hook-dead")
        await dead.locator("summary").click()
        letter = dead.locator("li.dead-letter")
        await expect(letter).to_have_count(1)
        for name, text in (("error", "HTTP 410"), ("http-status", "410"), ("attempts", "1"),
                           ("type", "item.published"), ("channel", "en"),
                           ("item", SCRIPT_TEXT)):
            await expect(cell(letter, name)).to_have_text(text)
        assert (await cell(letter, "gave-up").inner_text()).strip()
        await page.screenshot(path=str(ARTIFACTS / "webhooks.png"), full_page=True)
        await clean(scene, page)

        # Retried once the receiver takes it: it gets the same event again, verified.
        refuse["on"] = False
        await letter.get_by_role("button", name="Retry").click()
        await expect(cell(hook, "status")).to_have_text(
            "Queued again, after what is waiting, with its original webhook-id.")
        hits = await rec.wait_for(2)
        assert hits[1].verified and hits[1].message_id == rec.hits[1].message_id
        assert hits[1].body["item"]["id"] == item and hits[1].body["item"]["text"] == SCRIPT_TEXT
        await expect(letter).to_have_count(0)
        await expect(cell(hook, "dead-note")).to_have_text("No dead letters.")
        await expect(cell(hook, "sent")).to_have_text("2", timeout=REFRESHED)
        await expect(cell(hook, "last-error")).to_be_hidden()

        # A receiver that fails: the card says it is retrying, why, and when it tries next.
        refuse["on"] = None
        await hook.get_by_role("button", name="Send a test event").click()
        await expect(cell(hook, "state")).to_have_text("Retrying", timeout=REFRESHED)
        await expect(cell(hook, "retrying")).to_have_text(re.compile(
            r"^Attempt \d+ failed \(HTTP 503\); next try (now|in \d+ seconds?)\.$"))
        await expect(cell(hook, "waiting")).to_have_text("1")
        await expect(cell(hook, "oldest")).to_have_text(re.compile(
            r"^The oldest waiting was queued (now|\d+ seconds? ago)\.$"))
        await expect(cell(hook, "last-error")).to_be_hidden()
        await page.screenshot(path=str(ARTIFACTS / "webhooks-retrying.png"), full_page=True)
        refuse["on"] = False
        await expect(cell(hook, "state")).to_have_text("Up to date", timeout=2 * REFRESHED)
        await expect(cell(hook, "sent")).to_have_text("3")
        await expect(cell(hook, "retrying")).to_be_hidden()
        await expect(cell(hook, "oldest")).to_be_hidden()

        # Removed after a confirmation (a "no" first).
        await hook.get_by_role("button", name="Remove").click()
        await confirm(page, f"Remove the webhook for {rec.url}?", "cancel")
        await expect(hook).to_have_count(1)
        await hook.get_by_role("button", name="Remove").click()
        await confirm(page, f"Remove the webhook for {rec.url}?")
        await expect(page.locator("#webhooks-status")).to_have_text(
            f"Webhook for {rec.url} removed.")
        await expect(hook).to_have_count(0)
        await expect(page.locator("#no-webhooks")).to_be_visible()
        await expect(page.locator("#add-webhook [name='url']")).to_be_focused()
        listed: Any = await page.evaluate(
            "() => fetch('/desk/api/webhooks').then((r) => r.json())")
        assert listed["webhooks"] == []
    await clean(scene, page)


async def test_a_hostile_url_and_item_text_are_shown_as_text(scene: Scene) -> None:
    page = await open_as(scene, "ada", "/desk/webhooks")
    await add_webhook(page, HOSTILE_URL, ["ar"], ["flash", "urgent"], ["versions"])
    hook = card(page, HOSTILE_URL)
    await expect(cell(hook, "url")).to_have_text(HOSTILE_URL)
    await expect(cell(hook, "urgencies")).to_have_text("Flash, Urgent")
    await expect(cell(hook, "ops")).to_have_text("Versions linked")
    await expect(page.locator("#secret-once h2")).to_have_text(
        f"Signing secret for {HOSTILE_URL}")
    await page.locator("#secret-done").click()
    await hook.get_by_role("button", name="Remove").click()
    await confirm(page, f"Remove the webhook for {HOSTILE_URL}?", "cancel")
    await clean(scene, page)
    # The server's page too: reloaded, it is text.
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    await expect(cell(hook, "url")).to_have_text(HOSTILE_URL)
    await clean(scene, page)
    await hook.get_by_role("button", name="Remove").click()
    await confirm(page, f"Remove the webhook for {HOSTILE_URL}?")
    await expect(hook).to_have_count(0)


async def test_an_admin_token_made_on_the_tokens_page_manages_webhooks(scene: Scene) -> None:
    page = await open_as(scene, "ada", "/desk/tokens")
    form = page.locator("#create-token")
    await form.locator('[name="name"]').fill("hooks")
    await form.get_by_label("Admin token (may also manage webhooks over the HTTP API)").check()
    await form.locator('button[type="submit"]').click()
    await expect(form.locator('[data-cell="status"]')).to_have_text("Admin token hooks created.")
    token = await page.locator("#token-value").input_value()
    await expect(page.locator('#tokens tr[data-name="hooks"] td.kind')).to_have_text(
        "Publishing and webhooks")
    await page.locator("#token-done").click()
    await form.locator('[name="name"]').fill("wire")
    await form.locator('button[type="submit"]').click()
    await expect(form.locator('[data-cell="status"]')).to_have_text("Token wire created.")
    plain = await page.locator("#token-value").input_value()
    await expect(page.locator('#tokens tr[data-name="wire"] td.kind')).to_have_text(
        "Publishing")
    await expect(form.get_by_role("checkbox")).not_to_be_checked()  # reset for the next one
    async with httpx.AsyncClient(base_url=scene.server.http, timeout=TIMEOUT) as http:
        r = await http.get("/api/webhooks", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        r = await http.get("/api/webhooks", headers={"Authorization": f"Bearer {plain}"})
        assert r.status_code == 403
    await page.reload()
    await expect(page.locator('#tokens tr[data-name="hooks"] td.kind')).to_have_text(
        "Publishing and webhooks")
    await page.screenshot(path=str(ARTIFACTS / "tokens-admin.png"), full_page=True)
    await clean(scene, page)


async def test_the_page_in_arabic_is_right_to_left_dead_letters_included(scene: Scene) -> None:
    # A subscription to a documentation address: its test event is refused at once (never
    # sent), so it is a dead letter to show in Arabic.
    desk = await Desk.sign_in(scene.server, "ada")
    try:
        r = await desk.post("/desk/api/webhooks", {"url": "https://192.0.2.10/hook",
                                                   "channels": ["en", "ar"]})
        assert r.status_code == 201, r.text
    finally:
        await desk.close()
    page = await open_as(scene, "nour", "/desk/webhooks")
    html = page.locator("html")
    await expect(html).to_have_attribute("lang", "ar")
    await expect(html).to_have_attribute("dir", "rtl")
    await expect(page).to_have_title("خطافات الويب · غرفة أخبار تيكر")
    await expect(page.locator(".topbar .links a[aria-current=page]")).to_have_text(
        "خطافات الويب")
    await expect(page.locator("#add-title")).to_have_text("إضافة خطاف ويب")
    await expect(page.locator('label[for="hook-url"]')).to_have_text("الرابط (URL)")
    await expect(page.locator("#hook-url")).to_have_attribute("dir", "ltr")
    labels = await page.locator('#add-webhook input[name="urgencies"]').evaluate_all(
        "(boxes) => boxes.map((b) => b.parentElement.textContent.trim())")
    assert labels == ["عاجل جدًا", "هام", "عاجل"], labels
    await expect(page.locator("#add-webhook button[type=submit]")).to_have_text("أضف خطاف الويب")

    hook = card(page, "https://192.0.2.10/hook")
    await expect(cell(hook, "urgencies")).to_have_text("الكل")
    await expect(cell(hook, "ops")).to_have_text("الكل")
    await expect(cell(hook, "channels")).to_have_text("en، ar")
    await expect(cell(hook, "state")).to_have_text("لا شيء معلّق")
    await expect(cell(hook, "sent")).to_have_text("٠")
    await hook.get_by_role("button", name="أرسل حدثًا تجريبيًا").click()
    await expect(cell(hook, "status")).to_have_text(
        "حدث تجريبي في طريقه إلى https://192.0.2.10/hook.")
    await expect(cell(hook, "dead")).to_have_text("١", timeout=REFRESHED)
    await expect(cell(hook, "last-error")).to_contain_text("آخر خطأ: ")
    await hook.locator("details.hook-dead summary").click()
    letter = hook.locator("li.dead-letter")
    await expect(letter).to_have_count(1)
    await expect(cell(letter, "type")).to_have_text("webhook.test")
    await expect(cell(letter, "http-status")).to_have_text("لا ردّ")
    await expect(cell(letter, "attempts")).to_have_text("١")
    await expect(letter.get_by_role("button")).to_have_text("أعد الإرسال")
    await expect(letter.locator("dt").first).to_have_text("توقّفت المحاولات (UTC)")
    when = await cell(letter, "gave-up").inner_text()
    assert ARABIC_DIGITS.search(when) and not LATIN_DIGITS.search(when), when
    # Mirrored: a card's heading (its URL) starts on the right, the state on its left.
    head = await hook.locator(".hook-head").bounding_box()
    url = await hook.locator(".hook-url").bounding_box()
    state = await cell(hook, "state").bounding_box()
    assert head is not None and url is not None and state is not None
    assert abs(url["x"] + url["width"] - (head["x"] + head["width"])) < 2, (head, url)
    assert state["x"] + state["width"] <= url["x"], (url, state)
    await hook.get_by_role("button", name="احذف").click()
    await expect(page.locator("#confirm-title")).to_have_text(
        "حذف خطاف الويب للرابط https://192.0.2.10/hook؟")
    await page.locator('#confirm-dialog button[value="cancel"]').click()
    await page.screenshot(path=str(ARTIFACTS / "webhooks-ar.png"), full_page=True)
    await no_overflow_at_phone_width(page, "webhooks-ar-phone.png")
    await clean(scene, page)
