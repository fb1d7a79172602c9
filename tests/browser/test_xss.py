"""An XSS corpus and a few hundred random Unicode strings, published as item text (and as
the source), render as literal text on the desk, the audit page and the readers' ticker,
and run nothing: no tripwire set, no dialog, no CSP violation, no new element. Bidi
overrides and isolates are refused (422) and the desk shows the refusal at the field."""

from __future__ import annotations

import json
import random
import unicodedata
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.conftest import ARTIFACTS, TIMEOUT, RedisServer, Server, make_settings, running_server
from tests.e2e.deskkit import PASSWORD, Desk, add_user
from ticker.core.errors import ValidationError
from ticker.core.items import BIDI_CONTROLS, MAX_TEXT, check_text
from ticker.redis.connection import connect as redis_client

TRIP = "window.__xss=(window.__xss||0)+1"
CORPUS = [
    f"<script>{TRIP}</script>",
    f"<SCRIPT SRC=//evil.example/x.js></SCRIPT>{TRIP}",
    f'<img src=x onerror="{TRIP}">',
    f"<svg onload={TRIP}>",
    f"<svg><script>{TRIP}</script></svg>",
    f'<iframe srcdoc="<script>parent.{TRIP}</script>"></iframe>',
    f'<a href="javascript:{TRIP}">click me</a>',
    f"javascript:{TRIP}",
    f'"><script>{TRIP}</script>',
    f"'><img src=x onerror={TRIP}>",
    f"</textarea><script>{TRIP}</script>",
    f"</title><script>{TRIP}</script>",
    f"<style>*{{background:url(javascript:{TRIP})}}</style>",
    f'<div style="background:url(javascript:{TRIP})">styled</div>',
    f"<math><mtext><table><mglyph><style><img src=x onerror={TRIP}>",
    f"<details open ontoggle={TRIP}>",
    f"<body onload={TRIP}>",
    f"<input autofocus onfocus={TRIP}>",
    f"<object data=javascript:{TRIP}>",
    f"<embed src=javascript:{TRIP}>",
    f"<meta http-equiv=refresh content='0;url=javascript:{TRIP}'>",
    f"<base href=javascript:{TRIP}//>",
    f"{{{{constructor.constructor('{TRIP}')()}}}}",
    f"${{{TRIP}}}",
    f"[click](javascript:{TRIP})",
    "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#x3C;b&#x3E;",
    f"<!-- --><script>{TRIP}</script><!-- -->",
    f"<![CDATA[<script>{TRIP}</script>]]>",
    f"\"onmouseover=\"{TRIP}\" x=\"",
    "Tom & Jerry <3 \"quotes\" 'single' `back`",
]
BIDI = ["Breaking \u202eretsiger\u202c news", "\u2066isolated\u2069 text",
        "\u202aembedded\u202c", "\u202dforced\u202c ltr", "\u2067rtl isolate\u2069"]

# Code point pools for the random strings: markup characters, scripts, combining marks,
# joiners and marks, emoji, and some that are refused (controls, private use, unassigned,
# lone surrogates, bidi controls).
POOLS: list[tuple[int, int]] = [
    (0x20, 0x7E), (0x20, 0x7E), (0xA0, 0xFF), (0x300, 0x36F), (0x590, 0x5FF), (0x600, 0x6FF),
    (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2190, 0x23FF),
    (0x3040, 0x30FF), (0x4E00, 0x4FFF), (0xFE00, 0xFE0F), (0xFF00, 0xFFEF),
    (0x1F300, 0x1FAFF), (0x1D400, 0x1D7FF),
]
RARE: list[tuple[int, int]] = [(0x0, 0x1F), (0x7F, 0x9F), (0xE000, 0xE0FF), (0xD800, 0xDFFF),
                               (0x0378, 0x0379), (0x202A, 0x202E), (0x2066, 0x2069)]
SPECIAL = "<>&\"'`=/\\;:(){}[]"


