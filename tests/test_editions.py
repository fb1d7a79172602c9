"""Versions of one story across editions: the fold, the index, the events, the edge checks.

Pure: hubs with fake subscribers (tests/test_hub.py), no Redis. The end-to-end flows (HTTP,
desk, CLI, two nodes, Chromium) are in tests/e2e/test_editions.py and
tests/browser/test_editions_flow.py.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.test_hub import AR, EN, NOW, FakeSub, sid
from ticker.core.channels import Channel
from ticker.core.editions import check_link, needs_update, versions_of
from ticker.core.errors import HTTPError, ValidationError
from ticker.core.hub import Hub
from ticker.core.items import parse_entry

ES = Channel(name="es", lang="es", dir="ltr", title="Última hora")

Entry = tuple[str, str, dict[bytes, bytes]]  # (channel, entry id, fields)


def pub(text: str, **fields: str) -> dict[bytes, bytes]:
    raw = {"op": "publish", "text": text, **fields}
    return {k.encode(): v.encode() for k, v in raw.items()}


def op(name: str, item: str, **fields: str) -> dict[bytes, bytes]:
    raw = {"op": name, "item": item, **fields}
    return {k.encode(): v.encode() for k, v in raw.items()}


def fold(entries: list[Entry], hub: Hub | None = None) -> Hub:
    hub = hub or Hub([EN, AR, ES])
    for channel, entry_id, fields in entries:
        hub.channels[channel].apply([(entry_id, fields)], NOW)
    return hub


def public(hub: Hub, channel: str, item_id: str) -> dict[str, Any]:
    return hub.channels[channel].state.items[item_id].public()


def events_of(sub: FakeSub) -> list[dict[str, Any]]:
    return [e for m in sub.take() if m["type"] == "events" for e in m["events"]]


# -- the fold ----------------------------------------------------------------------------------

def test_a_translation_links_both_ways_and_readers_of_the_original_are_told() -> None:
    hub = fold([("en", sid(1), pub("Drones launched toward Eilat", urgency="flash"))])
    en_reader, ar_reader = FakeSub("en"), FakeSub("ar")
    hub.channels["en"].subscribe(en_reader, None, NOW)
    hub.channels["ar"].subscribe(ar_reader, None, NOW)
    en_reader.take(), ar_reader.take()

    fold([("ar", sid(2), pub("إطلاق مسيّرات نحو إيلات", translation_of=f"en:{sid(1)}"))], hub)

    (published,) = events_of(ar_reader)
    assert published["op"] == "publish"
    assert published["item"]["story"] == f"en:{sid(1)}"
    assert published["item"]["versions"] == {"ar": sid(2), "en": sid(1)}
    (relinked,) = events_of(en_reader)
    # No cursor: nothing happened in the en stream, and the widget must not skip it.
    assert relinked == {"op": "versions", "item": public(hub, "en", sid(1))}
    assert relinked["item"]["versions"] == {"ar": sid(2), "en": sid(1)}
    assert relinked["item"]["story"] == f"en:{sid(1)}"
    # The cached snapshot of en was dropped: a new reader sees the link.
    late = FakeSub("late")
    hub.channels["en"].subscribe(late, None, NOW)
    (snapshot,) = late.take()
    assert snapshot["items"][0]["versions"] == {"ar": sid(2), "en": sid(1)}


def test_versions_are_the_same_whatever_order_the_editions_are_read_in() -> None:
    entries: list[Entry] = [
        ("en", sid(1), pub("original")),
        ("ar", sid(2), pub("ترجمة", translation_of=f"en:{sid(1)}")),
        ("es", sid(3), pub("traducción", translation_of=f"en:{sid(1)}")),
        # A second es version (raw XADD; every edge refuses it): the lowest id wins.
        ("es", sid(4), pub("otra traducción", translation_of=f"en:{sid(1)}")),
        # A translation of a translation, and a loop: taken as given, never chased.
        ("es", sid(5), pub("de la traducción", translation_of=f"ar:{sid(2)}")),
        ("en", sid(6), pub("loop a", translation_of=f"ar:{sid(7)}")),
        ("ar", sid(7), pub("loop b", translation_of=f"en:{sid(6)}")),
        ("en", sid(8), pub("never translated")),
    ]
    views = set()
    # Each channel's own entries stay in stream order; the channels interleave every way.
    for order in itertools.permutations(range(len(entries))):
        per_channel = [[e for e in order if entries[e][0] == ch] for ch in ("en", "ar", "es")]
        if any(lst != sorted(lst) for lst in per_channel):
            continue
        hub = fold([entries[i] for i in order])
        views.add(repr(sorted(
            (ch, item_id, sorted(public(hub, ch, item_id)["versions"].items()),
             public(hub, ch, item_id)["story"])
            for ch, item_id, _ in entries)))
    assert len(views) == 1
    hub = fold(entries)
    x = {"ar": sid(2), "en": sid(1), "es": sid(3)}
    assert public(hub, "en", sid(1))["versions"] == x
    assert public(hub, "es", sid(4))["versions"] == x
    assert public(hub, "es", sid(5))["story"] == f"ar:{sid(2)}"
    assert public(hub, "es", sid(5))["versions"] == {"es": sid(5)}
    assert public(hub, "en", sid(6))["versions"] == {"en": sid(6)}
    assert public(hub, "ar", sid(7))["versions"] == {"ar": sid(7)}
    assert public(hub, "en", sid(8))["versions"] == {"en": sid(8)}


def test_links_to_the_same_or_an_unconfigured_edition_are_dead_lettered() -> None:
    hub = fold([("en", sid(1), pub("original"))])
    en = hub.channels["en"]
    cases = ((f"en:{sid(1)}", "same edition"), (f"fr:{sid(1)}", "not a configured"),
             ("en-1", "must name an item"), (f"en:{sid(1)}x", "must name an item"))
    for n, (bad, why) in enumerate(cases, start=10):
        (rejected,) = en.apply([(sid(n), pub("x", translation_of=bad))], NOW)
        assert why in rejected.error.message and rejected.error.field == "translation_of"
    assert list(en.state.items) == [sid(1)]
    # translation_of on any other op is not part of the contract: ignored.
    assert parse_entry(op("pin", sid(1), translation_of="en:1-0")).translation_of is None


def test_versions_outlive_corrections_holds_and_kills_and_are_sent_on_release() -> None:
    hub = fold([
        ("en", sid(1), pub("original")),
        ("ar", sid(2), pub("ترجمة", translation_of=f"en:{sid(1)}")),
        ("en", sid(3), op("correct", sid(1), text="original, corrected")),
        ("en", sid(4), op("hold", sid(1))),
    ])
    en_reader = FakeSub()
    hub.channels["en"].subscribe(en_reader, None, NOW)
    en_reader.take()
    fold([("es", sid(5), pub("traducción", translation_of=f"en:{sid(1)}"))], hub)
    assert events_of(en_reader) == []  # held: nothing of it is on air
    fold([("en", sid(6), op("release", sid(1)))], hub)
    (released,) = events_of(en_reader)
    assert released["item"]["versions"] == {"ar": sid(2), "en": sid(1), "es": sid(5)}
    assert released["item"]["version"] == 2
    fold([("ar", sid(7), op("kill", sid(2)))], hub)
    assert public(hub, "en", sid(1))["versions"]["ar"] == sid(2)  # the link stays
    assert [n for n, _ in versions_of(hub.channels, "en",
                                      hub.channels["en"].state.items[sid(1)])] == ["en", "es"]


def test_a_reader_resuming_from_before_a_link_gets_it_and_one_after_gets_it_again() -> None:
    hub = fold([("en", sid(1), pub("original")), ("en", sid(2), pub("other"))])
    fold([("ar", sid(3), pub("ترجمة", translation_of=f"en:{sid(1)}"))], hub)
    en = hub.channels["en"]
    for cursor, missed in ((sid(1), 2), (sid(2), 1)):
        sub = FakeSub()
        assert en.subscribe(sub, cursor, NOW)
        (msg,) = sub.take()
        assert msg["type"] == "events" and msg["missed"] == missed
        assert msg["events"][-1]["op"] == "versions"
        assert msg["events"][-1]["item"]["versions"] == {"ar": sid(3), "en": sid(1)}
        assert msg["cursor"] == sid(2)


def test_a_blocked_reader_gets_the_versions_event_it_missed_when_it_drains() -> None:
    hub = fold([("en", sid(1), pub("original"))])
    en = hub.channels["en"]
    sub = FakeSub()
    en.subscribe(sub, None, NOW)
    sub.take()
    en.block(sub, 1.0)
    fold([("ar", sid(2), pub("ترجمة", translation_of=f"en:{sid(1)}"))], hub)
    assert sub.take() == []
    en.unblock(sub, NOW)
    (msg,) = sub.take()
    assert msg["events"][-1]["op"] == "versions"


def test_forgotten_items_leave_the_index() -> None:
    hub = Hub([EN, AR], history_limit=2)  # keeps 2 * 2 items per channel
    fold([("en", sid(1), pub("original")),
          ("ar", sid(2), pub("ترجمة", translation_of=f"en:{sid(1)}"))], hub)
    fold([("ar", sid(10 + k), pub(f"filler {k}")) for k in range(4)], hub)
    assert sid(2) not in hub.channels["ar"].state.items
    assert public(hub, "en", sid(1))["versions"] == {"en": sid(1)}
    assert hub.stories.get(f"en:{sid(1)}") is not None  # the original still stands
    assert sorted(hub.stories.stories) == [f"ar:{sid(10 + k)}" for k in range(4)] + [
        f"en:{sid(1)}"]
    # The original leaves too: nothing of the story is kept.
    fold([("en", sid(20 + k), pub(f"filler {k}")) for k in range(4)], hub)
    assert hub.stories.get(f"en:{sid(1)}") is None


# -- what the edges refuse ---------------------------------------------------------------------

def test_the_edges_refuse_links_an_editor_cannot_have_meant() -> None:
    hub = fold([
        ("en", sid(1), pub("original")),
        ("ar", sid(2), pub("ترجمة", translation_of=f"en:{sid(1)}")),
        ("en", sid(3), pub("killed")),
        ("en", sid(4), op("kill", sid(3))),
    ])
    ch = hub.channels
    assert check_link(ch, "es", f" en:{sid(1)} ") == f"en:{sid(1)}"
    refusals = {
        f"en:{sid(9)}": "no item",
        f"en:{sid(3)}": "was killed",
        f"es:{sid(1)}": "itself",
        f"fr:{sid(1)}": "not an edition here",
        f"ar:{sid(2)}": f"is itself a version of en:{sid(1)}; link to en:{sid(1)}",
        "en:<script>": "must name an item",
    }
    for value, why in refusals.items():
        with pytest.raises(ValidationError) as caught:
            check_link(ch, "es", value)
        assert why in caught.value.message and caught.value.field == "translation_of"
    with pytest.raises(HTTPError) as conflict:
        check_link(ch, "ar", f"en:{sid(1)}")
    assert conflict.value.status == 409 and sid(2) in conflict.value.message


def test_a_correction_marks_the_other_versions_until_corrected_or_confirmed() -> None:
    hub = fold([
        ("en", sid(1), pub("original")),
        ("ar", sid(2), pub("ترجمة", translation_of=f"en:{sid(1)}")),
        ("es", sid(3), pub("traducción", translation_of=f"en:{sid(1)}")),
    ])
    items = {ch: hub.channels[ch].state.items[i]
             for ch, i in (("en", sid(1)), ("ar", sid(2)), ("es", sid(3)))}
    assert {ch: needs_update(hub.channels, it) for ch, it in items.items()} == dict.fromkeys(
        items)
    fold([("en", sid(4), op("correct", sid(1), text="original, corrected"))], hub)
    assert {ch: needs_update(hub.channels, it) for ch, it in items.items()} == {
        "en": None, "ar": "en", "es": "en"}
    ar_reader = FakeSub()
    hub.channels["ar"].subscribe(ar_reader, None, NOW)
    ar_reader.take()
    fold([("ar", sid(5), op("confirm", sid(2))),
          ("es", sid(6), op("correct", sid(3), text="traducción corregida"))], hub)
    assert events_of(ar_reader) == []  # a confirmation changes nothing readers see
    # es caught up with a correction of its own: that marks nobody.
    assert {ch: needs_update(hub.channels, it) for ch, it in items.items()} == dict.fromkeys(
        items)
    # A new correction, in a translation this time, marks the others (the original too).
    fold([("ar", sid(7), op("correct", sid(2), text="ترجمة مصححة"))], hub)
    assert {ch: needs_update(hub.channels, it) for ch, it in items.items()} == {
        "en": "ar", "ar": None, "es": "ar"}
    fold([("en", sid(8), op("confirm", sid(1)))], hub)
    assert needs_update(hub.channels, items["en"]) is None
