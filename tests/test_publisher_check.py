"""`ticker.redis.publisher.check`: the client-side validation, identical to every node's."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ticker.core.errors import ValidationError
from ticker.core.items import parse_entry
from ticker.redis.publisher import check

ITEM = "1732662000000-0"


def test_canonical_fields() -> None:
    out = check(
        {
            "text": "  Cafe\u0301 opens  ",
            "source": " Wire ",
            "urgency": "1",
            "link": " https://e.com/a ",
            "tags": "B, a ,b,,",
            "ttl": " 60 ",
            "expires": "2024-11-27T03:00:01+02:00",
            "by": "bot",
            "idem": "k-1",
        }
    )
    assert out == {
        "op": "publish",
        "text": "Café opens",
        "source": "Wire",
        "urgency": "flash",
        "link": "https://e.com/a",
        "tags": "b,a",
        "ttl": "60",
        "expires": "1732669201000",
        "by": "bot",
        "idem": "k-1",
    }


def test_unknown_and_blank_fields_are_dropped() -> None:
    assert check({"text": "x", "colour": "red", "source": "  ", "tags": ""}) == {
        "op": "publish",
        "text": "x",
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"op": "KILL", "item": f" {ITEM} ", "reason": "wrong"},
            {"op": "kill", "item": ITEM, "reason": "wrong"},
        ),
        ({"op": "hold", "item": ITEM}, {"op": "hold", "item": ITEM}),
        ({"op": "release", "item": ITEM}, {"op": "release", "item": ITEM}),
        ({"op": "pin", "item": ITEM, "by": "ed"}, {"op": "pin", "item": ITEM, "by": "ed"}),
        ({"op": "unpin", "item": ITEM}, {"op": "unpin", "item": ITEM}),
        (
            {"op": "extend", "item": ITEM, "ttl": "600"},
            {"op": "extend", "item": ITEM, "ttl": "600"},
        ),
        (
            {"op": "correct", "item": ITEM, "text": "Fixed", "urgency": "3"},
            {"op": "correct", "item": ITEM, "text": "Fixed", "urgency": "urgent"},
        ),
    ],
)
def test_targeted_ops(fields: dict[str, str], expected: dict[str, str]) -> None:
    assert check(fields) == expected


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "text"),
        ({"text": "x" * 281}, "text"),
        ({"text": "a\nb"}, "text"),
        ({"text": "a\u202eb"}, "text"),
        ({"text": "ok", "urgency": "apocalyptic"}, "urgency"),
        ({"text": "ok", "link": "javascript:alert(1)"}, "link"),
        ({"text": "ok", "link": "http://e.com"}, "link"),
        ({"text": "ok", "ttl": "-5"}, "ttl"),
        ({"text": "ok", "tags": "fine,NOT OK!"}, "tags"),
        ({"text": "ok", "expires": "2024-11-27T01:00:01"}, "expires"),
        ({"op": "delete", "item": ITEM}, "op"),
        ({"op": "kill"}, "item"),
        ({"op": "kill", "item": "latest"}, "item"),
        ({"op": "extend", "item": ITEM}, "ttl"),
        ({"text": "ok", "blob": "x" * 10_000}, "entry"),
    ],
)
def test_invalid_fields_name_the_field(fields: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        check(fields)
    assert info.value.field == field


def test_check_is_idempotent_and_preserves_meaning() -> None:
    fields = {"op": "correct", "item": ITEM, "text": "e\u0301", "tags": "X,y", "urgency": "5"}
    once = check(fields)
    assert check(once) == once
    assert parse_entry(once) == parse_entry(fields)


# -- property: check() never changes what an entry means ----------------------------------

TAG = st.from_regex(r"\A[A-Za-z0-9][a-z0-9_-]{0,6}\Z")
TEXT = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp")),
    min_size=1,
    max_size=30,
)

valid_fields = st.fixed_dictionaries(
    {"text": TEXT},
    optional={
        "op": st.sampled_from(["publish", "PUBLISH", " publish "]),
        "source": TEXT,
        "urgency": st.sampled_from(["flash", "urgent", "breaking", "1", "3", "5", " Flash "]),
        "link": st.sampled_from(["https://e.com", " https://e.com/a?b=c#d "]),
        # Lists of real tags (the empty-list case "," is covered by test_items).
        "tags": st.lists(TAG, min_size=1, max_size=10).map(", ".join),
        "ttl": st.integers(1, 7 * 24 * 3600).map(str),
        "expires": st.integers(1, (1 << 53) - 1).map(str),
        "by": st.sampled_from(["bot", " ed "]),
        "idem": st.sampled_from(["k", "k-2"]),
        "reason": TEXT,
        "extra": st.text(max_size=5),
    },
)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
@given(valid_fields)
def test_check_preserves_meaning(fields: dict[str, str]) -> None:
    try:
        entry = parse_entry(fields)
    except ValidationError:
        # e.g. text that is blank once stripped: check() rejects it the same way.
        with pytest.raises(ValidationError):
            check(fields)
        return
    canonical = check(fields)
    assert parse_entry(canonical) == entry
    assert check(canonical) == canonical