def random_strings(n: int, seed: int = 20261127) -> list[str]:
    """`n` strings, reproducibly: mostly assigned characters from many scripts and markup
    characters; about one in six with a character the server must refuse, a few too long."""
    rng = random.Random(seed)

    def assigned(lo: int, hi: int) -> str:
        while True:
            ch = chr(rng.randint(lo, hi))
            if unicodedata.category(ch) != "Cn":
                return ch

    out = []
    for _ in range(n):
        length = rng.choice((1, 2, 5, 20, 60, 140, 279, 280))
        chars = []
        for _ in range(length):
            roll = rng.random()
            if roll < 0.15:
                chars.append(rng.choice(SPECIAL))
            elif roll < 0.18:
                chars.append(rng.choice("\u200d\u200c\u200e\u200f\u00a0\u3000 "))
            else:
                chars.append(assigned(*rng.choice(POOLS)))
        roll = rng.random()
        if roll < 0.15:
            lo, hi = rng.choice(RARE)
            chars.insert(rng.randint(0, len(chars)), chr(rng.randint(lo, hi)))
        elif roll < 0.18:
            chars += ["x"] * (MAX_TEXT + 1 - len(chars))
        out.append("".join(chars))
    return out


def expected(text: str) -> str | None:
    """What the server keeps (NFC, trimmed), or None if it refuses the text."""
    try:
        return check_text(text)
    except ValidationError:
        return None


@dataclass
class Scene:
    server: Server
    context: BrowserContext
    desk: Page
    reader: Page
    api: Desk
    dialogs: list[str]
    errors: list[str]


WATCH = """
window.__violations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
"""


@pytest.fixture(scope="module")
async def scene(browser: Browser, redis_server: RedisServer) -> AsyncIterator[Scene]:
    prefix = "bx" + uuid.uuid4().hex[:8]
    redis = redis_client(redis_server.url)
    await add_user(redis, prefix, "mallory", "editor")
    async with running_server(make_settings(redis_server.url, prefix)) as server:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        await context.add_init_script(WATCH)
        dialogs: list[str] = []
        errors: list[str] = []
        desk, reader = await context.new_page(), await context.new_page()
        for page in (desk, reader):
            page.on("dialog", lambda d: (dialogs.append(d.message),
                                         __import__("asyncio").ensure_future(d.dismiss())))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
        await reader.goto(server.http + "/")
        await expect(reader.locator("breaking-ticker")).to_have_attribute(
            "data-state", "live", timeout=10_000)
        await desk.goto(server.http + "/login")
        await desk.fill("#username", "mallory")
        await desk.fill("#password", PASSWORD)
        await desk.keyboard.press("Enter")
        await desk.wait_for_url("**/desk")
        await expect(desk.locator("body")).to_have_attribute("data-ready", "true")
        await desk.bring_to_front()
        api = await Desk.sign_in(server, "mallory")
        try:
            yield Scene(server, context, desk, reader, api, dialogs, errors)
        finally:
            await api.close()
            await context.close()
    await redis.aclose()


READER_TEXTS = """() => Array.from(document.querySelector('breaking-ticker').shadowRoot
    .querySelectorAll('.run:not(.dup) .item')).map((li) => {
      const src = li.querySelector('.src bdi');
      return [src ? src.textContent : null, li.querySelector('.text').textContent];
    })"""
DESK_TEXTS = """() => Array.from(document.querySelectorAll('#onair li.item[data-channel="en"]'))
    .map((li) => {
      const src = li.querySelector('.line .src bdi');
      return [src ? src.textContent : null, li.querySelector('.line .text').textContent];
    })"""
# What the widget itself does to a text before showing it (ticker.js `oneLine`): harmless.
WIDGET = "(t) => t.replace(/[\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]+/g, ' ').trim()"


