"""The desk's strings (ticker.desk.texts): every page in English, Arabic and Spanish, key for
key, placeholder for placeholder; what the scripts ask for is in the tables; plural forms,
digits, durations; the sign-in page's reading of Accept-Language."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ticker.desk import texts, texts_ar
from ticker.newsroom.users import LANGS

WEB = Path(__file__).resolve().parent.parent / "web"
PLURAL = re.compile(r"^(.*)_(one|two|few|other)$")
# Strings that are rightly the same as the English: numbers and codes, the names of keys,
# words both languages borrow, and the Latin tags a tag field takes.
SAME_AS_ENGLISH = {
    "ar": {"count", "queue_count", "key_enter", "tags_placeholder"},
    "es": {"count", "queue_count", "tags_placeholder", "list_sep", "urgency_flash",
           "role_editor", "role_word_editor", "original", "original_from", "token",
           "tokens/list_title",  # "Tokens"
           "nav_webhooks", "webhooks/title", "error"},  # "Webhooks", "Error"
}


def placeholders(text: str) -> set[str]:
    return set(texts.PLACEHOLDER.findall(text))


@pytest.mark.parametrize("lang", [lang for lang in LANGS if lang != "en"])
def test_every_language_has_every_key_and_no_other(lang: str) -> None:
    catalogue = texts.CATALOGUES[lang]
    assert set(catalogue) == set(texts.PAGES)
    for page, english in texts.PAGES.items():
        missing = set(english) - set(catalogue[page])
        extra = set(catalogue[page]) - set(english)
        assert not missing, f"{lang}/{page} lacks {sorted(missing)} (they would be English)"
        assert not extra, f"{lang}/{page} has keys English does not: {sorted(extra)}"


@pytest.mark.parametrize("lang", [lang for lang in LANGS if lang != "en"])
def test_placeholders_match_between_languages(lang: str) -> None:
    for page, english in texts.PAGES.items():
        for key, text in texts.CATALOGUES[lang][page].items():
            want, got = placeholders(english[key]), placeholders(text)
            if PLURAL.match(key):
                # A plural form may say the number with the noun instead ("ساعتان").
                assert got - {"n"} == want - {"n"} and got <= want, (lang, page, key)
            else:
                assert got == want, f"{lang}/{page}/{key}: {sorted(got)} != {sorted(want)}"


@pytest.mark.parametrize("lang", [lang for lang in LANGS if lang != "en"])
def test_translations_are_translated(lang: str) -> None:
    # An exception is a key (on every page) or one page's key ("page/key").
    same = {(page, key) for page, english in texts.PAGES.items()
            for key, text in texts.CATALOGUES[lang][page].items() if text == english[key]}
    left = sorted(f"{page}/{key}" for page, key in same
                  if not {key, f"{page}/{key}"} & SAME_AS_ENGLISH[lang])
    assert not left, f"{lang}: untranslated {left}"


def test_every_string_is_a_clean_non_empty_string() -> None:
    for lang, catalogue in texts.CATALOGUES.items():
        for page, table in catalogue.items():
            for key, text in table.items():
                assert isinstance(text, str) and text.strip(), (lang, page, key)
                if key != "list_sep":
                    assert text == text.strip(), (lang, page, key)
                assert "{{" not in text and "<" not in text.replace("<token>", ""), (
                    lang, page, key)


def test_plural_families_are_complete() -> None:
    for page, table in texts.PAGES.items():
        families = {m[1] for key in table if (m := PLURAL.match(key))}
        for family in families:
            for form in texts.PLURAL_FORMS:
                assert f"{family}_{form}" in table, (page, family, form)


def test_no_key_is_shadowed_by_a_mapping_method() -> None:
    # Jinja reads t.copy as the dict's copy method before the "copy" key: no key may be one.
    for catalogue in texts.CATALOGUES.values():
        for table in catalogue.values():
            assert not [key for key in table if hasattr(dict, key)]


def script_keys(name: str) -> set[str]:
    """The keys a script asks for by name: say('key'...), nodes('key'...), and a plural
    family's forms for plural('family'...) or count('family'...)."""
    source = (WEB / name).read_text(encoding="utf-8")
    keys = set(re.findall(r"\b(?:say|nodes|aboutLine)\(\s*'([a-z_]+)'\s*[,)]", source))
    for family in re.findall(r"\b(?:plural|count)\(\s*'([a-z_]+)'\s*[,)]", source):
        keys |= {f"{family}_{form}" for form in texts.PLURAL_FORMS}
    return keys


