"""The desk in real Chromium, next to the readers' page: sign in, publish with Ctrl+Enter and
see it on the ticker within a second, correct it, hold and release it, kill it with a
reason; the audit page shows each step; keyboard only; phone width; the preview is the
ticker's own rendering."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from tests.conftest import ARTIFACTS, RedisServer, Server, make_settings, running_server
from tests.e2e.deskkit import PASSWORD, add_user
from ticker.redis.connection import connect as redis_client

SECOND = 1000


@dataclass
class Scene:
    server: Server
    context: BrowserContext
    desk: Page
    reader: Page
    errors: list[str]


@pytest.fixture(scope="module")
async def scene(browser: Browser, redis_server: RedisServer) -> AsyncIterator[Scene]:
    prefix = "bd" + uuid.uuid4().hex[:8]
    redis = redis_client(redis_server.url)
    await add_user(redis, prefix, "alice", "editor")
    await add_user(redis, prefix, "carol", "contributor")
    async with running_server(make_settings(redis_server.url, prefix)) as server:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        desk, reader = await context.new_page(), await context.new_page()
        for page in (desk, reader):
            page.on("pageerror", lambda exc: errors.append(str(exc)))
        await reader.goto(server.http + "/")
        await expect(reader.locator("breaking-ticker")).to_have_attribute(
            "data-state", "live", timeout=10 * SECOND)
        # Chromium paces frames of a tab that is not in front (1 per second here): the desk is
        # where we act, so it is in front; the reader page is updated by its socket anyway.
        await desk.bring_to_front()
        try:
            yield Scene(server, context, desk, reader, errors)
        finally:
            await context.close()
    await redis.aclose()
    assert not errors, f"JavaScript errors: {errors}"


def on_reader(scene: Scene, text: str) -> Locator:
    return scene.reader.locator("breaking-ticker .run:not(.dup) .text", has_text=text)


def desk_item(scene: Scene, text: str) -> Locator:
    return scene.desk.locator("#onair li.item", has=scene.desk.locator(".text", has_text=text))


async def within_a_second(locator: Locator, started: float, *, gone: bool = False) -> float:
    if gone:
        await expect(locator).to_have_count(0, timeout=SECOND)
    else:
        await expect(locator).to_be_visible(timeout=SECOND)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"{elapsed:.3f} s"
    return elapsed


async def test_sign_in_with_the_keyboard(scene: Scene) -> None:
    desk = scene.desk
    await desk.goto(scene.server.http + "/desk")
    assert desk.url.endswith("/login?next=/desk")
    await expect(desk.locator("#username")).to_be_focused()  # autofocus
    await desk.keyboard.type("alice")
    await desk.keyboard.press("Tab")
    await desk.keyboard.type("wrong password")
    await desk.keyboard.press("Enter")
    await expect(desk.locator("#form-error")).to_have_text("Wrong user name or password.")
    await expect(desk.locator("#username")).to_have_value("alice")
    await desk.locator("#password").fill(PASSWORD)
    await desk.keyboard.press("Enter")
    await desk.wait_for_url("**/desk")
    await expect(desk.locator("body")).to_have_attribute("data-ready", "true")
    await expect(desk.locator("#live-status")).to_have_text("Live", timeout=5 * SECOND)


async def test_publish_correct_hold_release_kill_and_audit(scene: Scene) -> None:
    desk = scene.desk
    text = "Three drones launched from Yemen toward Eilat"

    # Compose with the keyboard; the preview is what the ticker will show.
    await desk.locator("#text").focus()
    await desk.keyboard.type(text)
    await expect(desk.locator("#text-count")).to_have_text(f"{len(text)} / 280")
    await desk.locator("#source").fill("Israeli media")
    preview = desk.locator('#preview [data-channel="en"] .preview-ticker .run .text')
    await expect(preview).to_have_text(text)
    preview_html = await desk.evaluate(
        "() => document.querySelector('#preview [data-channel=\"en\"] .preview-ticker')"
        ".shadowRoot.querySelector('.run .in').outerHTML")

    started = time.monotonic()
    await desk.locator("#text").focus()
    await desk.keyboard.press("Control+Enter")
    elapsed = await within_a_second(on_reader(scene, text), started)
    await expect(desk.locator("#compose-status")).to_contain_text("Published to en")
    await expect(desk.locator("#text")).to_have_value("")
    await expect(desk.locator("#text")).to_be_focused()
    await expect(desk_item(scene, text)).to_be_visible()
    await expect(desk_item(scene, text).locator(".by")).to_have_text("by alice")
    # The preview was the ticker's own rendering of this item.
    reader_html = await scene.reader.evaluate(
        "() => document.querySelector('breaking-ticker').shadowRoot"
        ".querySelector('.run:not(.dup) .item .in').outerHTML")
    assert preview_html == reader_html
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await desk.screenshot(path=str(ARTIFACTS / "desk.png"), full_page=True)
    await scene.reader.screenshot(path=str(ARTIFACTS / "reader-page.png"))
    print(f"publish -> reader page: {elapsed * 1000:.0f} ms")

    # Correct: new text and the corrected mark on the reader page.
    corrected = "Two drones launched from Yemen toward Eilat"
    await desk_item(scene, text).locator('button[data-op="correct"]').focus()
    await desk.keyboard.press("Enter")
    dialog = desk.locator("#correct-dialog")
    await expect(dialog).to_be_visible()
    await expect(desk.locator("#correct-text")).to_be_focused()
    await desk.locator("#correct-text").fill(corrected)
    await desk.locator("#correct-reason").fill("the army says two")
    started = time.monotonic()
    await desk.keyboard.press("Control+Enter")
    await within_a_second(on_reader(scene, corrected), started)
    mark = scene.reader.locator("breaking-ticker .run:not(.dup) .item .corr")
    await expect(mark).to_have_text("Corrected")
    await expect(on_reader(scene, text)).to_have_count(0)
    await expect(dialog).to_be_hidden()
    item = desk_item(scene, corrected)
    await expect(item.locator(".flag.corrected")).to_have_text("Corrected · v2")
    # focus went back to the button that opened the dialog
    await expect(item.locator('button[data-op="correct"]')).to_be_focused()

    # Hold hides it everywhere; release brings it back.
    started = time.monotonic()
    await item.locator('button[data-op="hold"]').click()
    await within_a_second(on_reader(scene, corrected), started, gone=True)
    await expect(item.locator(".flag.held")).to_be_visible()
    started = time.monotonic()
    await item.locator('button[data-op="release"]').click()
    await within_a_second(on_reader(scene, corrected), started)
    await expect(item.locator(".flag.held")).to_have_count(0)

    # Kill asks for a reason, and confirmation.
    await item.locator('button[data-op="kill"]').click()
    kill = desk.locator("#kill-dialog")
    await expect(kill).to_be_visible()
    await expect(desk.locator("#kill-item-text")).to_have_text(corrected)
    await desk.locator("#kill-confirm").click()
    await expect(desk.locator("#kill-reason-error")).to_be_visible()
    await expect(desk.locator("#kill-reason")).to_have_attribute("aria-invalid", "true")
    await expect(on_reader(scene, corrected)).to_be_visible()  # nothing happened
    await desk.keyboard.press("Escape")
    await expect(kill).to_be_hidden()
    await expect(on_reader(scene, corrected)).to_be_visible()
    await item.locator('button[data-op="kill"]').click()
    await desk.locator("#kill-reason").fill("unconfirmed")
    started = time.monotonic()
    await desk.locator("#kill-confirm").click()
    await within_a_second(on_reader(scene, corrected), started, gone=True)
    await expect(desk_item(scene, corrected)).to_have_count(0)

    # The audit trail has every step, by alice, newest first.
    audit = await scene.context.new_page()
    await audit.goto(scene.server.http + "/desk/audit")
    rows = audit.locator("#audit-table tbody tr")
    steps = [(await rows.nth(i).locator(".what").text_content(),
              await rows.nth(i).locator(".who").text_content()) for i in range(6)]
    assert steps == [("kill", "alice"), ("release", "alice"), ("hold", "alice"),
                     ("correct", "alice"), ("publish", "alice"), ("login", "alice")]
    await expect(rows.nth(0).locator(".reason")).to_have_text("unconfirmed")
    await expect(rows.nth(3).locator(".before")).to_have_text(text)
    await expect(rows.nth(3).locator(".after")).to_have_text(corrected)
    await expect(rows.nth(3).locator(".reason")).to_have_text("the army says two")
    await audit.screenshot(path=str(ARTIFACTS / "audit.png"), full_page=True)
    await audit.locator("#f-user").fill("nobody")
    await audit.keyboard.press("Enter")
    await expect(audit.locator("#audit-table tbody")).to_have_text("No entries.")
    await audit.close()
    await desk.bring_to_front()


async def test_errors_show_next_to_their_fields(scene: Scene) -> None:
    desk = scene.desk
    await desk.locator("#text").fill("x" * 281)
    await expect(desk.locator("#text-count")).to_have_text("281 / 280 (1 too many)")
    await expect(desk.locator("#text-count")).to_have_class("count over")
    await desk.locator("#text").press("Control+Enter")
    await expect(desk.locator("#text-error")).to_have_text(
        "The line is 281 characters; the limit is 280.")
    await expect(desk.locator("#text")).to_be_focused()
    # The server's own refusals land next to their field too.
    await desk.locator("#text").fill("Headline with a hidden \u202e override")
    await desk.locator("#text").press("Control+Enter")
    await expect(desk.locator("#text-error")).to_contain_text("bidi control character U+202E")
    await desk.locator("#text").fill("Fine headline")
    await desk.locator(".more summary").click()
    await desk.locator("#tags").fill("not a tag!")
    await desk.locator("#text").press("Control+Enter")
    await expect(desk.locator("#tags-error")).to_contain_text("tag")
    await expect(desk.locator("#tags")).to_be_focused()
    await expect(desk.locator("#text-error")).to_be_hidden()
    await desk.locator("#tags").fill("")
    await desk.locator("#ch-en").uncheck()
    await desk.locator("#text").press("Control+Enter")
    await expect(desk.locator("#channels-error")).to_have_text("Choose at least one channel.")
    await desk.locator("#ch-en").check()
    await desk.locator("#text").fill("")
    await expect(on_reader(scene, "Fine headline")).to_have_count(0)


async def test_rtl_preview_scheduled_line_and_phone_width(scene: Scene) -> None:
    desk = scene.desk
    await desk.locator("#ch-ar").check()
    await desk.locator("#text").fill("قطر: الإفراج عن الأسرى سيمثل نهاية الحرب")
    bar_dir = await desk.evaluate(
        "() => document.querySelector('#preview [data-channel=\"ar\"] .preview-ticker')"
        ".shadowRoot.querySelector('.bar').getAttribute('dir')")
    assert bar_dir == "rtl"
    await desk.locator("#u-urgent").check()
    tag = desk.locator('#preview [data-channel="ar"] .preview-ticker .tag')
    await expect(tag).to_have_text("هام")  # the ticker's own Arabic label for "urgent"
    await desk.locator("#ch-ar").uncheck()
    await expect(desk.locator('#preview [data-channel="ar"]')).to_have_count(0)
    await desk.locator("#text").fill("")

    await desk.set_viewport_size({"width": 375, "height": 800})
    try:
        width = await desk.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375, f"the desk is {width} px wide at phone width"
        await desk.locator("#text").fill("Phone-width line")
        started = time.monotonic()
        await desk.locator("#text").press("Meta+Enter")  # Cmd+Enter on a Mac keyboard
        await within_a_second(on_reader(scene, "Phone-width line"), started)
        buttons = desk_item(scene, "Phone-width line").locator("button")
        for i in range(await buttons.count()):
            box = await buttons.nth(i).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
            assert box["height"] >= 32  # a finger can hit it
        await desk.screenshot(path=str(ARTIFACTS / "desk-phone.png"), full_page=True)
    finally:
        await desk.set_viewport_size({"width": 1280, "height": 900})


async def test_every_action_is_reachable_with_tab(scene: Scene) -> None:
    desk = scene.desk
    item = desk_item(scene, "Phone-width line")
    await expect(item).to_be_visible()
    await item.locator('button[data-op="correct"]').focus()
    seen = []
    for _ in range(6):
        await desk.keyboard.press("Tab")
        seen.append(await desk.evaluate("() => document.activeElement.dataset.op || ''"))
    # Translate: the line has no ar version yet (docs/editions.md).
    assert seen == ["translate", "hold", "pin", "extend", "kill", seen[5]]
    # Pin with the keyboard; the focus stays on the (redrawn) button.
    await item.locator('button[data-op="pin"]').focus()
    await desk.keyboard.press("Enter")
    await expect(item.locator(".flag.pinned")).to_be_visible()
    await expect(item.locator('button[data-op="unpin"]')).to_be_focused()
    # Extend through its dialog, keyboard only.
    await item.locator('button[data-op="extend"]').focus()
    await desk.keyboard.press("Enter")
    await expect(desk.locator("#extend-ttl")).to_be_focused()
    await desk.keyboard.press("ArrowDown")
    await desk.keyboard.press("Control+Enter")
    await expect(desk.locator("#extend-dialog")).to_be_hidden()
    await expect(item.locator(".expiry")).to_contain_text("expires in 2 h")


async def test_a_contributors_line_goes_on_air_when_an_editor_approves_it(
    scene: Scene, browser: Browser
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        carol = await context.new_page()
        carol.on("pageerror", lambda exc: scene.errors.append(str(exc)))
        await carol.goto(scene.server.http + "/login")
        await carol.fill("#username", "carol")
        await carol.fill("#password", PASSWORD)
        await carol.keyboard.press("Enter")
        await carol.wait_for_url("**/desk")
        await expect(carol.locator("#publish")).to_have_text("Send for approval")
        await expect(carol.locator('#onair button[data-op]')).to_have_count(0)  # no ops
        await carol.locator("#text").fill("Ferry service resumes at dawn")
        await carol.locator("#text").press("Control+Enter")
        await expect(carol.locator("#compose-status")).to_have_text(
            "Sent to the editors for approval.")
        mine = carol.locator("#pending li.job", has_text="Ferry service resumes at dawn")
        await expect(mine.locator('button[data-action="cancel"]')).to_have_text("Withdraw")
        await expect(on_reader(scene, "Ferry service resumes at dawn")).to_have_count(0)

        desk = scene.desk
        await desk.bring_to_front()
        job = desk.locator("#pending li.job", has_text="Ferry service resumes at dawn")
        await expect(job.locator(".by")).to_have_text("by carol")
        started = time.monotonic()
        await job.locator('button[data-action="approve"]').click()
        await within_a_second(on_reader(scene, "Ferry service resumes at dawn"), started)
        await expect(desk.locator("#pending-section")).to_be_hidden()
        item = desk_item(scene, "Ferry service resumes at dawn")
        await expect(item.locator(".by")).to_have_text("by carol")
        await expect(mine).to_have_count(0)  # carol's desk is live too
    finally:
        await context.close()
        await scene.desk.bring_to_front()
