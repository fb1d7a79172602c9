"""The demo page in real Chromium: an item shows within 1 s of publishing, a kill drops it."""

from __future__ import annotations

import time

import httpx
from playwright.async_api import Page, expect

from tests.conftest import ARTIFACTS, Server


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
