"""<breaking-ticker> in real Chromium against real servers: the pause control by keyboard,
reduced motion, the right-to-left `ar` channel, embedding on another origin, the SSE fallback
when websockets fail, and a server restart (stale indicator, then nothing lost).
Screenshots of the `en` and `ar` tickers go to tests.conftest.ARTIFACTS."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Browser, Page, expect
from redis.asyncio import Redis
from starlette.types import Receive, Scope, Send

from tests.conftest import ARTIFACTS, TIMEOUT, Server, free_port, make_settings, running_server
from tests.e2e.ticker_node import node, start_node
from ticker.redis.keys import Keys

pytestmark = pytest.mark.browser

WAIT_MS = int(TIMEOUT * 1000)
EN_ITEMS = [
    "Port strike ends after 19 days as dockworkers accept a three-year wage deal",
    "Flood defences hold as the river peaks a metre above its record level",
    "Budget vote delayed to Thursday after coalition partners reject the fuel levy",
    "Deep-sea survey finds a coral reef twice the size of earlier estimates",
    "Airline orders 60 narrow-body jets in its largest purchase in a decade",
    "Ceasefire monitors arrive at the border crossing as aid convoys resume",
]
AR_ITEMS = [
    "الجزيرة: انفجار في ميناء Beirut بعد 3 ساعات من اجتماع NATO",
    "وزارة الخارجية القطرية: الإفراج عن الأسرى سيمهد لإنهاء الحرب",
    "انقطاع الكهرباء في Gaza City للمرة الثانية خلال 24 ساعة",
    "مراسل الميادين في لبنان: غارات على 5 بلدات جنوبية",
    "الأمم المتحدة: وصول 40 شاحنة مساعدات عبر معبر Rafah",
    "ارتفاع أسعار النفط إلى 85 دولاراً للبرميل بعد قرار OPEC",
]

# -- page helpers (the element's public API and its open shadow root) ---------------------

ELEMENT = "document.querySelector('breaking-ticker')"
TRACK_X = f"""() => {{
  const root = {ELEMENT}.shadowRoot;
  const x = new DOMMatrixReadOnly(getComputedStyle(root.querySelector('.track')).transform).m41;
  return [x, root.querySelector('.run').getBoundingClientRect().width];
}}"""
# Every item's <time>: its machine-readable instant, and the clock in `lang`.
CLOCKS = f"""(lang) => {{
  const items = new Map({ELEMENT}.items.map((i) => [i.id, i]));
  const fmt = new Intl.DateTimeFormat(lang, {{ hour: 'numeric', minute: '2-digit' }});
  const times = [...{ELEMENT}.shadowRoot.querySelectorAll('.run .item')].map((li) => {{
    const it = items.get(li.dataset.id), t = li.querySelector('time');
    return t.dateTime === new Date(it.ts).toISOString() && t.textContent === fmt.format(it.ts);
  }});
  return times.length > 0 && times.every(Boolean);
}}"""
SSE_LIVE = f"() => {ELEMENT}.transport === 'sse' && {ELEMENT}.state === 'live'"
RUNNING = f"""() => {{
  const root = {ELEMENT}.shadowRoot;
  return root.getAnimations().concat(document.getAnimations())
    .filter((a) => a.playState === 'running').length;
}}"""


async def texts(page: Page) -> list[str]:
    value: list[str] = await page.evaluate(f"() => {ELEMENT}.items.map((i) => i.text)")
    return value


async def wait_js(page: Page, expression: str, arg: Any = None) -> None:
    await page.wait_for_function(expression, arg=arg, timeout=WAIT_MS)


async def wait_items(page: Page, wanted: list[str]) -> None:
    """Until the element shows exactly `wanted` (any order)."""
    await wait_js(page, f"(w) => {{ const t = {ELEMENT}.items.map((i) => i.text).sort();"
                        " return JSON.stringify(t) === JSON.stringify(w.slice().sort()); }",
                  wanted)


async def drift(page: Page, seconds: float = 0.45) -> float:
    """How far the track moved in `seconds` (px, + is rightwards), across the loop's wrap."""
    # Two frames first: a pause or play applies to the rendered position at the next frame.
    await page.evaluate("() => new Promise((r) => requestAnimationFrame("
                        "() => requestAnimationFrame(r)))")
    x0, width = await page.evaluate(TRACK_X)
    await asyncio.sleep(seconds)  # a measurement interval, not a synchronisation
    x1, _ = await page.evaluate(TRACK_X)
    d = float(x1 - x0)
    if width > 0:
        d = (d + width / 2) % width - width / 2
    return d


