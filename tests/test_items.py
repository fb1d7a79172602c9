"""The stream entry contract (docs/publishing.md): `ticker.core.items`, pure function calls only."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ticker.core.errors import ValidationError
from ticker.core.items import (
    BIDI_CONTROLS,
    MAX_ENTRY_BYTES,
    MAX_TTL,
    OPS,
    TARGETED_OPS,
    Entry,
    check_expires,
    check_item_id,
    check_link,
    check_tags,
    check_text,
    check_ttl,
    check_urgency,
    decode_fields,
    entry_fields,
    parse_entry,
    parse_stream_id,
)

ITEM = "1732662000000-0"


def rejected(raw: Mapping[bytes, bytes] | Mapping[str, str]) -> ValidationError:
    """parse_entry(raw) must raise ValidationError (and nothing else); return it."""
    with pytest.raises(ValidationError) as info:
        parse_entry(raw)
    assert type(info.value) is ValidationError
    assert info.value.message
    return info.value


def publish(text: str = "Three drones launched toward Eilat", **fields: str) -> dict[str, str]:
    return {"op": "publish", "text": text, **fields}


def targeted(op: str, **fields: str) -> dict[str, str]:
    """A minimal valid entry for a targeted op, plus `fields`."""
    base: dict[str, str] = {"op": op, "item": ITEM}
    if op == "correct":
        base["text"] = "Corrected line"
    if op == "extend":
        base["ttl"] = "600"
    return {**base, **fields}


# -- valid entries --------------------------------------------------------------------------


def test_full_publish_str_map() -> None:
    entry = parse_entry(
        {
            "op": "publish",
            "text": "Israeli media: Three drones launched from Yemen toward Eilat",
            "source": "Israeli media",
            "urgency": "urgent",
            "link": "https://example.com/story?id=1#top",
            "tags": "yemen,israel",
            "ttl": "900",
            "expires": "1732669201000",
            "by": "wire-bot",
            "idem": "wire-123",
            "reason": "first report",
        }
    )
    assert entry == Entry(
        op="publish",
        item=None,
        text="Israeli media: Three drones launched from Yemen toward Eilat",
        source="Israeli media",
        urgency="urgent",
        link="https://example.com/story?id=1#top",
        tags=("yemen", "israel"),
        expires=1732669201000,
        ttl=900,
        by="wire-bot",
        idem="wire-123",
        reason="first report",
    )


def test_publish_bytes_map_equals_str_map() -> None:
    raw = {
        b"op": b"publish",
        b"text": "Caf\u00e9 \u0645\u0631\u062d\u0628\u0627".encode(),
        b"urgency": b"flash",
        b"tags": b"a,b",
    }
    as_str = {k.decode(): v.decode() for k, v in raw.items()}
    entry = parse_entry(raw)
    assert entry == parse_entry(as_str)
    assert entry.text == "Café مرحبا"
    assert entry.urgency == "flash"
    assert entry.tags == ("a", "b")


def test_minimal_publish_defaults() -> None:
    entry = parse_entry({"text": "hello"})
    assert entry == Entry(op="publish", text="hello")
    assert entry.item is None and entry.urgency is None and entry.tags is None


@pytest.mark.parametrize("op", ["", "   ", "publish", "PUBLISH", " Publish "])
def test_op_defaults_and_is_case_insensitive(op: str) -> None:
    assert parse_entry({"op": op, "text": "x"}).op == "publish"


def test_targeted_op_is_normalised() -> None:
    assert parse_entry({"op": " KILL ", "item": ITEM}).op == "kill"


def test_publish_ignores_an_item_field() -> None:
    assert parse_entry(publish(item=ITEM)).item is None


def test_nfc_normalisation() -> None:
    decomposed = "Cafe\u0301"  # e + combining acute
    entry = parse_entry(publish(decomposed))
    assert entry.text == "Caf\u00e9"
    assert len(entry.text) == 4


def test_limit_is_counted_after_nfc() -> None:
    # 560 code points as sent, 280 once composed: accepted.
    assert check_text("e\u0301" * 280) == "\u00e9" * 280


def test_text_is_stripped() -> None:
    assert parse_entry(publish("   hello world \t ")).text == "hello world"
    assert parse_entry(publish("\u00a0hello\u3000")).text == "hello"


def test_bidi_marks_are_allowed() -> None:
    text = "\u200fعاجل\u200e: 3 drones"
    assert parse_entry(publish(text)).text == text


def test_zero_width_joiner_emoji_is_allowed() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert parse_entry(publish(family)).text == family


def test_unknown_extra_fields_are_ignored() -> None:
    entry = parse_entry(publish("x", colour="red", **{"x-trace": "abc", "": "?"}))
    assert entry == Entry(op="publish", text="x")


@pytest.mark.parametrize(
    "name", ["source", "urgency", "link", "expires", "ttl", "by", "idem", "reason"]
)
def test_blank_optional_fields_are_absent(name: str) -> None:
    entry = parse_entry(publish("x", **{name: "  "}))
    assert entry == Entry(op="publish", text="x")


def test_blank_tags_mean_no_tags() -> None:
    # Present but blank tags are an empty list (a correction uses that to clear them).
    assert parse_entry(publish("x", tags="  ")).tags == ()
    assert parse_entry(publish("x")).tags is None


# -- text ---------------------------------------------------------------------------------


def test_text_missing() -> None:
    assert rejected({"op": "publish"}).field == "text"
    assert rejected({}).field == "text"


@pytest.mark.parametrize("text", ["", " ", "\t\t", "\u3000", "\n"])
def test_text_empty(text: str) -> None:
    assert rejected(publish(text)).field == "text"


@pytest.mark.parametrize(
    ("unit", "ok"),
    [
        ("x", 280),
        ("é", 280),
        ("\U0001f600", 280),  # one code point, two UTF-16 units, four UTF-8 bytes
        ("ب", 280),  # Arabic
        ("\u4e2d", 280),
    ],
)
def test_text_limit_in_code_points(unit: str, ok: int) -> None:
    assert parse_entry(publish(unit * ok)).text == unit * ok
    err = rejected(publish(unit * (ok + 1)))
    assert err.field == "text"
    assert "281" in err.message and "280" in err.message


def test_text_limit_counts_emoji_modifiers_as_code_points() -> None:
    thumbs = "\U0001f44d\U0001f3fd"  # 2 code points
    assert parse_entry(publish(thumbs * 140)).text == thumbs * 140
    assert rejected(publish(thumbs * 140 + "x")).field == "text"


def test_text_limit_applies_after_strip() -> None:
    assert parse_entry(publish("  " + "x" * 280 + "  ")).text == "x" * 280


@pytest.mark.parametrize("sep", ["\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"])
def test_text_must_be_one_line(sep: str) -> None:
    err = rejected(publish(f"line one{sep}line two"))
    assert err.field == "text"
    assert "one line" in err.message


@pytest.mark.parametrize("ch", ["\x00", "\x07", "\t", "\x1b", "\x7f", "\x9b"])
def test_text_control_characters(ch: str) -> None:
    err = rejected(publish(f"a{ch}b"))
    assert err.field == "text"
    assert f"U+{ord(ch):04X}" in err.message


@pytest.mark.parametrize("ch", ["\u0378", "\ue000", "\U000f0000"])  # unassigned, private use
def test_text_unassigned_and_private_use(ch: str) -> None:
    assert rejected(publish(f"a{ch}b")).field == "text"


@pytest.mark.parametrize("ch", sorted(BIDI_CONTROLS))
def test_text_bidi_controls(ch: str) -> None:
    err = rejected(publish(f"reversed {ch}evil"))
    assert err.field == "text"
    assert "bidi" in err.message


def test_bidi_override_u202e_specifically() -> None:
    assert rejected(publish("abc\u202edef")).field == "text"


@pytest.mark.parametrize(
    ("name", "limit"), [("source", 100), ("by", 64), ("idem", 128), ("reason", 500)]
)
def test_small_text_fields(name: str, limit: int) -> None:
    ok = parse_entry(publish("x", **{name: " " + "s" * limit + " "}))
    assert getattr(ok, name) == "s" * limit
    assert rejected(publish("x", **{name: "s" * (limit + 1)})).field == name
    assert rejected(publish("x", **{name: "a\nb"})).field == name
    assert rejected(publish("x", **{name: "a\u202eb"})).field == name
    assert rejected(publish("x", **{name: "a\x00b"})).field == name


def test_check_text_custom_field_and_limit() -> None:
    assert check_text(" ab ", "title", 2) == "ab"
    with pytest.raises(ValidationError) as info:
        check_text("abc", "title", 2)
    assert info.value.field == "title"


# -- encoding and size --------------------------------------------------------------------


def test_invalid_utf8_in_value_names_the_field() -> None:
    err = rejected({b"op": b"publish", b"text": b"caf\xe9"})
    assert err.field == "text"
    assert "UTF-8" in err.message


def test_invalid_utf8_in_key() -> None:
    err = rejected({b"text": b"ok", b"\xfftext": b"x"})
    assert err.field == "\ufffdtext"


def test_overlong_utf8_encoding_is_rejected() -> None:
    assert rejected({b"text": b"\xc0\xaf"}).field == "text"


def test_utf8_encoded_surrogate_is_rejected() -> None:
    assert rejected({b"text": b"a\xed\xa0\x80b"}).field == "text"


def test_lone_surrogate_in_str_map_is_a_validation_error() -> None:
    # A str map can hold a lone surrogate: json.loads('{"text": "\\ud800"}') gives one, and
    # the HTTP API hands such maps to parse_entry. It must be a 422, not a crash.
    assert rejected({"text": "a\ud800b"}).field == "text"
    with pytest.raises(ValidationError):
        decode_fields({"text": "\udfff"})


def test_one_megabyte_field_is_rejected() -> None:
    err = rejected({b"text": b"x", b"blob": b"a" * 1_000_000})
    assert err.field == "entry"
    err = rejected(publish("x", blob="a" * 1_000_000))
    assert err.field == "entry"


def test_one_megabyte_text_is_an_entry_error() -> None:
    assert rejected({b"text": b"a" * 1_000_000}).field == "entry"


def test_entry_size_boundary() -> None:
    # Keys and values count, in UTF-8 bytes.
    pad = MAX_ENTRY_BYTES - len("text") - len("x") - len("pad")
    assert parse_entry({"text": "x", "pad": "p" * pad}).text == "x"
    assert rejected({"text": "x", "pad": "p" * (pad + 1)}).field == "entry"
    multi = {"text": "x", "pad": "é" * (pad // 2 + 1)}  # é is two bytes
    assert rejected(multi).field == "entry"


def test_decode_fields() -> None:
    assert decode_fields({b"a": b"1", b"b": "é".encode()}) == {"a": "1", "b": "é"}
    assert decode_fields({"a": "1"}) == {"a": "1"}
    assert decode_fields({}) == {}


# -- op and item --------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["delete", "publishh", "pub lish", "kill!", "0"])
def test_unknown_op(op: str) -> None:
    err = rejected({"op": op, "item": ITEM, "text": "x"})
    assert err.field == "op"


def test_ops_constants() -> None:
    assert OPS == ("publish", "correct", "kill", "hold", "release", "pin", "unpin", "extend",
                   "confirm")
    assert frozenset(OPS) - TARGETED_OPS == {"publish"}


@pytest.mark.parametrize("op", sorted(TARGETED_OPS))
def test_targeted_op_without_item(op: str) -> None:
    fields = targeted(op)
    del fields["item"]
    err = rejected(fields)
    assert err.field == "item"
    assert op in err.message


@pytest.mark.parametrize("op", sorted(TARGETED_OPS))
def test_targeted_op_valid(op: str) -> None:
    entry = parse_entry(targeted(op))
    assert entry.op == op
    assert entry.item == ITEM


@pytest.mark.parametrize(
    "item",
    [
        "",
        " ",
        "abc",
        "1732662000000",
        "1732662000000-",
        "-0",
        "1-0-0",
        "1.5-0",
        "-1-0",
        "0x10-0",
        "1 -0",
        "18446744073709551616-0",
        "0-18446744073709551616",
        "123456789012345678901-0",
    ],
)
def test_bad_item_id(item: str) -> None:
    assert rejected({"op": "kill", "item": item}).field == "item"


@pytest.mark.parametrize("item", ["\u0661-\u0660", "1-0\n1"])
def test_non_ascii_or_multiline_item_id_is_rejected(item: str) -> None:
    assert rejected({"op": "kill", "item": item}).field == "item"


def test_item_id_is_stripped_and_bounds() -> None:
    assert parse_entry({"op": "kill", "item": f" {ITEM} "}).item == ITEM
    top = f"{(1 << 64) - 1}-{(1 << 64) - 1}"
    assert check_item_id(top) == top
    assert check_item_id("0-0") == "0-0"


def test_parse_stream_id() -> None:
    assert parse_stream_id("1732662000000-3") == (1732662000000, 3)
    assert parse_stream_id("0-0") == (0, 0)
    assert parse_stream_id("10-0") > parse_stream_id("9-0")  # type: ignore[operator]
    assert parse_stream_id("5-10") > parse_stream_id("5-2")  # type: ignore[operator]
    for bad in ("", "1", "1-", "a-b", "1-0 ", " 1-0", f"{1 << 64}-0"):
        assert parse_stream_id(bad) is None, bad


@pytest.mark.parametrize("value", ["1-0\n", "\u0665-\u0660", "\uff11-0"])
def test_parse_stream_id_is_strict_ascii_without_trailing_newline(value: str) -> None:
    # `$` matches before a final newline and `\d` matches any Unicode digit: a cursor such as
    # "1-0\n" (from ?cursor=1-0%0A) or Arabic-Indic digits is malformed, not a stream ID.
    assert parse_stream_id(value) is None


def test_non_text_op_with_text_is_rejected() -> None:
    assert rejected({"op": "kill", "item": ITEM, "text": "why"}).field == "text"
    assert parse_entry({"op": "kill", "item": ITEM, "text": "  "}).text is None


def test_correct_needs_text() -> None:
    assert rejected({"op": "correct", "item": ITEM}).field == "text"
    assert rejected({"op": "correct", "item": ITEM, "text": ""}).field == "text"


# -- urgency ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("flash", "flash"),
        ("urgent", "urgent"),
        ("breaking", "breaking"),
        ("FLASH", "flash"),
        (" Urgent ", "urgent"),
        ("1", "flash"),
        ("3", "urgent"),
        ("5", "breaking"),
        (" 5 ", "breaking"),
    ],
)
def test_urgency(raw: str, expected: str) -> None:
    assert parse_entry(publish("x", urgency=raw)).urgency == expected
    assert check_urgency(raw) == expected


@pytest.mark.parametrize("raw", ["0", "2", "4", "6", "01", "1.0", "alert", "breaking!", "fl ash"])
def test_bad_urgency(raw: str) -> None:
    assert rejected(publish("x", urgency=raw)).field == "urgency"


# -- link ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    [
        "https://example.com",
        "https://example.com/",
        "https://example.com/a/b?c=d&e=f#g",
        "https://example.com:8443/x",
        "https://xn--mgbh0fb.example/",
        "https://example.com?q",
        "https://example.com#frag",
    ],
)
def test_good_link(link: str) -> None:
    assert parse_entry(publish("x", link=link)).link == link


def test_link_is_stripped() -> None:
    assert parse_entry(publish("x", link="  https://example.com/a  ")).link == (
        "https://example.com/a"
    )


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        "http://example.com",
        "ftp://example.com",
        "//example.com/x",
        "example.com",
        "https://",
        "https:///path",
        "https://exa mple.com",
        "https://example.com/a b",
        "https://example.com/a\tb",
        "https://example.com/a\nb",
        "https://user:pass@example.com/",
        "data:text/html,<b>x</b>",
        "https:example.com",
        "https://example.com/\u2028x",
        "https://example.com/a\u00a0b",
        "https://example.com/a\u3000b",
        "https://example.com/\x00",
        "https://example.com/\x7f",
    ],
)
def test_bad_link(link: str) -> None:
    # Spaces of any kind and control characters are as wrong in a link as ASCII spaces.
    assert rejected(publish("x", link=link)).field == "link"


def test_link_length_limit() -> None:
    base = "https://example.com/"
    ok = base + "a" * (2000 - len(base))
    assert check_link(ok) == ok
    assert rejected(publish("x", link=ok + "a")).field == "link"


# -- tags ---------------------------------------------------------------------------------


def test_tags_normalisation() -> None:
    entry = parse_entry(publish("x", tags=" Palestine, LEBANON ,palestine,,gaza_strip,al-quds"))
    assert entry.tags == ("palestine", "lebanon", "gaza_strip", "al-quds")


def test_tags_limits() -> None:
    ten = ",".join(f"t{i}" for i in range(10))
    assert parse_entry(publish("x", tags=ten)).tags == tuple(f"t{i}" for i in range(10))
    assert rejected(publish("x", tags=ten + ",t10")).field == "tags"
    # Duplicates count once.
    assert len(check_tags(ten + ",T0,t1")) == 10
    assert check_tags("a" * 32) == ("a" * 32,)
    assert check_tags("0") == ("0",)


@pytest.mark.parametrize(
    "tag", ["a" * 33, "-lead", "_lead", "two words", "é", "semi;colon", "dot.ted", "slash/ed"]
)
def test_bad_tag(tag: str) -> None:
    assert rejected(publish("x", tags=f"ok,{tag}")).field == "tags"


# -- ttl, expires, extend -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "ttl"), [("1", 1), ("600", 600), (" 60 ", 60), (str(MAX_TTL), MAX_TTL)]
)
def test_ttl(raw: str, ttl: int) -> None:
    assert parse_entry(publish("x", ttl=raw)).ttl == ttl
    assert check_ttl(raw) == ttl


@pytest.mark.parametrize("raw", ["0", "-5", str(MAX_TTL + 1), "1.5", "1e3", "abc", "10s"])
def test_bad_ttl(raw: str) -> None:
    assert rejected(publish("x", ttl=raw)).field == "ttl"


def test_max_ttl_is_seven_days() -> None:
    assert MAX_TTL == 7 * 24 * 3600


@pytest.mark.parametrize(
    ("raw", "ms"),
    [
        ("1732669201000", 1732669201000),
        (" 1732669201000 ", 1732669201000),
        ("1", 1),
        (str((1 << 53) - 1), (1 << 53) - 1),
        ("2024-11-27T01:00:01Z", 1732669201000),
        ("2024-11-27T01:00:01+00:00", 1732669201000),
        ("2024-11-27T03:00:01+02:00", 1732669201000),
        ("2024-11-26T20:00:01-05:00", 1732669201000),
        ("2024-11-27T01:00:01.250Z", 1732669201250),
        ("2024-11-27T01:00:01.007Z", 1732669201007),
    ],
)
def test_expires(raw: str, ms: int) -> None:
    assert parse_entry(publish("x", expires=raw)).expires == ms
    assert check_expires(raw) == ms


def test_expires_iso_matches_datetime() -> None:
    when = datetime(2030, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
    assert check_expires(when.isoformat()) == 1904281689123


@pytest.mark.parametrize(
    "raw",
    ["2024-11-27T01:00:01", "2024-11-27 01:00:01", "2024-11-27"],
)
def test_expires_without_zone_is_rejected(raw: str) -> None:
    err = rejected(publish("x", expires=raw))
    assert err.field == "expires"
    assert "zone" in err.message


@pytest.mark.parametrize(
    "raw",
    [
        "0",
        str(1 << 53),
        "tomorrow",
        "-1",
        "1.5",
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2024-13-01T00:00:00Z",
    ],
)
def test_bad_expires(raw: str) -> None:
    assert rejected(publish("x", expires=raw)).field == "expires"


@pytest.mark.parametrize(
    "raw", ["\u00b2", "\u00b9\u00b2", pytest.param("1" * 5000, id="5000-digits")]
)
def test_expires_odd_digits_are_a_validation_error(raw: str) -> None:
    # str.isdigit() is True for "²", but int("²") raises ValueError;
    # a 5000-digit number exceeds int()'s digit limit (ValueError too). Either way the entry
    # must be rejected with ValidationError, never crash the reader with ValueError.
    with pytest.raises(ValidationError) as info:
        check_expires(raw)
    assert info.value.field == "expires"
    assert rejected(publish("x", expires=raw)).field == "expires"


def test_extend_needs_ttl_or_expires() -> None:
    err = rejected({"op": "extend", "item": ITEM})
    assert err.field == "ttl"
    assert parse_entry({"op": "extend", "item": ITEM, "ttl": "60"}).ttl == 60
    assert parse_entry({"op": "extend", "item": ITEM, "expires": "1732669201000"}).expires == (
        1732669201000
    )
    assert rejected({"op": "extend", "item": ITEM, "ttl": " "}).field == "ttl"


# -- canonical fields ---------------------------------------------------------------------


ROUND_TRIP: list[Mapping[bytes, bytes] | Mapping[str, str]] = [
    {"text": "x"},
    publish(
        "Cafe\u0301",
        source=" Wire ",
        urgency="1",
        link=" https://e.com/a ",
        tags="B, a ,b",
        ttl="60",
        expires="2024-11-27T01:00:01Z",
        by="bot",
        idem="k1",
        reason="why",
    ),
    targeted("correct", source="s", urgency="3", tags="x,y", reason="typo"),
    targeted("kill", reason="wrong", by="ed"),
    targeted("hold"),
    targeted("release"),
    targeted("pin"),
    targeted("unpin"),
    targeted("extend"),
    {"op": "extend", "item": ITEM, "expires": "1732669201000"},
    {b"text": "\u0639\u0627\u062c\u0644".encode(), b"tags": b"ar"},
]


@pytest.mark.parametrize("raw", ROUND_TRIP)
def test_entry_fields_round_trip(raw: Mapping[bytes, bytes] | Mapping[str, str]) -> None:
    entry = parse_entry(raw)
    fields = entry_fields(entry)
    assert parse_entry(fields) == entry
    assert entry_fields(parse_entry(fields)) == fields


def test_entry_fields_canonical_form() -> None:
    fields = entry_fields(parse_entry(ROUND_TRIP[1]))
    assert fields == {
        "op": "publish",
        "text": "Café",
        "source": "Wire",
        "urgency": "flash",
        "link": "https://e.com/a",
        "tags": "b,a",
        "expires": "1732669201000",
        "ttl": "60",
        "by": "bot",
        "idem": "k1",
        "reason": "why",
    }
    assert entry_fields(Entry(op="hold", item=ITEM)) == {"op": "hold", "item": ITEM}


def test_entry_fields_round_trip_of_empty_tag_list() -> None:
    # tags="," parses to tags=() (on a correct: "clear the tags"), but entry_fields drops
    # empty tags, so the canonical fields the API XADDs mean tags=None ("keep the tags").
    entry = parse_entry(targeted("correct", tags=","))
    assert entry.tags == ()
    assert parse_entry(entry_fields(entry)) == entry


# -- properties ---------------------------------------------------------------------------

# Per field: values that are (nearly) right, so random entries get deep into validation.
PLAUSIBLE: dict[bytes, list[bytes]] = {
    b"op": [b"publish", b"PUBLISH", b"", b"kill", b"correct", b"extend", b"hold", b"pin"],
    b"item": [b"1732662000000-0", b" 1-0 ", b"18446744073709551615-0"],
    b"text": [b"hello", "Caf\u00e9 \u2615".encode(), "\u0639\u0627\u062c\u0644".encode()],
    b"source": [b"Wire", b" Israeli media "],
    b"urgency": [b"flash", b"URGENT", b"3", b"5"],
    b"link": [b"https://e.com/a?b#c"],
    b"tags": [b"a,b", b" X ", b"a,,a"],
    b"expires": [
        b"1732669201000",
        b"2024-11-27T01:00:01Z",
        b"2024-11-27T01:00:01",
        b"\xc2\xb2",
        b"\xd9\xa3",
        b"9007199254740992",
    ],
    b"ttl": [b"60", b"604800", b"604801", b"0"],
    b"by": [b"bot"],
    b"idem": [b"k-1"],
    b"reason": [b"typo"],
}
ODD_VALUES = [b"", b" ", b"\xff", b"\xc3", b"\xe2\x80\xae", b"\n", b"-1", b"1-0", b"\xef\xbc\x91"]

raw_values = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.binary(max_size=40),
    st.text(max_size=40).map(lambda s: s.encode("utf-8")),
    st.integers(min_value=-(10**20), max_value=10**20).map(lambda n: str(n).encode()),
)


def mostly(values: list[bytes]) -> st.SearchStrategy[bytes]:
    """Three times in four a plausible value, else anything."""
    return st.integers(0, 3).flatmap(lambda i: st.sampled_from(values) if i else raw_values)


# Each of the contract's fields maybe present, plus some arbitrary keys.
raw_entries = st.builds(
    lambda known, other: {**other, **known},
    st.fixed_dictionaries(
        {},
        optional={name: mostly(values) for name, values in PLAUSIBLE.items()},
    ),
    st.dictionaries(st.binary(max_size=12), raw_values, max_size=3),
)


@settings(
    max_examples=1000,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
@given(raw_entries)
def test_parse_entry_only_raises_validation_error(raw: dict[bytes, bytes]) -> None:
    try:
        entry = parse_entry(raw)
    except ValidationError:
        return
    assert entry.op in OPS
    assert (entry.item is None) == (entry.op == "publish")


def test_parse_entry_big_random_blob_is_rejected_cleanly() -> None:
    assert rejected({b"text": bytes(range(256)) * 40}).field == "entry"