async def show_batch(scene: Scene, batch: list[tuple[str | None, str]]) -> list[str]:
    """Publish (source, text) pairs; wait until the desk and the ticker show exactly them."""
    ids = []
    for source, text in batch:
        ids += await scene.api.publish(text, ["en"], **({"source": source} if source else {}))
    want = sorted([[s, t] for s, t in batch], key=repr)
    reader_want = await scene.reader.evaluate(
        f"(rows) => rows.map(([s, t]) => [s === null ? null : ({WIDGET})(s), ({WIDGET})(t)])",
        want)
    await scene.reader.wait_for_function(
        f"(want) => JSON.stringify(({READER_TEXTS})().sort((a, b) => "
        "JSON.stringify(a) < JSON.stringify(b) ? -1 : 1)) === JSON.stringify(want.sort((a, b) => "
        "JSON.stringify(a) < JSON.stringify(b) ? -1 : 1))", arg=reader_want, timeout=TIMEOUT * 1000)
    await scene.desk.wait_for_function(
        f"(want) => JSON.stringify(({DESK_TEXTS})().sort((a, b) => "
        "JSON.stringify(a) < JSON.stringify(b) ? -1 : 1)) === JSON.stringify(want.sort((a, b) => "
        "JSON.stringify(a) < JSON.stringify(b) ? -1 : 1))", arg=want, timeout=TIMEOUT * 1000)
    return ids


async def clear(scene: Scene, ids: list[str]) -> None:
    for item in ids:
        r = await scene.api.op(item, "kill", reason="xss corpus batch done")
        assert r.status_code == 201, r.text
    await scene.reader.wait_for_function(
        "() => document.querySelector('breaking-ticker').items.length === 0",
        timeout=TIMEOUT * 1000)


async def nothing_ran(scene: Scene, page: Page, label: str) -> None:
    state: dict[str, Any] = await page.evaluate("""() => ({
        xss: window.__xss === undefined ? null : window.__xss,
        violations: window.__violations || [],
        scripts: Array.from(document.scripts).filter((s) => s.type !== 'application/json')
          .map((s) => s.src.replace(location.origin, '')),
        foreign: document.querySelectorAll('img, iframe, object, embed, svg:not(.ok)').length,
        shadowForeign: Array.from(document.querySelectorAll('breaking-ticker, .preview-ticker'))
          .map((h) => h.shadowRoot ? h.shadowRoot.querySelectorAll(
            'script, img, iframe, object, embed, style, a[href^="javascript"]').length : 0)
          .reduce((a, b) => a + b, 0),
    })""")
    assert state["xss"] is None, f"{label}: a payload ran"
    assert state["violations"] == [], f"{label}: CSP violations {state['violations']}"
    assert state["foreign"] == 0, f"{label}: injected elements"
    assert state["shadowForeign"] == 0, f"{label}: injected elements in the ticker"
    # Ours only (the desk's strings are JSON data, never run: left out above).
    assert all(s in ("/static/ticker.js", "/static/demo.js", "/static/i18n.js", "/static/desk.js")
               for s in state["scripts"]), \
        f"{label}: scripts {state['scripts']}"


async def test_the_corpus_and_random_unicode_render_as_text_and_run_nothing(
    scene: Scene
) -> None:
    cases: list[tuple[str | None, str]] = [(None, text) for text in CORPUS]
    cases += [(payload[:100], "Sourced line") for payload in CORPUS[:10]]
    shown: list[str] = []
    refused = 0
    for text in random_strings(300):
        kept = expected(text)
        if kept is None:
            # ASCII-escaped JSON: a lone surrogate ("\\udbcb") is valid JSON, not valid UTF-8.
            body = json.dumps({"text": text, "channels": ["en"]}).encode()
            r = await scene.api.http.post("/desk/api/items", content=body, headers={
                "Content-Type": "application/json", "X-CSRF-Token": scene.api.csrf})
            assert r.status_code == 422 and r.json()["field"] == "text", (text, r.text)
            refused += 1
        else:
            cases.append((None, kept))
    assert refused >= 20 and len(cases) >= 200  # both kinds were really exercised
    for start in range(0, len(cases), 20):
        batch = cases[start:start + 20]
        ids = await show_batch(scene, batch)
        shown += [t for _, t in batch]
        if start == 0:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await scene.desk.screenshot(path=str(ARTIFACTS / "xss-desk.png"), full_page=True)
            await scene.reader.screenshot(path=str(ARTIFACTS / "xss-reader.png"))
        await clear(scene, ids)
    audit = await scene.context.new_page()
    await audit.goto(scene.server.http + "/desk/audit?limit=1000&user=mallory")
    after = await audit.evaluate("""() => Array.from(document.querySelectorAll(
        '#audit-table tr[data-action="publish"] td.after bdi')).map((b) => b.textContent)""")
    assert sorted(after) == sorted(shown)
    for page, label in ((scene.desk, "desk"), (scene.reader, "reader"), (audit, "audit")):
        await nothing_ran(scene, page, label)
    await audit.close()
    await scene.desk.bring_to_front()
    assert scene.dialogs == []
    assert scene.errors == []


