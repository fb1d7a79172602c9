"""The desk in its user's language, in real Chromium (docs/desk.md, "Languages"): an Arabic
editor's desk is right to left and Arabic throughout (labels, buttons, flags, dialogs,
relative times and counts with Arabic-Indic digits from the browser's Intl), mirrored, and
fits a phone; a Spanish editor's desk and audit trail are Spanish, times included; switching
the language in Settings changes the desk on the next load; the sign-in page follows the
browser's Accept-Language. English desks are covered, unchanged, by the other desk tests."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import websockets
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.conftest import ARTIFACTS, RedisServer, Server, make_settings, running_server
from tests.e2e.deskkit import PASSWORD, Desk, add_user
from ticker.newsroom.users import Users
from ticker.redis.connection import connect as redis_client
from ticker.redis.keys import Keys

SECOND = 1000
CHANNELS = "en,ar:ar:rtl:عاجل,es:es:ltr:Última hora"
ENGLISH = "Three drones launched from Yemen toward Eilat"
ARABIC_DIGITS = re.compile(r"[٠-٩]")
LATIN_DIGITS = re.compile(r"[0-9]")
MESES = ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sept", "oct", "nov", "dic")
ASHHUR = ("يناير", "فبراير", "مارس", "أبريل", "مايو", "يونيو", "يوليو", "أغسطس", "سبتمبر",
          "أكتوبر", "نوفمبر", "ديسمبر")


@dataclass
class Scene:
    server: Server
    browser: Browser
    errors: list[str]


@pytest.fixture(scope="module")
async def scene(browser: Browser, redis_server: RedisServer) -> AsyncIterator[Scene]:
    prefix = "bl" + uuid.uuid4().hex[:8]
    redis = redis_client(redis_server.url)
    users = Users(redis, Keys(prefix))
    channels = ("en", "ar", "es")
    for name, lang, role in (("layla", "ar", "editor"), ("pablo", "es", "editor"),
                             ("sami", "en", "editor"), ("nour", "ar", "admin")):
        await add_user(redis, prefix, name, role)
        await users.set_prefs(name, channels=channels, lang=lang)
    errors: list[str] = []
    async with running_server(make_settings(redis_server.url, prefix,
                                            channels=CHANNELS)) as server:
        # Three readers of en, so the line's reach is a number worth writing in digits.
        readers = [await websockets.connect(server.ws("en")) for _ in range(3)]
        try:
            yield Scene(server, browser, errors)
        finally:
            for reader in readers:
                await reader.close()
    await redis.aclose()
    assert not errors, f"JavaScript errors: {errors}"


async def desk_of(scene: Scene, name: str, path: str = "/desk", **options: Any
                  ) -> tuple[BrowserContext, Page]:
    """`path` in a new browser, signed in as `name` (the session of an HTTP sign-in)."""
    desk = await Desk.sign_in(scene.server, name)
    await desk.close()
    context = await scene.browser.new_context(
        **{"viewport": {"width": 1280, "height": 900}, **options})
    await context.add_cookies([{"name": k, "value": v, "url": scene.server.http}
                               for k, v in desk.http.cookies.items()])
    page = await context.new_page()
    page.on("pageerror", lambda exc: scene.errors.append(str(exc)))
    await page.goto(scene.server.http + path)
    await expect(page.locator("body")).to_have_attribute("data-ready", "true",
                                                         timeout=10 * SECOND)
    return context, page


async def no_overflow_at_phone_width(page: Page, shot: str) -> None:
    await page.set_viewport_size({"width": 375, "height": 800})
    try:
        overflow = await page.evaluate("""() => {
            const doc = document.documentElement;
            const out = Array.from(document.querySelectorAll('main *, header *'))
              .filter((e) => e.getClientRects().length && !e.closest('.table-wrap'))
              .map((e) => e.getBoundingClientRect())
              .filter((r) => r.left < -1 || r.right > doc.clientWidth + 1);
            return {scroll: doc.scrollWidth - doc.clientWidth, outside: out.length};
        }""")
        assert overflow == {"scroll": 0, "outside": 0}, overflow
        await page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    finally:
        await page.set_viewport_size({"width": 1280, "height": 900})


async def test_an_arabic_editors_desk_is_arabic_and_right_to_left(scene: Scene) -> None:
    context, page = await desk_of(scene, "layla")
    try:
        html = page.locator("html")
        await expect(html).to_have_attribute("lang", "ar")
        await expect(html).to_have_attribute("dir", "rtl")
        await expect(page).to_have_title("مكتب التحرير · Ticker")
        await expect(page.locator("#compose-title")).to_have_text("خبر جديد")
        await expect(page.locator('label[for="text"]')).to_have_text("النص")
        await expect(page.locator("#board-title")).to_have_text("على الهواء الآن")
        await expect(page.locator("#publish")).to_have_text("انشر")
        await expect(page.locator('label[for="u-flash"]')).to_have_text("عاجل جدًا")
        await expect(page.locator(".topbar .who")).to_have_text("layla · محرر")
        await expect(page.locator("#live-status")).to_have_text("مباشر", timeout=5 * SECOND)
        # Counted in Arabic-Indic digits, by the server and then by the script.
        await expect(page.locator("#text-count")).to_have_text("٠ / ٢٨٠")
        await page.locator("#text").fill("عاجل: اختبار")
        await expect(page.locator("#text-count")).to_have_text("١٢ / ٢٨٠")
        await page.locator("#text").fill("")
        # The expiry choices, with Arabic's dual and plural (server side).
        options = await page.locator("#ttl option").all_text_contents()
        assert options[:5] == ["الافتراضي لخبر «عاجل»: ٣ ساعات", "١٥ دقيقة", "٣٠ دقيقة",
                               "ساعة واحدة", "ساعتان"], options
        await page.locator("#u-flash").check()
        await expect(page.locator("#ttl option").first).to_have_text(
            "الافتراضي لخبر «عاجل جدًا»: ساعة واحدة")

        # A flash in en, published from the Arabic desk: the line stays English (data).
        await page.locator("#ch-en").check()
        await page.locator("#text").fill(ENGLISH)
        await page.locator("#publish").click()
        await expect(page.locator("#compose-status")).to_have_text(re.compile(
            r"^نُشر في en الساعة [٠-٩]{2}:[٠-٩]{2}:[٠-٩]{2} [صم]\.$"))
        row = page.locator('section[data-channel="en"] li.item', has_text=ENGLISH)
        await expect(row).to_be_visible(timeout=5 * SECOND)
        await expect(row.locator(".text")).to_have_text(ENGLISH)
        await expect(row.locator(".line")).to_have_attribute("dir", "ltr")
        await expect(row.locator(".badge")).to_have_text("عاجل جدًا")
        await expect(row.locator(".by")).to_have_text("بواسطة layla")
        await expect(row.locator(".age")).to_have_text("الآن")
        await expect(row.locator(".expiry")).to_have_text("ينتهي خلال ساعة واحدة")
        await expect(row.locator(".reach")).to_have_text("وصل إلى ٣ شاشات", timeout=5 * SECOND)
        section = page.locator('section.channel[data-channel="en"]')
        await expect(section.locator(".n")).to_have_text("على الهواء: ١")
        labels = await row.locator(".actions button").all_inner_texts()
        assert labels == ["تصحيح", "ترجمة", "تعليق", "تثبيت", "تمديد", "سحب"], labels
        await expect(row.locator(".actions")).to_have_attribute("aria-label", "الإجراءات")
        # The other editions' queues list it, in Arabic, the count in Arabic-Indic digits.
        queue = page.locator('section.channel[data-channel="ar"] section.queue')
        await expect(queue.locator(".queue-title")).to_have_text("للترجمة إلى ar (١)")
        await expect(queue.locator("button").first).to_have_text("ترجمة")
        # Relative times are the browser's Intl in Arabic, both ways.
        said = await page.evaluate("""() => [-5 * 60000, -3 * 3600000, 2 * 3600000, 90000]
            .map((ms) => TickerText.relative(ms))""")
        assert said == ["قبل ٥ دقائق", "قبل ٣ ساعات", "خلال ساعتين", "خلال دقيقتين"], said

        # Pinned: the flag in Arabic; the done message too.
        await row.locator('button[data-op="pin"]').click()
        await expect(row.locator(".flag.pinned")).to_have_text("مثبَّت")
        await expect(row.locator(".flag.pinned")).to_have_attribute("dir", "rtl")
        await expect(page.locator("#compose-status")).to_have_text(f"ثُبّت في en: {ENGLISH}.")

        # Mirrored: the compose panel on the right, the board on its left; the brand on the
        # right of the top bar, Sign out on its left.
        compose = await page.locator("section.compose").bounding_box()
        board = await page.locator("section.board").bounding_box()
        assert compose is not None and board is not None
        assert board["x"] + board["width"] <= compose["x"], (board, compose)
        brand = await page.locator(".topbar .brand").bounding_box()
        sign_out = await page.locator(".topbar .logout").bounding_box()
        assert brand is not None and sign_out is not None and sign_out["x"] < brand["x"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "desk-ar.png"), full_page=True)

        # The kill dialog, in Arabic and right to left.
        await row.locator('button[data-op="kill"]').click()
        dialog = page.locator("#kill-dialog")
        await expect(dialog.locator("#kill-title")).to_have_text("سحب هذا الخبر من كل مكان؟")
        await dialog.locator("#kill-confirm").click()
        await expect(dialog.locator("#kill-reason-error")).to_have_text(
            "اذكر سبب السحب (يُحفظ في سجل التدقيق).")
        await page.screenshot(path=str(ARTIFACTS / "desk-ar-kill-dialog.png"))
        await page.keyboard.press("Escape")
        # The extend dialog: the choices and "now" in Arabic.
        await row.locator('button[data-op="extend"]').click()
        await expect(page.locator("#extend-now")).to_have_text("حاليًا ينتهي خلال ساعة واحدة.")
        await expect(page.locator("#extend-ttl option:checked")).to_have_text("بعد ساعة من الآن")
        await page.keyboard.press("Escape")

        await no_overflow_at_phone_width(page, "desk-ar-phone.png")
        # Nothing Latin-digit slipped into what the desk writes about the line.
        facts = await row.locator(".facts").inner_text()
        assert ARABIC_DIGITS.search(facts) and not LATIN_DIGITS.search(facts), facts

        # The audit trail: Arabic, right to left, the UTC times in Arabic with Arabic months.
        await page.goto(scene.server.http + "/desk/audit")
        await expect(page.locator("h1")).to_have_text("سجل التدقيق")
        await expect(page.locator("html")).to_have_attribute("dir", "rtl")
        first = page.locator("#audit-table tbody tr").first
        await expect(first.locator(".what")).to_have_text("تثبيت")
        await expect(first).to_have_attribute("data-action", "pin")
        when = await first.locator("time").inner_text()
        month = ASHHUR[datetime.now(UTC).month - 1]
        assert month in when and ARABIC_DIGITS.search(when) and not LATIN_DIGITS.search(when)
        await page.screenshot(path=str(ARTIFACTS / "audit-ar.png"), full_page=True)
        await no_overflow_at_phone_width(page, "audit-ar-phone.png")
    finally:
        await context.close()


async def test_an_arabic_admins_people_and_tokens_pages(scene: Scene) -> None:
    context, page = await desk_of(scene, "nour", "/desk/people")
    try:
        await expect(page.locator("html")).to_have_attribute("dir", "rtl")
        await expect(page).to_have_title("المستخدمون · غرفة أخبار تيكر")
        card = page.locator('#people li.person[data-name="layla"]')
        await expect(card.locator('[data-cell="role"]')).to_have_text("محرر")
        await expect(card.locator('[data-cell="lang"]')).to_have_text("العربية")
        created = await card.locator('[data-cell="created"]').inner_text()
        assert ASHHUR[datetime.now(UTC).month - 1] in created and ARABIC_DIGITS.search(created)
        await card.locator("summary").click()
        await card.get_by_role("button", name="أنهِ الجلسات").click()
        await expect(page.locator("#confirm-title")).to_have_text("إنهاء كل جلسات layla؟")
        await page.locator('#confirm-dialog button[value="cancel"]').click()
        await page.screenshot(path=str(ARTIFACTS / "people-ar.png"), full_page=True)
        await no_overflow_at_phone_width(page, "people-ar-phone.png")

        await page.goto(scene.server.http + "/desk/tokens")
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        form = page.locator("#create-token")
        await form.locator('[name="name"]').fill("wire-feed")
        await form.get_by_role("button", name="أنشئ الرمز").click()
        await expect(page.locator("#once-title")).to_have_text("رمز جديد: wire-feed")
        when = await page.locator('#tokens tr[data-name="wire-feed"] time').inner_text()
        assert ARABIC_DIGITS.search(when) and not LATIN_DIGITS.search(when), when
        await page.screenshot(path=str(ARTIFACTS / "tokens-ar.png"), full_page=True)
    finally:
        await context.close()


async def test_a_spanish_editors_desk_and_audit_trail_are_spanish(scene: Scene) -> None:
    context, page = await desk_of(scene, "pablo")
    try:
        await expect(page.locator("html")).to_have_attribute("lang", "es")
        await expect(page.locator("html")).to_have_attribute("dir", "ltr")
        await expect(page.locator("#compose-title")).to_have_text("Nuevo titular")
        await expect(page.locator("#publish")).to_have_text("Publicar")
        await expect(page.locator('label[for="u-breaking"]')).to_have_text("Última hora")
        await page.locator("#ch-es").check()
        await page.locator("#ch-en").uncheck()
        await page.locator("#text").fill("Tres drones lanzados desde Yemen hacia Eilat")
        await page.locator("#text").press("Control+Enter")
        await expect(page.locator("#compose-status")).to_contain_text("Publicado en es a las ")
        row = page.locator('section[data-channel="es"] li.item')
        await expect(row).to_be_visible(timeout=5 * SECOND)
        await expect(row.locator(".badge")).to_have_text("Última hora")
        await expect(row.locator(".by")).to_have_text("por pablo")
        await expect(row.locator(".expiry")).to_have_text("caduca dentro de 3 horas")
        await expect(row.locator('button[data-op="kill"]')).to_have_text("Retirar")
        # The story is in the en and ar queues, with the Spanish words around it.
        queue = page.locator('section.channel[data-channel="ar"] section.queue')
        await expect(queue.locator(".queue-title")).to_have_text("Para traducir a ar (1)")
        said = await page.evaluate("() => TickerText.relative(-5 * 60000)")
        assert said == "hace 5 minutos"
        # 403 in Spanish.
        response = await page.goto(scene.server.http + "/desk/people")
        assert response is not None and response.status == 403
        await expect(page).to_have_title("No disponible para tu rol · Redacción Ticker")
        await expect(page.locator("main p").first).to_have_text(
            "Esta página requiere el rol de administrador; el tuyo es editor.")

        # The audit trail: Spanish words, Spanish times (UTC), the UTC text without script.
        await page.goto(scene.server.http + "/desk/audit?user=pablo")
        await expect(page.locator("h1")).to_have_text("Registro de auditoría")
        await expect(page.locator("#audit-table th").first).to_have_text("Cuándo (UTC)")
        whats = await page.locator("#audit-table td.what").all_inner_texts()
        assert whats == ["publicar", "inicio de sesión"], whats
        times = page.locator("#audit-table time")
        shown = await times.all_inner_texts()
        stamps = await times.evaluate_all("(ts) => ts.map((t) => t.dateTime)")
        month = MESES[datetime.now(UTC).month - 1]
        for text, stamp in zip(shown, stamps, strict=True):
            moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            assert text == (f"{moment.day} {month} {moment.year}, "
                            f"{moment:%H:%M:%S}"), (text, stamp)
        answer = await page.context.request.get(scene.server.http + "/desk/audit?user=pablo")
        assert re.search(r'<time data-utc datetime="[^"]+Z">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</time>',
                         await answer.text())
        await page.screenshot(path=str(ARTIFACTS / "audit-es.png"), full_page=True)
    finally:
        await context.close()


async def test_switching_the_language_in_settings_changes_the_desk(scene: Scene) -> None:
    context, page = await desk_of(scene, "sami", "/desk/settings")
    try:
        await expect(page).to_have_title("Your settings · Ticker desk")
        form = page.locator("#prefs")
        await form.locator('[name="lang"]').select_option("es")
        await form.get_by_role("button", name="Save").click()
        await expect(form.locator('[data-cell="status"]')).to_have_text("Saved.")
        await page.goto(scene.server.http + "/desk")
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        await expect(page.locator("html")).to_have_attribute("lang", "es")
        await expect(page.locator("#compose-title")).to_have_text("Nuevo titular")
        await expect(page.locator(".topbar .links a").last).to_have_text("Ajustes")

        await page.locator('.topbar a[href="/desk/settings"]').click()
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        await expect(page).to_have_title("Tus ajustes · Redacción Ticker")
        await expect(form.locator('[name="lang"] option')).to_have_text(
            ["Inglés", "Árabe", "Español"])
        await form.locator('[name="lang"]').select_option("ar")
        await form.get_by_role("button", name="Guardar").click()
        await expect(form.locator('[data-cell="status"]')).to_have_text("Guardado.")
        await page.reload()
        await expect(page.locator("html")).to_have_attribute("dir", "rtl")
        await expect(page.locator("h1")).to_have_text("إعداداتك")
        await page.goto(scene.server.http + "/desk")
        await expect(page.locator("#publish")).to_have_text("انشر")

        await page.goto(scene.server.http + "/desk/settings")
        await expect(page.locator("body")).to_have_attribute("data-ready", "true")
        await form.locator('[name="lang"]').select_option("en")
        await form.get_by_role("button", name="احفظ").click()
        await expect(form.locator('[data-cell="status"]')).to_have_text("حُفظ.")
        await page.goto(scene.server.http + "/desk")
        await expect(page.locator("html")).to_have_attribute("lang", "en")
        await expect(page.locator("#publish")).to_have_text("Publish")
    finally:
        await context.close()


@pytest.mark.parametrize(("accept", "lang", "title", "button", "wrong", "no_password"), [
    ("ar-EG,ar;q=0.9,en;q=0.8", "ar", "تسجيل الدخول · غرفة أخبار تيكر", "دخول",
     "اسم المستخدم أو كلمة المرور غير صحيحين.", "أدخل كلمة المرور."),
    ("es-ES,es;q=0.9,en;q=0.8", "es", "Iniciar sesión · Redacción Ticker", "Entrar",
     "Nombre de usuario o contraseña incorrectos.", "Escribe tu contraseña."),
    ("fr-FR,fr;q=0.9,de;q=0.5", "en", "Sign in · Ticker desk", "Sign in",
     "Wrong user name or password.", "Enter your password."),
])
async def test_the_sign_in_page_follows_accept_language(
    scene: Scene, accept: str, lang: str, title: str, button: str, wrong: str,
    no_password: str
) -> None:
    context = await scene.browser.new_context(extra_http_headers={"Accept-Language": accept})
    try:
        page = await context.new_page()
        page.on("pageerror", lambda exc: scene.errors.append(str(exc)))
        await page.goto(scene.server.http + "/desk")
        await expect(page.locator("html")).to_have_attribute("lang", lang)
        await expect(page.locator("html")).to_have_attribute(
            "dir", "rtl" if lang == "ar" else "ltr")
        await expect(page).to_have_title(title)
        await page.locator("#username").fill("layla")
        await page.locator("#password").fill("not the password")
        await page.get_by_role("button", name=button).click()
        await expect(page.locator("#form-error")).to_have_text(wrong)
        await page.locator("#password").fill("")
        await page.get_by_role("button", name=button).click()
        await expect(page.locator("#password-error")).to_have_text(no_password)
        if lang == "ar":
            await page.screenshot(path=str(ARTIFACTS / "login-ar.png"))
        # Signed in, the desk is in the user's language, whatever the browser's.
        await page.locator("#password").fill(PASSWORD)
        await page.locator("#password").press("Enter")
        await page.wait_for_url("**/desk")
        await expect(page.locator("html")).to_have_attribute("lang", "ar")  # layla's
    finally:
        await context.close()
