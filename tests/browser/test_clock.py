"""A reader whose computer clock is 10 minutes off still sees expiry at the right time:
the widget measures time against the server's `now`, never against its own clock."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.conftest import Server


@pytest.mark.parametrize("skew", [timedelta(minutes=10), timedelta(minutes=-10)])
async def test_expiry_is_right_with_a_clock_ten_minutes_off(
    server: Server, token: str, page: Page, skew: timedelta
) -> None:
    await page.clock.set_system_time(datetime.now() + skew)
    await page.goto(server.http + "/")
    ticker = page.locator("breaking-ticker")
    await expect(ticker).to_have_attribute("data-state", "live", timeout=10_000)
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.http) as http:
        long = await http.post("/api/channels/en/items", headers=auth,
                               json={"text": "Stays for an hour", "ttl": 3600})
        short = await http.post("/api/channels/en/items", headers=auth,
                                json={"text": "Leaves in three seconds", "ttl": 3})
        assert long.status_code == short.status_code == 201
    published = time.monotonic()
    # A clock 10 min fast would drop the short item at once; 10 min slow would keep it
    # for 10 min. It must show now, and go after about 3 s.
    await expect(ticker.get_by_text("Leaves in three seconds").first).to_be_visible(
        timeout=2000)
    await expect(ticker.get_by_text("Leaves in three seconds")).to_have_count(0, timeout=6000)
    gone_after = time.monotonic() - published
    assert 2.0 < gone_after < 6.0, gone_after
    await expect(ticker.get_by_text("Stays for an hour").first).to_be_visible()