def test_what_the_scripts_say_is_in_their_tables() -> None:
    desk = texts.PAGES["desk"]
    # Keys made up at run time: 'op_' + op and the like.
    dynamic = {f"op_{op}" for op in ("correct", "confirm", "translate", "hold", "release",
                                     "pin", "unpin", "extend", "kill")}
    dynamic |= {f"done_{op}" for op in ("correct", "hold", "release", "pin", "unpin",
                                        "extend", "kill", "confirm")}
    dynamic |= {f"urgency_{u}" for u in ("flash", "urgent", "breaking")}
    dynamic |= {"live", "stale", "reconnecting", "approved", "withdrawn", "cancelled",
                "approve_scheduled", "approve_publish", "reject", "withdraw", "cancel"}
    dynamic |= {f"{unit}_{form}" for unit in ("hours", "minutes")
                for form in texts.PLURAL_FORMS}  # TickerText.duration
    asked = script_keys("desk.js")
    assert len(asked) > 40 and "reach_few" in asked
    assert asked | dynamic <= set(desk), sorted((asked | dynamic) - set(desk))
    manage = set().union(*(texts.PAGES[page] for page in (
        "people", "tokens", "webhooks", "settings")))
    asked = script_keys("people.js")
    assert asked and asked <= manage, sorted(asked - manage)


def test_a_missing_translation_falls_back_to_english(monkeypatch: pytest.MonkeyPatch) -> None:
    assert texts.strings("desk", "ar")["publish"] == "انشر"
    monkeypatch.delitem(texts_ar.DESK, "publish")
    assert texts.strings("desk", "ar")["publish"] == "Publish"
    assert texts.strings("desk", "xx")["publish"] == "Publish"  # an unknown language


def test_plural_categories_are_cldrs() -> None:
    arabic = {0: "other", 1: "one", 2: "two", 3: "few", 10: "few", 11: "other",
              99: "other", 100: "other", 103: "few", 111: "other"}
    assert {n: texts.plural_category(n, "ar") for n in arabic} == arabic
    for lang in ("en", "es"):
        assert [texts.plural_category(n, lang) for n in (0, 1, 2, 5)] == [
            "other", "one", "other", "other"]


def test_durations_and_digits_as_each_language_writes_them() -> None:
    en, ar, es = (texts.strings("desk", lang) for lang in ("en", "ar", "es"))
    assert [texts.duration(en, s, "en") for s in (900, 3600, 7200)] == [
        "15 minutes", "1 hour", "2 hours"]
    assert [texts.duration(ar, s, "ar") for s in (900, 1800, 3600, 7200, 10800, 43200)] == [
        "١٥ دقيقة", "٣٠ دقيقة", "ساعة واحدة", "ساعتان", "٣ ساعات", "١٢ ساعة"]
    assert texts.duration(ar, 7200, "ar", "_from_now") == "بعد ساعتين من الآن"
    assert [texts.duration(es, s, "es", "_from_now") for s in (1800, 3600)] == [
        "dentro de 30 minutos", "dentro de 1 hora"]
    assert texts.digits("0 / 280", "ar") == "٠ / ٢٨٠"
    assert texts.digits("0 / 280", "es") == "0 / 280"
    assert texts.fill("{a} and {b}", a="<i>", b=2) == "<i> and 2"
    assert texts.fill("{a} {unknown}", a=1) == "1 {unknown}"
    assert texts.direction("ar") == "rtl" and texts.direction("es") == "ltr"


@pytest.mark.parametrize(("header", "lang"), [
    (None, "en"),
    ("", "en"),
    ("ar", "ar"),
    ("ar-EG,ar;q=0.9,en;q=0.8", "ar"),
    ("es-ES,es;q=0.9", "es"),
    ("en-US,en;q=0.9,es;q=0.8", "en"),
    ("fr-FR,fr;q=0.9,es;q=0.5,ar;q=0.4", "es"),  # the best of the three
    ("en;q=0.2, ar;q=0.7", "ar"),  # by weight, not by order
    ("es, ar", "es"),  # a tie: the first listed
    ("ar;q=0, es;q=0.1", "es"),  # q=0: not wanted
    ("fr, de", "en"),
    ("*", "en"),
    ("AR-eg", "ar"),
    ("ar;q=2, es", "es"),  # a weight over 1 is malformed: skipped
    ("ar;level=1, es", "es"),  # only q is a parameter
    ("arabic, es", "es"),  # "arabic" is not a tag's primary subtag here: not ar
    ("<script>, ar", "ar"),
    ("ar;q=0.5" + ", xx" * 200, "en"),  # too long to read
])
def test_accept_language(header: str | None, lang: str) -> None:
    assert texts.accepted_lang(header) == lang
