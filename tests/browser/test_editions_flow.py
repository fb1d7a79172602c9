"""One story in three editions, in real Chromium (docs/editions.md): a flash goes out in en;
the ar desk lists it "to translate" and translates it; both are on air and linked; a
correction in en asks the ar desk for an update until it confirms; a kill in en with every
version takes it off all three tickers and every feed."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.conftest import ARTIFACTS, RedisServer, Server, make_settings, running_server
from tests.e2e.deskkit import PASSWORD, add_user
from ticker.newsroom.users import Users
from ticker.redis.connection import connect as redis_client
from ticker.redis.keys import Keys

SECOND = 1000
CHANNELS = "en,ar:ar:rtl:عاجل,es:es:ltr:Última hora"
ENGLISH = "Flash: three drones launched from Yemen toward Eilat"
ARABIC = "عاجل: إطلاق ثلاث مسيّرات من اليمن نحو إيلات"


@dataclass
class Newsroom:
    server: Server
    contexts: list[BrowserContext]
    maria: Page  # the English desk
    layla: Page  # the Arabic desk
    readers: dict[str, Page]
    errors: list[str]


async def signed_in(context: BrowserContext, server: Server, name: str) -> Page:
    page = await context.new_page()
    await page.goto(server.http + "/desk")
    await page.locator("#username").fill(name)
    await page.locator("#password").fill(PASSWORD)
    await page.locator("#password").press("Enter")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true",
                                                         timeout=10 * SECOND)
    return page


@pytest.fixture
async def newsroom(browser: Browser, redis_server: RedisServer) -> AsyncIterator[Newsroom]:
    prefix = "ed" + uuid.uuid4().hex[:8]
    redis = redis_client(redis_server.url)
    users = Users(redis, Keys(prefix))
    channels = ("en", "ar", "es")
    await add_user(redis, prefix, "maria", "editor")
    await add_user(redis, prefix, "layla", "editor")
    await users.set_prefs("maria", channels=channels, editions=["en"])
    await users.set_prefs("layla", channels=channels, editions=["ar"])
    errors: list[str] = []
    async with running_server(make_settings(redis_server.url, prefix,
                                            channels=CHANNELS)) as server:
        contexts = [await browser.new_context(viewport={"width": 1280, "height": 900})
                    for _ in range(3)]
        readers = {}
        for edition in channels:
            reader = await contexts[2].new_page()
            reader.on("pageerror", lambda exc: errors.append(str(exc)))
            await reader.goto(f"{server.http}/?edition={edition}")
            await expect(reader.locator("breaking-ticker")).to_have_attribute(
                "data-state", "live", timeout=10 * SECOND)
            readers[edition] = reader
        maria = await signed_in(contexts[0], server, "maria")
        layla = await signed_in(contexts[1], server, "layla")
        for page in (maria, layla):
            page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            yield Newsroom(server, contexts, maria, layla, readers, errors)
        finally:
            for context in contexts:
                await context.close()
    await redis.aclose()
    assert not errors, f"JavaScript errors: {errors}"


async def test_a_flash_is_translated_linked_corrected_and_killed_in_every_edition(
    newsroom: Newsroom
) -> None:
    room = newsroom
    maria, layla = room.maria, room.layla
    # Each desk opens on its editor's edition; the compose form too.
    await expect(maria.locator("#view-en")).to_be_checked()
    await expect(layla.locator("#view-ar")).to_be_checked()
    await expect(layla.locator('section.channel[data-channel="en"]')).to_be_hidden()
    await expect(maria.locator("#ch-en")).to_be_checked()
    await expect(maria.locator("#ch-ar")).not_to_be_checked()

    # 1. A flash in en.
    await maria.bring_to_front()
    await maria.locator("#text").fill(ENGLISH)
    await maria.locator("#u-flash").check()
    await maria.locator("#publish").click()
    en_row = maria.locator('section[data-channel="en"] li.item', has_text=ENGLISH)
    await expect(en_row).to_be_visible(timeout=5 * SECOND)
    await expect(room.readers["en"].locator("breaking-ticker .text", has_text=ENGLISH).first
                 ).to_be_visible(timeout=5 * SECOND)

    # 2. The ar desk lists it to translate, with its age; so does es's queue.
    await layla.bring_to_front()
    queue = layla.locator('section.channel[data-channel="ar"] section.queue')
    await expect(queue).to_be_visible(timeout=5 * SECOND)
    entry = queue.locator("li.queue-item", has_text=ENGLISH)
    await expect(entry).to_be_visible()
    await expect(entry.locator(".age")).to_have_text(re.compile(r"^(just now|\d+ \w+ ago)$"))
    await expect(entry.locator(".from")).to_have_text("en")
    await layla.locator("#view-all").check()
    await expect(layla.locator('section.channel[data-channel="es"] li.queue-item',
                               has_text=ENGLISH)).to_be_visible()
    await layla.locator("#view-ar").check()

    # 3. Translated: the original beside the form, the form right to left.
    await entry.get_by_role("button", name="Translate").click()
    dialog = layla.locator("#translate-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#translate-original")).to_have_text(ENGLISH)
    await expect(dialog.locator("#translate-edition")).to_have_value("ar")
    await expect(dialog.locator("#translate-text")).to_have_attribute("dir", "rtl")
    await dialog.locator("#translate-text").fill(ARABIC)
    await dialog.locator("#translate-save").click()
    await expect(dialog).to_be_hidden(timeout=5 * SECOND)
    await expect(queue).to_be_hidden(timeout=5 * SECOND)
    ar_row = layla.locator('section[data-channel="ar"] li.item', has_text=ARABIC)
    await expect(ar_row).to_be_visible()
    await expect(ar_row.locator(".versions")).to_contain_text("translation; also in en")

    # 4. Both on air and linked, on the tickers and in the JSON.
    await expect(room.readers["ar"].locator("breaking-ticker .text", has_text=ARABIC).first
                 ).to_be_visible(timeout=5 * SECOND)
    await expect(en_row.locator(".versions")).to_contain_text("also in ar", timeout=5 * SECOND)
    async with httpx.AsyncClient(base_url=room.server.http) as http:
        en_items = (await http.get("/api/channels/en/items")).json()["items"]
        ar_items = (await http.get("/api/channels/ar/items")).json()["items"]
    assert len(en_items) == len(ar_items) == 1
    both = {"en": en_items[0]["id"], "ar": ar_items[0]["id"]}
    assert en_items[0]["versions"] == ar_items[0]["versions"] == both
    assert ar_items[0]["story"] == f"en:{both['en']}"
    ticker_items = await room.readers["ar"].evaluate(
        "() => document.querySelector('breaking-ticker').items.map(i => i.versions)")
    assert ticker_items == [both]

    # 5. A correction in en: the ar line needs an update until layla says it needs none.
    await maria.bring_to_front()
    await en_row.get_by_role("button", name="Correct").click()
    await maria.locator("#correct-text").fill(ENGLISH.replace("three", "four"))
    await maria.locator("#correct-save").click()
    await layla.bring_to_front()
    flag = ar_row.locator(".flag.needs-update")
    await expect(flag).to_have_text("Needs update: en was corrected", timeout=5 * SECOND)
    await ar_row.get_by_role("button", name="No change needed").click()
    await expect(flag).to_have_count(0, timeout=5 * SECOND)

    # 6. Killed in en with every version.
    await maria.bring_to_front()
    en_row = maria.locator('section[data-channel="en"] li.item')
    await en_row.get_by_role("button", name="Kill").click()
    kill = maria.locator("#kill-dialog")
    await expect(kill.locator("#kill-all")).to_be_checked()
    await expect(kill.locator("#kill-all-label")).to_have_text("Kill in en, ar (every version)")
    await expect(kill.locator("#kill-versions")).to_contain_text(ARABIC)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await maria.screenshot(path=str(ARTIFACTS / "editions-kill-dialog.png"))
    await kill.locator("#kill-reason").fill("not confirmed")
    await kill.locator("#kill-confirm").click()

    for edition in ("en", "ar", "es"):  # nothing of the story is left on any ticker
        await expect(room.readers[edition].locator("breaking-ticker .item")).to_have_count(
            0, timeout=5 * SECOND)
    await expect(layla.locator("li.item", has_text=ARABIC)).to_have_count(0)
    await layla.locator("#view-all").check()
    await expect(layla.locator("li.queue-item")).to_have_count(0)
    async with httpx.AsyncClient(base_url=room.server.http) as http:
        for edition in ("en", "ar", "es"):
            assert (await http.get(f"/feeds/{edition}.json")).json()["items"] == []
            assert (await http.get(f"/api/channels/{edition}/items")).json()["items"] == []
        audit = (await http.get("/desk/api/audit")).status_code
    assert audit == 401  # the audit needs a session; the desk shows it below
    await maria.goto(room.server.http + "/desk/audit")
    kills = maria.locator('tr[data-action="kill"]')
    await expect(kills).to_have_count(2)