async def publish(redis: Redis, prefix: str, channel: str, items: list[str]) -> list[str]:
    """XADD straight into the channel's stream, as any newsroom service may."""
    key = Keys(prefix).stream(channel)
    return [(await redis.xadd(key, {"text": text})).decode() for text in items]


def shot(name: str) -> str:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return str(ARTIFACTS / name)


# -- a second origin: a tiny real HTTP server for host pages --------------------------------


@contextlib.asynccontextmanager
async def host_site(pages: dict[str, str], port: int = 0) -> AsyncIterator[str]:
    """Serve `pages` (path -> HTML) from 127.0.0.1:`port`; yields the site's origin."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        html = pages.get(scope["path"])
        status, body = (200, html.encode()) if html is not None else (404, b"not found")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})

    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off",
                            log_config=None, log_level="warning")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + TIMEOUT
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "host site did not start"
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)


def host_page(ticker: str, lang: str = "en", attrs: str = 'channel="en"') -> str:
    direction = "rtl" if lang == "ar" else "ltr"
    return f"""<!doctype html>
<html lang="{lang}" dir="{direction}"><head><meta charset="utf-8"><title>Partner site</title>
<script src="{ticker}/static/ticker.js" defer></script></head>
<body style="margin:0;font-family:sans-serif">
<h1 style="margin:1rem">The Partner Gazette</h1>
<breaking-ticker {attrs}></breaking-ticker>
<p style="margin:1rem">Our partner's live ticker, embedded with one script tag.</p>
</body></html>"""


async def open_demo(page: Page, server: Server) -> None:
    await page.goto(server.http + "/")
    await expect(page.locator("breaking-ticker")).to_have_attribute("data-state", "live",
                                                                     timeout=WAIT_MS)


# -- the tests ----------------------------------------------------------------------------


async def test_the_pause_control_works_by_keyboard_alone_and_hover_pauses_too(
    server: Server, redis: Redis, prefix: str, page: Page
) -> None:
    await open_demo(page, server)
    ticker = page.locator("breaking-ticker")
    await publish(redis, prefix, "en", EN_ITEMS)
    await wait_items(page, EN_ITEMS)
    await expect(ticker).to_have_attribute("data-mode", "scroll", timeout=WAIT_MS)
    assert await drift(page) < -10  # left to right text scrolls leftwards

    button = page.locator("breaking-ticker .toggle")
    await expect(button).to_be_visible()  # visible without hover
    await expect(button).to_have_attribute("aria-pressed", "false")
    await expect(button).to_have_accessible_name("Pause ticker")
    viewport = page.locator("breaking-ticker .viewport")
    await expect(viewport).to_have_attribute("role", "marquee")
    await expect(viewport).to_have_accessible_name("Breaking")
    await expect(page.locator("breaking-ticker .dup")).to_have_attribute("aria-hidden", "true")

    # Tab from the top of the page to the button: it is in the tab order.
    focused = f"() => {ELEMENT}.shadowRoot.activeElement?.classList.contains('toggle') === true"
    for _ in range(40):
        await page.keyboard.press("Tab")
        if await page.evaluate(focused):
            break
    else:
        pytest.fail("the pause button is not reachable with Tab")
    assert abs(await drift(page)) < 0.5  # keyboard focus inside pauses

    await page.keyboard.press("Space")
    await expect(button).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate(f"() => {ELEMENT}.paused") is True
    await page.keyboard.press("Tab")  # focus leaves the ticker: the user's pause holds
    assert not await page.evaluate(focused)
    assert abs(await drift(page)) < 0.5

    await page.keyboard.press("Shift+Tab")
    assert await page.evaluate(focused)
    await page.keyboard.press("Enter")
    await expect(button).to_have_attribute("aria-pressed", "false")
    await page.keyboard.press("Tab")
    assert await drift(page) < -10  # moving again

    assert await page.evaluate(CLOCKS, "en") is True
    clock = await page.locator("breaking-ticker .run .time").first.inner_text()
    assert "AM" in clock or "PM" in clock, clock

    box = await ticker.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert abs(await drift(page)) < 0.5  # hover pauses
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] + 200)
    assert await drift(page) < -10
    await ticker.screenshot(path=shot("widget-en.png"))


async def test_reduced_motion_gives_a_still_list_that_still_updates(
    server: Server, redis: Redis, prefix: str, page: Page
) -> None:
    await page.emulate_media(reduced_motion="reduce")
    await open_demo(page, server)
    ticker = page.locator("breaking-ticker")
    await publish(redis, prefix, "en", EN_ITEMS)
    await wait_items(page, EN_ITEMS)
    await expect(ticker).to_have_attribute("data-mode", "reduced")
    assert await page.evaluate(RUNNING) == 0
    assert await drift(page, 0.3) == 0

    extra = "Late item: the central bank holds rates and signals a cut later this year"
    await publish(redis, prefix, "en", [extra])
    await wait_items(page, [*EN_ITEMS, extra])
    await expect(page.locator("breaking-ticker .run .item").first).to_contain_text(extra)
    assert await page.evaluate(RUNNING) == 0  # no slide-in, no highlight, no pulse
    x, _ = await page.evaluate(TRACK_X)
    assert x == 0
    await expect(ticker).to_have_attribute("data-mode", "reduced")


async def test_the_arabic_channel_is_right_to_left_mirrored_and_isolated(
    redis_url: str, prefix: str, redis: Redis, page: Page
) -> None:
    settings = make_settings(redis_url, prefix, channels="en,ar:ar:rtl:عاجل")
    async with running_server(settings) as server:
        await arabic(server, redis, prefix, page)


async def arabic(server: Server, redis: Redis, prefix: str, page: Page) -> None:
    # The demo page, switched to the `ar` edition through the element's attribute.
    await page.goto(server.http + "/")
    await page.evaluate(f"() => {ELEMENT}.setAttribute('channel', 'ar')")
    ticker = page.locator("breaking-ticker")
    await expect(ticker).to_have_attribute("data-state", "live", timeout=WAIT_MS)
    await publish(redis, prefix, "ar", AR_ITEMS)
    await wait_items(page, AR_ITEMS)
    await expect(ticker).to_have_attribute("data-mode", "scroll", timeout=WAIT_MS)

    bar = page.locator("breaking-ticker .bar")
    await expect(page.locator("breaking-ticker .label")).to_have_text("عاجل")
    await expect(bar).to_have_attribute("dir", "rtl")
    await expect(bar).to_have_attribute("lang", "ar")
    assert await bar.evaluate("(b) => getComputedStyle(b).direction") == "rtl"
    # Mirrored: the label sits at the right edge, the items run from it leftwards...
    label = await page.locator("breaking-ticker .label").bounding_box()
    view = await page.locator("breaking-ticker .viewport").bounding_box()
    assert label is not None and view is not None and label["x"] > view["x"]
    # ... and the track moves left to right, the way Arabic is read.
    assert await drift(page) > 10
    # Each line is bidi-isolated, so Latin words and digits inside stay in place.
    assert await page.evaluate(
        f"() => [...{ELEMENT}.shadowRoot.querySelectorAll('.run .text')]"
        ".every((e) => e.tagName === 'BDI')")
    await expect(page.locator("breaking-ticker .toggle")).to_have_accessible_name(
        "إيقاف الشريط مؤقتًا")
    # Times follow the channel's language (Arabic clock: "٢:٠٥ م" or "2:05 م"), not the page's.
    assert await page.evaluate(CLOCKS, "ar") is True
    clock = await page.locator("breaking-ticker .run .time").first.inner_text()
    assert "م" in clock or "ص" in clock, clock
    await ticker.screenshot(path=shot("widget-ar.png"))


async def test_a_page_on_another_origin_embeds_the_widget(
    redis_url: str, prefix: str, redis: Redis, page: Page, browser: Browser
) -> None:
    site_port = free_port()
    allowed = f"http://127.0.0.1:{site_port}"
    settings = make_settings(redis_url, prefix, allowed_origins=allowed)
    async with running_server(settings) as server:
        themed = 'channel="en" style="--ticker-bg:#0b3954;--ticker-label-bg:#062236"'
        pages = {"/": host_page(server.http, attrs=themed)}
        async with host_site(pages, site_port) as site, host_site(pages) as stranger:
            assert site == allowed
            await page.goto(site + "/")
            ticker = page.locator("breaking-ticker")
            await expect(ticker).to_have_attribute("data-state", "live", timeout=WAIT_MS)
            assert await page.evaluate(f"() => {ELEMENT}.transport") == "ws"
            await publish(redis, prefix, "en", EN_ITEMS[:2])
            await wait_items(page, EN_ITEMS[:2])
            # Themed by the host page through CSS custom properties.
            assert await page.locator("breaking-ticker .bar").evaluate(
                "(b) => getComputedStyle(b).backgroundColor") == "rgb(11, 57, 84)"
            # A fixed height: the page did not shift when items arrived.
            box = await ticker.bounding_box()
            assert box is not None and 30 <= box["height"] <= 50
            await page.screenshot(path=shot("widget-other-origin.png"))

            # An origin that is not configured gets nothing: websocket and SSE refused (403),
            # the polling snapshot unreadable (no CORS grant).
            context = await browser.new_context()
            try:
                other = await context.new_page()
                await other.goto(stranger + "/")
                await wait_js(other, f"() => {ELEMENT}.transport === 'poll'")
                assert await texts(other) == []
                assert await other.evaluate(f"() => {ELEMENT}.state") != "live"
            finally:
                await context.close()


async def test_when_websockets_fail_the_widget_falls_back_to_sse_and_gets_items(
    redis_url: str, prefix: str, redis: Redis, page: Page
) -> None:
    # ws="none": uvicorn does not upgrade, so /ws/en answers 426 like a proxy that drops
    # `Upgrade`; the browser's real WebSocket fails to open, three times.
    async with node(make_settings(redis_url, prefix), ws="none") as server:
        await publish(redis, prefix, "en", EN_ITEMS[:1])
        await page.goto(server.http + "/")
        await wait_js(page, SSE_LIVE)
        await wait_items(page, EN_ITEMS[:1])
        ids = await publish(redis, prefix, "en", EN_ITEMS[1:3])
        await wait_items(page, EN_ITEMS[:3])
        assert await page.evaluate(f"() => {ELEMENT}.cursor") == ids[-1]
        assert await page.evaluate(f"() => {ELEMENT}.transport") == "sse"
        channel = server.runtime.hub.channels["en"]
        assert len(channel.sse_writers) == 1 and not channel.writers


async def test_on_another_origin_the_sse_and_polling_fallbacks_are_readable_too(
    redis_url: str, prefix: str, redis: Redis, browser: Browser
) -> None:
    site_port = free_port()
    settings = make_settings(redis_url, prefix, allowed_origins=f"http://127.0.0.1:{site_port}")
    async with node(settings, ws="none") as server, \
            host_site({"/": host_page(server.http)}, site_port) as site:
        await publish(redis, prefix, "en", EN_ITEMS[:2])
        context = await browser.new_context()
        try:
            # EventSource across origins: needs the server's CORS grant.
            page = await context.new_page()
            await page.goto(site + "/")
            await wait_js(page, SSE_LIVE)
            await wait_items(page, EN_ITEMS[:2])
            # SSE blocked as well (a proxy that buffers it, say): the widget polls the
            # cacheable snapshot, which is readable from the allowed origin too.
            polling = await context.new_page()
            await polling.route("**/sse/**", lambda route: route.abort())
            await polling.goto(site + "/")
            await wait_js(polling, f"() => {ELEMENT}.transport === 'poll'")
            await wait_items(polling, EN_ITEMS[:2])
            assert await polling.evaluate(f"() => {ELEMENT}.state") == "live"
        finally:
            await context.close()


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_a_server_restart_shows_stale_then_recovers_with_no_item_lost(
    redis_url: str, prefix: str, redis: Redis, page: Page, transport: str
) -> None:
    # "sse": websockets fail, so the page is on EventSource, and it is the browser that
    # reconnects, sending Last-Event-ID.
    extra = {"ws": "none"} if transport == "sse" else {}
    port = free_port()
    settings = make_settings(redis_url, prefix)
    server = await start_node(settings, port, **extra)
    restarted: Server | None = None
    try:
        await page.goto(server.http + "/")
        await wait_js(page, f"(t) => {ELEMENT}.transport === t && {ELEMENT}.state === 'live'",
                      transport)
        await page.evaluate(f"""() => {{ window.missed = [];
            {ELEMENT}.addEventListener('ticker:update', (e) => window.missed.push(e.detail.missed));
        }}""")
        before = await publish(redis, prefix, "en", EN_ITEMS[:2])
        await wait_items(page, EN_ITEMS[:2])

        await server.stop()
        ticker = page.locator("breaking-ticker")
        await expect(ticker).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
        status = page.locator("breaking-ticker .status")
        await expect(status).to_be_visible()
        await expect(status).to_have_text("Reconnecting…")
        assert await texts(page) != []  # the last known items stay on screen
        await ticker.screenshot(path=shot(f"widget-en-reconnecting-{transport}.png"))

        # Published while no node is up: straight into Redis, the log.
        during = await publish(redis, prefix, "en", EN_ITEMS[2:4])
        restarted = await start_node(settings, port, **extra)
        await expect(ticker).to_have_attribute("data-state", "live", timeout=WAIT_MS * 2)
        await wait_items(page, EN_ITEMS[:4])
        await expect(status).to_be_hidden()
        assert await page.evaluate(f"() => {ELEMENT}.cursor") == during[-1]
        assert await page.evaluate(f"() => {ELEMENT}.transport") == transport
        # Resumed by cursor: told exactly how many it missed.
        assert 2 in await page.evaluate("() => window.missed")
        assert before[0] != during[0]
    finally:
        for handle in (server, restarted):
            if handle is not None and not handle.task.done():
                await handle.stop()
