"""ChannelState: folding validated entries into what is on air. Pure function calls."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ticker.core.errors import ValidationError
from ticker.core.items import DEFAULT_TTL, Entry, parse_entry, parse_stream_id
from ticker.core.state import IDEM_WINDOW_MS, ChannelState, Item, Rejected, stream_ms

T0 = 1_732_662_000_000
HOUR = 3_600_000


def sid(ms_offset: int, seq: int = 0) -> str:
    return f"{T0 + ms_offset}-{seq}"


def entry(**fields: str) -> Entry:
    return parse_entry(fields)


def pub(text: str = "Three drones launched toward Eilat", **fields: str) -> Entry:
    return entry(op="publish", text=text, **fields)


def op(name: str, item: str, **fields: str) -> Entry:
    return entry(op=name, item=item, **fields)


def ids(items: list[Item]) -> list[str]:
    return [it.id for it in items]


@pytest.fixture
def state() -> ChannelState:
    return ChannelState("en")


def published(state: ChannelState, at: int = 0, seq: int = 0, **fields: str) -> str:
    entry_id = sid(at, seq)
    assert state.apply(entry_id, pub(**fields)) is not None
    return entry_id


# -- publish ------------------------------------------------------------------------------


def test_publish_event_has_the_full_item(state: ChannelState) -> None:
    e = pub(
        "Israeli media: drones toward Eilat",
        source="Israeli media",
        urgency="urgent",
        link="https://e.com/x",
        tags="yemen,israel",
        by="wire-bot",
    )
    event = state.apply(sid(0), e)
    assert event == {
        "op": "publish",
        "cursor": sid(0),
        "item": {
            "id": sid(0),
            "text": "Israeli media: drones toward Eilat",
            "source": "Israeli media",
            "urgency": "urgent",
            "link": "https://e.com/x",
            "tags": ["yemen", "israel"],
            "ts": T0,
            "expires": T0 + 2 * HOUR,
            "version": 1,
            "corrected": False,
            "pinned": False,
            "story": f"en:{sid(0)}",
            "versions": {"en": sid(0)},
        },
    }
    assert "by" not in event["item"]  # who published is not for readers
    assert state.items[sid(0)].by == "wire-bot"
    assert state.cursor == sid(0)


def test_publish_minimal_defaults(state: ChannelState) -> None:
    event = state.apply(sid(0, 7), pub("x"))
    assert event is not None
    item = event["item"]
    assert item["id"] == sid(0, 7)
    assert item["urgency"] == "breaking"
    assert item["source"] is None and item["link"] is None
    assert item["tags"] == []
    assert item["ts"] == T0


@pytest.mark.parametrize(
    ("urgency", "hours"), [("flash", 1), ("urgent", 2), ("breaking", 3), (None, 3)]
)
def test_default_expiry_per_urgency_from_stream_id(
    state: ChannelState, urgency: str | None, hours: int
) -> None:
    e = pub("x") if urgency is None else pub("x", urgency=urgency)
    event = state.apply("1000-5", e)
    assert event is not None
    assert event["item"]["ts"] == 1000
    assert event["item"]["expires"] == 1000 + hours * HOUR
    assert DEFAULT_TTL[urgency or "breaking"] == hours * 3600


def test_ttl_overrides_default_and_expires_overrides_ttl(state: ChannelState) -> None:
    a = state.apply(sid(0), pub("a", urgency="flash", ttl="60"))
    b = state.apply(sid(1), pub("b", ttl="60", expires=str(T0 + 5)))
    assert a is not None and b is not None
    assert a["item"]["expires"] == T0 + 60_000
    assert b["item"]["expires"] == T0 + 5


def test_public_dict_is_not_mutated_by_later_changes(state: ChannelState) -> None:
    event = state.apply(sid(0), pub("first"))
    assert event is not None
    state.apply(sid(1), op("correct", sid(0), text="second"))
    assert event["item"]["text"] == "first"
    assert event["item"]["version"] == 1


# -- kill ---------------------------------------------------------------------------------


def test_kill_removes_the_item(state: ChannelState) -> None:
    item = published(state)
    event = state.apply(sid(10), op("kill", item, reason="unconfirmed"))
    assert event == {"op": "kill", "cursor": sid(10), "id": item}
    assert state.on_air(T0 + 20) == []
    assert state.items[item].killed
    assert state.items[item].killed_at == T0 + 10


def test_kill_of_unknown_item_is_rejected(state: ChannelState) -> None:
    with pytest.raises(Rejected) as info:
        state.apply(sid(1), op("kill", sid(0)))
    assert isinstance(info.value, ValidationError)
    assert info.value.field == "item"
    assert info.value.code == "rejected"
    assert state.cursor == sid(1)  # the cursor advances even for a rejected entry


@pytest.mark.parametrize("name", ["correct", "kill", "hold", "release", "pin", "unpin", "extend"])
def test_any_op_on_a_killed_item_is_rejected(state: ChannelState, name: str) -> None:
    item = published(state)
    state.apply(sid(1), op("kill", item))
    extra = {"text": "new"} if name == "correct" else {"ttl": "60"} if name == "extend" else {}
    with pytest.raises(Rejected) as info:
        state.apply(sid(2), op(name, item, **extra))
    assert info.value.field == "item"
    assert state.cursor == sid(2)
    assert state.items[item].killed


@pytest.mark.parametrize("name", ["correct", "hold", "release", "pin", "unpin", "extend"])
def test_any_op_on_an_unknown_item_is_rejected(state: ChannelState, name: str) -> None:
    published(state)
    extra = {"text": "new"} if name == "correct" else {"ttl": "60"} if name == "extend" else {}
    with pytest.raises(Rejected):
        state.apply(sid(5), op(name, "1-0", **extra))
    assert state.cursor == sid(5)


def test_skip_advances_the_cursor(state: ChannelState) -> None:
    published(state)
    state.skip(sid(3))
    assert state.cursor == sid(3)
    assert len(state.items) == 1


# -- hold and release ---------------------------------------------------------------------


def test_hold_takes_the_item_off_air(state: ChannelState) -> None:
    item = published(state)
    assert state.apply(sid(1), op("hold", item)) == {"op": "hold", "cursor": sid(1), "id": item}
    assert state.on_air(T0 + 2) == []
    assert state.items[item].held
    assert state.apply(sid(2), op("hold", item)) is None  # already held
    assert state.cursor == sid(2)


def test_release_puts_it_back(state: ChannelState) -> None:
    item = published(state)
    state.apply(sid(1), op("hold", item))
    event = state.apply(sid(2), op("release", item))
    assert event is not None
    assert event["op"] == "release" and event["cursor"] == sid(2)
    assert event["item"]["id"] == item
    assert ids(state.on_air(T0 + 3)) == [item]


def test_release_of_a_live_item_is_a_no_op(state: ChannelState) -> None:
    item = published(state)
    assert state.apply(sid(1), op("release", item)) is None
    assert state.cursor == sid(1)


def test_ops_on_a_held_item_change_state_silently(state: ChannelState) -> None:
    item = published(state)
    state.apply(sid(1), op("hold", item))
    assert state.apply(sid(2), op("correct", item, text="fixed")) is None
    assert state.apply(sid(3), op("pin", item)) is None
    assert state.apply(sid(4), op("extend", item, ttl="60")) is None
    assert state.on_air(T0 + 5) == []
    event = state.apply(sid(5), op("release", item))
    assert event is not None
    assert event["item"]["text"] == "fixed"
    assert event["item"]["version"] == 2
    assert event["item"]["corrected"] is True
    assert event["item"]["pinned"] is True
    assert event["item"]["expires"] == T0 + 4 + 60_000


def test_unpin_on_held_item_is_silent(state: ChannelState) -> None:
    item = published(state)
    state.apply(sid(1), op("pin", item))
    state.apply(sid(2), op("hold", item))
    assert state.apply(sid(3), op("unpin", item)) is None
    assert not state.items[item].pinned


def test_kill_of_a_held_item_is_silent_and_final(state: ChannelState) -> None:
    item = published(state)
    state.apply(sid(1), op("hold", item))
    assert state.apply(sid(2), op("kill", item)) is None
    assert state.items[item].killed
    with pytest.raises(Rejected):
        state.apply(sid(3), op("release", item))
    assert state.on_air(T0 + 4) == []


# -- correct ------------------------------------------------------------------------------


def test_correct(state: ChannelState) -> None:
    item = published(state, source="Wire", urgency="urgent", link="https://e.com/a", tags="a")
    event = state.apply(sid(1), op("correct", item, text="Fixed line", reason="typo"))
    assert event is not None
    assert event["op"] == "correct" and event["cursor"] == sid(1)
    it = event["item"]
    assert (it["id"], it["text"], it["version"], it["corrected"]) == (item, "Fixed line", 2, True)
    # Fields the correction did not name are kept.
    assert (it["source"], it["urgency"], it["link"], it["tags"]) == (
        "Wire",
        "urgent",
        "https://e.com/a",
        ["a"],
    )
    assert it["ts"] == T0  # an item keeps its place
    event = state.apply(
        sid(2),
        op(
            "correct",
            item,
            text="Again",
            source="AP",
            urgency="flash",
            link="https://e.com/b",
            tags="b,c",
        ),
    )
    assert event is not None
    it = event["item"]
    assert (it["text"], it["version"]) == ("Again", 3)
    assert (it["source"], it["urgency"], it["link"], it["tags"]) == (
        "AP",
        "flash",
        "https://e.com/b",
        ["b", "c"],
    )


def test_correct_keeps_expiry(state: ChannelState) -> None:
    item = published(state, urgency="flash")
    event = state.apply(sid(10), op("correct", item, text="x", urgency="breaking"))
    assert event is not None
    assert event["item"]["expires"] == T0 + HOUR


# -- pin, unpin and order -----------------------------------------------------------------


def test_newest_first_by_numeric_stream_id() -> None:
    state = ChannelState("en")
    state.apply("9-0", pub("nine"))
    state.apply("10-0", pub("ten"))
    assert ids(state.on_air(11)) == ["10-0", "9-0"]


def test_same_millisecond_sequences_order_numerically() -> None:
    state = ChannelState("en")
    for seq in (1, 2, 9, 10, 11):
        state.apply(f"5-{seq}", pub(f"s{seq}"))
    assert ids(state.on_air(6)) == ["5-11", "5-10", "5-9", "5-2", "5-1"]


def test_pinned_first(state: ChannelState) -> None:
    a, b, c = published(state, 0), published(state, 1), published(state, 2)
    assert ids(state.on_air(T0 + 3)) == [c, b, a]
    event = state.apply(sid(3), op("pin", a))
    assert event is not None
    assert event["op"] == "pin" and event["item"]["pinned"] is True
    assert ids(state.on_air(T0 + 4)) == [a, c, b]
    state.apply(sid(4), op("pin", b))
    assert ids(state.on_air(T0 + 5)) == [b, a, c]  # pinned: newest first too
    event = state.apply(sid(5), op("unpin", b))
    assert event is not None
    assert event["op"] == "unpin" and event["item"]["pinned"] is False
    assert ids(state.on_air(T0 + 6)) == [a, c, b]
    state.apply(sid(6), op("unpin", a))
    assert ids(state.on_air(T0 + 7)) == [c, b, a]


def test_pin_across_digit_counts() -> None:
    state = ChannelState("en")
    state.apply("9-0", pub("nine"))
    state.apply("10-0", pub("ten"))
    state.apply("100-0", pub("hundred"))
    state.apply("101-0", op("pin", "9-0"))
    assert ids(state.on_air(102)) == ["9-0", "100-0", "10-0"]


# -- extend and expiry --------------------------------------------------------------------


def test_extend_with_ttl_counts_from_the_extend_entry(state: ChannelState) -> None:
    item = published(state, urgency="flash")
    event = state.apply(sid(30 * 60_000), op("extend", item, ttl="7200"))
    assert event is not None
    assert event["op"] == "extend"
    assert event["item"]["expires"] == T0 + 30 * 60_000 + 7200_000


def test_extend_with_expires(state: ChannelState) -> None:
    item = published(state)
    event = state.apply(sid(1), op("extend", item, expires=str(T0 + 10 * HOUR)))
    assert event is not None
    assert event["item"]["expires"] == T0 + 10 * HOUR
    # expires wins over ttl
    event = state.apply(sid(2), op("extend", item, ttl="1", expires=str(T0 + 11 * HOUR)))
    assert event is not None
    assert event["item"]["expires"] == T0 + 11 * HOUR


def test_extend_can_shorten_and_revive(state: ChannelState) -> None:
    item = published(state, urgency="flash")
    state.apply(sid(1), op("extend", item, expires=str(T0 + 100)))
    assert state.on_air(T0 + 100) == []
    state.apply(sid(200), op("extend", item, ttl="60"))
    assert ids(state.on_air(T0 + 300)) == [item]


def test_on_air_excludes_expired(state: ChannelState) -> None:
    item = published(state, urgency="flash")
    expires = T0 + HOUR
    assert ids(state.on_air(expires - 1)) == [item]
    assert state.on_air(expires) == []
    assert state.on_air(expires + 1) == []
    assert item in state.items  # expired items are still known (they can be extended)


def test_max_items_cap() -> None:
    state = ChannelState("en", max_items=3)
    items = [published(state, i) for i in range(5)]
    assert ids(state.on_air(T0 + 10)) == items[::-1][:3]
    state.apply(sid(10), op("pin", items[0]))
    assert ids(state.on_air(T0 + 11)) == [items[0], items[4], items[3]]
    state.apply(sid(11), op("kill", items[4]))
    assert ids(state.on_air(T0 + 12)) == [items[0], items[3], items[2]]


def test_expired_items_free_their_slot() -> None:
    state = ChannelState("en", max_items=2)
    old = published(state, 0)
    short = published(state, 1, ttl="1")
    newest = published(state, 2, ttl="1")
    assert ids(state.on_air(T0 + 3)) == [newest, short]
    assert ids(state.on_air(T0 + 5000)) == [old]


def test_max_kept_evicts_the_oldest_item() -> None:
    state = ChannelState("en", max_kept=3)
    items = [published(state, i) for i in range(4)]
    assert list(state.items) == items[1:]
    with pytest.raises(Rejected):
        state.apply(sid(10), op("kill", items[0]))


# -- idempotency --------------------------------------------------------------------------


def test_same_idem_within_24h_is_a_duplicate(state: ChannelState) -> None:
    first = published(state, 0, idem="wire-1")
    assert state.apply(sid(1), pub("again", idem="wire-1")) is None
    assert state.apply(sid(IDEM_WINDOW_MS - 1), pub("later", idem="wire-1")) is None
    assert state.cursor == sid(IDEM_WINDOW_MS - 1)
    assert list(state.items) == [first]
    assert state.idem_item("wire-1") == first
    assert state.idem_item("nope") is None


def test_same_idem_after_24h_publishes_again(state: ChannelState) -> None:
    published(state, 0, idem="wire-1")
    event = state.apply(sid(IDEM_WINDOW_MS), pub("a day later", idem="wire-1"))
    assert event is not None
    assert event["item"]["id"] == sid(IDEM_WINDOW_MS)
    assert state.idem_item("wire-1") == sid(IDEM_WINDOW_MS)
    assert IDEM_WINDOW_MS == 24 * HOUR


def test_different_idem_keys_are_independent(state: ChannelState) -> None:
    a = published(state, 0, idem="a")
    b = published(state, 1, idem="b")
    assert (state.idem_item("a"), state.idem_item("b")) == (a, b)
    assert state.apply(sid(2), pub("x")) is not None  # no idem: never a duplicate
    assert state.apply(sid(3), pub("x")) is not None


def test_cursor_advances_on_every_apply(state: ChannelState) -> None:
    item = published(state, 0)
    seen = [state.cursor]
    state.apply(sid(1), op("release", item))  # None
    seen.append(state.cursor)
    with pytest.raises(Rejected):
        state.apply(sid(2), op("kill", "1-1"))
    seen.append(state.cursor)
    state.skip(sid(3))
    seen.append(state.cursor)
    assert seen == [sid(0), sid(1), sid(2), sid(3)]


def test_stream_ms() -> None:
    assert stream_ms("1732662000000-4") == 1732662000000
    with pytest.raises(ValueError):
        stream_ms("nope")


# -- property: on_air order and size ------------------------------------------------------

OP_NAMES = [
    "publish",
    "publish",
    "publish",
    "kill",
    "hold",
    "release",
    "pin",
    "unpin",
    "extend",
    "correct",
]

steps = st.lists(
    st.tuples(
        st.sampled_from(OP_NAMES),
        st.integers(0, 30),  # which earlier item (modulo how many there are)
        st.integers(0, 3),  # ms step (0: same millisecond, next sequence)
        st.sampled_from([None, "1", "60", "3600"]),  # ttl
    ),
    max_size=60,
)


def sort_key(it: Item) -> tuple[bool, tuple[int, int] | None]:
    return (it.pinned, parse_stream_id(it.id))


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
@given(steps, st.integers(1, 6), st.integers(0, 400_000))
def test_on_air_is_ordered_and_capped(
    plan: list[tuple[str, int, int, str | None]], max_items: int, later: int
) -> None:
    state = ChannelState("en", max_items=max_items)
    ms, seq = 1000, 0
    published_ids: list[str] = []
    for name, target, step, ttl in plan:
        if step:
            ms, seq = ms + step, 0
        else:
            seq += 1
        entry_id = f"{ms}-{seq}"
        fields: dict[str, Any] = {"op": name}
        if name != "publish":
            if not published_ids:
                continue
            fields["item"] = published_ids[target % len(published_ids)]
        if name in ("publish", "correct"):
            fields["text"] = f"t{ms}"
        if ttl is not None and name in ("publish", "extend"):
            fields["ttl"] = ttl
        elif name == "extend":
            fields["ttl"] = "30"
        with contextlib.suppress(Rejected):
            state.apply(entry_id, parse_entry(fields))
        if name == "publish":
            published_ids.append(entry_id)
        assert state.cursor == entry_id
    for now in (ms, ms + 1500, ms + later):
        air = state.on_air(now)
        assert len(air) <= max_items
        keys = [sort_key(it) for it in air]
        assert keys == sorted(keys, reverse=True)
        assert len(set(ids(air))) == len(air)
        for it in air:
            assert not it.held and not it.killed and it.expires > now
        # Nothing on air was left out in favour of something that sorts lower.
        live = sorted(
            (it for it in state.items.values() if it.on_air(now)), key=sort_key, reverse=True
        )
        assert ids(air) == ids(live[:max_items])