async def test_payloads_typed_into_the_desk_stay_text(scene: Scene) -> None:
    desk = scene.desk
    for payload in CORPUS[:4]:
        await desk.locator("#text").fill(payload)
        preview = desk.locator('#preview [data-channel="en"] .preview-ticker .run .text')
        await expect(preview).to_have_text(payload)
        await desk.locator("#text").press("Control+Enter")
        await expect(desk.locator("#compose-status")).to_contain_text("Published to en")
        row = desk.locator("#onair li.item .line .text", has_text=payload[:30])
        await expect(row.first).to_have_text(payload)
        await expect(scene.reader.locator("breaking-ticker .run:not(.dup) .text",
                                          has_text=payload[:30]).first).to_have_text(payload)
    await nothing_ran(scene, desk, "desk after typing")
    await nothing_ran(scene, scene.reader, "reader after typing")
    assert scene.dialogs == []


async def test_bidi_controls_and_javascript_links_are_cleanly_refused(scene: Scene) -> None:
    desk = scene.desk
    for text in BIDI:
        r = await scene.api.post("/desk/api/items", {"text": text, "channels": ["en"]})
        assert r.status_code == 422 and r.json()["field"] == "text"
        bad = next(c for c in text if c in BIDI_CONTROLS)
        assert f"U+{ord(bad):04X}" in r.json()["message"]
        await desk.locator("#text").fill(text)
        await desk.locator("#text").press("Control+Enter")
        await expect(desk.locator("#text-error")).to_contain_text("bidi control character")
        await expect(desk.locator("#text")).to_have_attribute("aria-invalid", "true")
    for link in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>",
                 "http://plain.example", "//evil.example", "https://a b.example",
                 " javascript:alert(1)"):
        r = await scene.api.post("/desk/api/items", {"text": "Linked line", "link": link,
                                                     "channels": ["en"]})
        assert r.status_code == 422 and r.json()["field"] == "link", link
    # An https link with markup in it is a valid URL: it goes into href as a URL, never HTML.
    odd = 'https://ok.example/"><script>' + TRIP + "</script>"
    item, = await scene.api.publish("Linked line", ["en"], link=odd)
    story = desk.locator(f'#onair li.item[data-id="{item}"] a.story')
    await expect(story).to_have_attribute("href", odd)
    reader_link = scene.reader.locator("breaking-ticker .run:not(.dup) a.link")
    await expect(reader_link).to_have_count(1)
    href = await reader_link.get_attribute("href")
    assert href is not None and href.startswith("https://ok.example/%22%3E%3Cscript%3E")
    await nothing_ran(scene, desk, "desk with an odd link")
    await nothing_ran(scene, scene.reader, "reader with an odd link")
    await desk.locator("#text").fill("A line with a bad link")
    await desk.locator(".more summary").click()
    await desk.locator("#link").fill("javascript:alert(1)")
    await desk.locator("#text").press("Control+Enter")
    await expect(desk.locator("#link-error")).to_contain_text("https://")
    await desk.locator("#link").fill("")
    await desk.locator("#text").fill("")
    assert all(unicodedata.category(c) == "Cf" for c in BIDI_CONTROLS)
    assert scene.dialogs == []
    assert len(CORPUS) + 1 < MAX_TEXT
