"""The demo page in real Chromium: an item shows within 1 s of publishing, a kill drops it."""

from __future__ import annotations

import time

import httpx
from playwright.async_api import Page, expect

from tests.conftest import ARTIFACTS, Server, make_settings, running_server


async def test_demo_page_shows_a_published_item_within_a_second_and_drops_a_killed_one(
    server: Server, token: str, page: Page
) -> None:
    await page.goto(server.http + "/")
    ticker = page.locator("breaking-ticker")
    await expect(ticker).to_have_attribute("data-state", "live", timeout=10_000)

    text = "Three drones launched from Yemen toward Eilat"
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.http) as http:
        started = time.monotonic()
        r = await http.post("/api/channels/en/items", headers=auth,
                            json={"text": text, "source": "Israeli media"})
        assert r.status_code == 201
        item_id = r.json()["id"]
        shown = ticker.get_by_text(text).first
        await expect(shown).to_be_visible(timeout=1000)
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, f"shown after {elapsed:.3f}s"
        assert await page.evaluate(
            "() => document.querySelector('breaking-ticker').items.map(i => i.id)"
        ) == [item_id]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "demo-page-en.png"))

        r = await http.post(f"/api/channels/en/items/{item_id}/kill", headers=auth,
                            json={"reason": "unconfirmed"})
        assert r.status_code == 201
        started = time.monotonic()
        await expect(ticker.get_by_text(text)).to_have_count(0, timeout=1000)
        assert time.monotonic() - started < 1.0
        assert await page.evaluate(
            "() => document.querySelector('breaking-ticker').items.length") == 0


async def test_the_edition_switcher_moves_the_ticker_without_a_reload_and_feeds_are_advertised(
    redis_url: str, prefix: str, token: str, page: Page
) -> None:
    """En / Ar / Es: a click moves the ticker to that edition (right to left for Arabic)
    without reloading; the address keeps the choice; every edition's feeds are linked."""
    settings = make_settings(redis_url, prefix, channels="en,ar:ar:rtl:عاجل,es:es:ltr:Última hora")
    auth = {"Authorization": f"Bearer {token}"}
    async with running_server(settings) as server, httpx.AsyncClient(base_url=server.http) as http:
        for channel, text in (("en", "Three drones launched toward Eilat"),
                              ("ar", "ثلاث مسيّرات أُطلقت نحو إيلات"),
                              ("es", "Tres drones lanzados hacia Eilat")):
            r = await http.post(f"/api/channels/{channel}/items", headers=auth,
                                json={"text": text})
            assert r.status_code == 201
        await page.goto(server.http + "/")
        ticker = page.locator("breaking-ticker")
        await expect(ticker).to_have_attribute("data-state", "live", timeout=10_000)
        english = ticker.get_by_text("Three drones launched toward Eilat")
        await expect(english.first).to_be_visible(timeout=5000)
        switcher = page.get_by_role("navigation", name="Edition")
        assert await switcher.get_by_role("link").all_inner_texts() == ["En", "Ar", "Es"]
        await expect(switcher.get_by_role("link", name="En")).to_have_attribute(
            "aria-current", "true")

        # Every edition's three feeds, in <head>, each one answering with its type.
        links = await page.eval_on_selector_all(
            'link[rel="alternate"]',
            "ls => ls.map(l => [l.getAttribute('href'), l.type, l.hreflang])")
        expected = [(f"/feeds/{name}.{ext}", kind, lang)
                    for name, lang in (("en", "en"), ("ar", "ar"), ("es", "es"))
                    for ext, kind in (("json", "application/feed+json"),
                                      ("rss", "application/rss+xml"),
                                      ("atom", "application/atom+xml"))]
        assert [tuple(x) for x in links] == expected
        for href, kind, _ in expected:
            r = await http.get(href)
            assert r.status_code == 200 and r.headers["content-type"].startswith(kind), href

        await page.evaluate("() => { window.sameDocument = true; }")
        await switcher.get_by_role("link", name="Ar").click()
        await expect(ticker).to_have_attribute("channel", "ar")
        arabic = ticker.get_by_text("ثلاث مسيّرات أُطلقت نحو إيلات")
        await expect(arabic.first).to_be_visible(timeout=5000)
        await expect(english).to_have_count(0)
        assert await page.evaluate(
            "() => document.querySelector('breaking-ticker').items.map(i => i.text)"
        ) == ["ثلاث مسيّرات أُطلقت نحو إيلات"]
        assert await page.evaluate("() => window.sameDocument === true")  # no reload
        assert await page.evaluate(
            "() => getComputedStyle(document.querySelector('breaking-ticker')).direction"
        ) == "rtl"
        await expect(page.locator(".ticker-slot")).to_have_attribute("lang", "ar")
        await expect(switcher.get_by_role("link", name="Ar")).to_have_attribute(
            "aria-current", "true")
        await expect(switcher.get_by_role("link", name="En")).not_to_have_attribute(
            "aria-current", "true")
        assert page.url.endswith("/?edition=ar")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "demo-page-ar.png"))

        # A live item of the chosen edition arrives; the others' do not.
        r = await http.post("/api/channels/es/items", headers=auth, json={"text": "Solo en es"})
        assert r.status_code == 201
        r = await http.post("/api/channels/ar/items", headers=auth,
                            json={"text": "عاجل: خبر جديد"})
        assert r.status_code == 201
        await expect(ticker.get_by_text("عاجل: خبر جديد").first).to_be_visible(timeout=2000)
        await expect(ticker.get_by_text("Solo en es")).to_have_count(0)

        # The address keeps the choice: a reload (or a shared link) opens that edition.
        await page.reload()
        await expect(ticker).to_have_attribute("channel", "ar")
        await expect(ticker).to_have_attribute("data-state", "live", timeout=10_000)
        # Without script, each switcher entry is a plain link to the page of that edition.
        assert await switcher.get_by_role("link").evaluate_all(
            "ls => ls.map(l => l.getAttribute('href'))") == [
                "/?edition=en", "/?edition=ar", "/?edition=es"]
        unknown = await http.get("/?edition=zz")
        assert unknown.status_code == 200
        assert '<breaking-ticker channel="en">' in unknown.text  # the first edition
        es = await http.get("/?edition=es")
        assert '<div class="ticker-slot" lang="es" dir="ltr">' in es.text
        assert '<breaking-ticker channel="es">' in es.text
