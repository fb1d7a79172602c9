"""The fan-out: ChannelHub and Hub with fake subscribers. No Redis, no sockets, no asyncio."""

from __future__ import annotations

import json
import struct
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

from ticker.core.channels import Channel
from ticker.core.framing import OP_PING, OP_TEXT, PING_FRAME, SSE_HEARTBEAT, chunk, unchunk
from ticker.core.hub import RESUME_LIMIT, ZERO, ChannelHub, Hub
from ticker.core.items import Rejection, parse_stream_id
from ticker.core.state import Rejected

EN = Channel(name="en", lang="en", dir="ltr", title="Breaking")
AR = Channel(name="ar", lang="ar", dir="rtl", title="عاجل")
T0 = 1_732_662_000_000
NOW = T0 + 100_000
HOUR = 3_600_000

Raw = Mapping[bytes, bytes]


def decode_frame(data: bytes) -> tuple[int, bytes]:
    """One complete, final, unmasked server frame -> (opcode, payload). Nothing may trail."""
    assert len(data) >= 2
    b0, b1 = data[0], data[1]
    assert b0 & 0x80, "FIN must be set: frames are never fragmented"
    assert b0 & 0x70 == 0, "no RSV bits: no extension is negotiated"
    assert b1 & 0x80 == 0, "server frames are unmasked"
    n, pos = b1 & 0x7F, 2
    if n == 126:
        (n,) = struct.unpack("!H", data[2:4])
        assert n >= 126, "minimal length encoding"
        pos = 4
    elif n == 127:
        (n,) = struct.unpack("!Q", data[2:10])
        assert n >= 1 << 16, "minimal length encoding"
        pos = 10
    assert len(data) == pos + n, "exactly one frame per write"
    return b0 & 0x0F, data[pos:]


def decode_sse(data: bytes) -> tuple[str | None, bytes]:
    """One chunk of the chunked body carrying one complete Server-Sent Event -> (id, data).
    Nothing may trail."""
    size, _, rest = data.partition(b"\r\n")
    assert rest.endswith(b"\r\n") and int(size, 16) == len(rest) - 2, "exactly one chunk"
    data = rest[:-2]
    assert data.endswith(b"\n\n")
    event_id: str | None = None
    payload: bytes | None = None
    for line in data[:-2].split(b"\n"):
        name, _, value = line.partition(b": ")
        if name == b"id":
            event_id = value.decode("ascii")
        else:
            assert name == b"data" and payload is None, line
            payload = value
    assert payload is not None
    return event_id, payload


class FakeSub:
    """A subscriber that records what the hub writes and how it is dropped."""

    def __init__(self, name: str = "sub", sse: bool = False) -> None:
        self.name = name
        self.sse = sse
        self.frames: list[bytes] = []
        self.dropped: list[tuple[int, str]] = []
        self.awaiting_pong = False
        self.blocked_since = 0.0

    def __repr__(self) -> str:
        return f"FakeSub({self.name})"

    def write(self, data: bytes) -> None:
        self.frames.append(bytes(data))

    def drop(self, code: int, reason: str) -> None:
        self.dropped.append((code, reason))

    def messages(self) -> list[dict[str, Any]]:
        out = []
        for data in self.frames:
            if self.sse:
                _, payload = decode_sse(data)
            else:
                opcode, payload = decode_frame(data)
                assert opcode == OP_TEXT
            out.append(json.loads(payload.decode("utf-8")))
        return out

    def sse_ids(self) -> list[str | None]:
        return [decode_sse(data)[0] for data in self.frames]

    def take(self) -> list[dict[str, Any]]:
        """The messages received since the last take()."""
        msgs = self.messages()
        self.frames.clear()
        return msgs


class SelfBlockingSub(FakeSub):
    """Its buffer 'fills' after `capacity` frames: it blocks itself from inside write()."""

    def __init__(self, hub: ChannelHub, capacity: int) -> None:
        super().__init__("self-blocking")
        self.hub = hub
        self.capacity = capacity

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.frames) >= self.capacity:
            self.hub.block(self, 1.0)


def sid(k: int, seq: int = 0) -> str:
    return f"{T0 + k}-{seq}"


def raw(**fields: str) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


def pub(text: str = "news", **fields: str) -> dict[bytes, bytes]:
    return raw(text=text, **fields)


def act(op: str, item: str, **fields: str) -> dict[bytes, bytes]:
    return raw(op=op, item=item, **fields)


def make_hub(
    *, history_limit: int = 10_000, max_items: int = 20, slow_timeout: float = 30.0
) -> tuple[Hub, ChannelHub]:
    hub = Hub([EN, AR], max_items=max_items, history_limit=history_limit, slow_timeout=slow_timeout)
    ch = hub.channel("en")
    assert ch is not None
    return hub, ch


@pytest.fixture
def ch() -> ChannelHub:
    return make_hub()[1]


def subscribed(
    ch: ChannelHub,
    cursor: str | None = None,
    now: int = NOW,
    name: str = "sub",
    sse: bool = False,
) -> FakeSub:
    sub = FakeSub(name, sse)
    assert ch.subscribe(sub, cursor, now)
    sub.frames.clear()
    return sub


def publish_many(ch: ChannelHub, start: int, count: int, now: int = NOW) -> list[str]:
    """`count` publishes, each its own batch; returns their ids."""
    out = []
    for k in range(start, start + count):
        assert ch.apply([(sid(k), pub(f"item {k}"))], now) == []
        out.append(sid(k))
    return out


def event_ids(msg: dict[str, Any]) -> list[str]:
    return [e["cursor"] for e in msg["events"]]


# -- apply and broadcast ------------------------------------------------------------------


def test_one_frame_per_batch_with_all_events_in_order(ch: ChannelHub) -> None:
    a, b = subscribed(ch, name="a"), subscribed(ch, name="b")
    rejected = ch.apply(
        [
            (sid(1), pub("first", urgency="flash")),
            (sid(2), pub("second")),
            (sid(3), act("kill", sid(1))),
            (sid(4), act("pin", sid(2))),
        ],
        NOW,
    )
    assert rejected == []
    assert len(a.frames) == 1 and len(b.frames) == 1
    (msg,) = a.messages()
    assert set(msg) == {"type", "cursor", "now", "events"}  # no "missed" on live frames
    assert msg["type"] == "events"
    assert msg["cursor"] == sid(4)
    assert msg["now"] == NOW
    assert [e["op"] for e in msg["events"]] == ["publish", "publish", "kill", "pin"]
    assert event_ids(msg) == [sid(1), sid(2), sid(3), sid(4)]
    assert msg["events"][0]["item"]["text"] == "first"
    assert msg["events"][0]["item"]["urgency"] == "flash"
    assert msg["events"][2] == {"op": "kill", "cursor": sid(3), "id": sid(1)}
    assert msg["events"][3]["item"]["pinned"] is True


def test_every_subscriber_gets_identical_bytes(ch: ChannelHub) -> None:
    subs = [subscribed(ch, name=str(i)) for i in range(5)]
    ch.apply([(sid(1), pub("عاجل: خبر")), (sid(2), pub("b"))], NOW)
    ch.apply([(sid(3), act("hold", sid(1)))], NOW + 1)
    first = subs[0].frames
    assert len(first) == 2
    for sub in subs[1:]:
        assert sub.frames == first
    assert ch.counters.frames == 2
    assert ch.counters.deliveries == 10
    assert ch.counters.events == 3
    assert ch.counters.entries_read == 3


def test_each_batch_is_one_frame(ch: ChannelHub) -> None:
    sub = subscribed(ch)
    ch.apply([(sid(1), pub("a"))], NOW)
    ch.apply([(sid(2), pub("b")), (sid(3), pub("c"))], NOW)
    msgs = sub.take()
    assert [event_ids(m) for m in msgs] == [[sid(1)], [sid(2), sid(3)]]
    assert [m["cursor"] for m in msgs] == [sid(1), sid(3)]


def test_channels_are_independent() -> None:
    hub, en = make_hub()
    ar = hub.channel("ar")
    assert ar is not None
    s_en, s_ar = subscribed(en), subscribed(ar)
    en.apply([(sid(1), pub("en"))], NOW)
    assert len(s_en.frames) == 1 and s_ar.frames == []
    assert ar.state.cursor == "0-0"
    assert hub.channel("nope") is None


def test_invalid_entries_are_rejections_and_do_not_stop_the_batch(ch: ChannelHub) -> None:
    sub = subscribed(ch)
    bad_text = pub("line one\nline two")
    bad_utf8 = {b"text": b"caf\xe9"}
    rejected = ch.apply(
        [
            (sid(1), bad_text),
            (sid(2), pub("good one")),
            (sid(3), act("kill", sid(99))),
            (sid(4), bad_utf8),
            (sid(5), pub("good two")),
            (sid(6), raw(op="explode")),
        ],
        NOW,
    )
    assert all(isinstance(r, Rejection) for r in rejected)
    assert [(r.channel, r.entry_id, r.error.field) for r in rejected] == [
        ("en", sid(1), "text"),
        ("en", sid(3), "item"),
        ("en", sid(4), "text"),
        ("en", sid(6), "op"),
    ]
    assert rejected[0].fields is bad_text
    assert rejected[2].fields is bad_utf8
    assert isinstance(rejected[1].error, Rejected)
    assert ch.counters.rejected == 4
    (msg,) = sub.take()
    assert event_ids(msg) == [sid(2), sid(5)]
    assert [e["item"]["text"] for e in msg["events"]] == ["good one", "good two"]
    assert ch.state.cursor == sid(6)
    assert list(ch.state.items) == [sid(2), sid(5)]


def test_entry_that_trips_a_validator_bug_is_still_a_rejection(ch: ChannelHub) -> None:
    # "²".isdigit() is True but int("²") raises ValueError: the hub must still reject the
    # entry and deliver the rest of the batch (a raised ValueError loses both).
    sub = subscribed(ch)
    rejected = ch.apply(
        [(sid(1), pub("a")), (sid(2), pub("b", expires="\u00b2")), (sid(3), pub("c"))], NOW
    )
    assert [(r.entry_id, r.error.field) for r in rejected] == [(sid(2), "expires")]
    (msg,) = sub.take()
    assert event_ids(msg) == [sid(1), sid(3)]


def test_a_batch_of_only_rejections_sends_nothing(ch: ChannelHub) -> None:
    sub = subscribed(ch)
    ch.apply([(sid(1), pub("a"))], NOW)
    sub.frames.clear()
    rejected = ch.apply([(sid(2), pub("")), (sid(3), act("kill", "1-0"))], NOW)
    assert len(rejected) == 2
    assert sub.frames == []
    assert ch.state.cursor == sid(3)
    # A client at the rejected entry is current: nothing to catch up.
    late = FakeSub("late")
    assert ch.subscribe(late, sid(3), NOW)
    (msg,) = late.messages()
    assert msg["type"] == "events" and msg["missed"] == 0 and msg["events"] == []


def test_resuming_from_a_frame_cursor_misses_nothing(ch: ChannelHub) -> None:
    sub = subscribed(ch)
    ch.apply([(sid(1), pub("a")), (sid(2), pub(""))], NOW)  # the batch ends with a rejection
    (msg,) = sub.take()
    again = FakeSub()
    assert ch.subscribe(again, msg["cursor"], NOW)
    (resumed,) = again.messages()
    assert resumed["type"] == "events"
    assert resumed["missed"] == 0 and resumed["events"] == []


def test_replayed_entries_are_ignored(ch: ChannelHub) -> None:
    sub = subscribed(ch)
    batch = [(sid(1), pub("a")), (sid(2), pub("b")), (sid(3), act("kill", sid(1)))]
    ch.apply(batch, NOW)
    sub.frames.clear()
    events = ch.counters.events
    assert ch.apply(batch, NOW) == []  # the whole batch again (e.g. a re-read after a reconnect)
    assert sub.frames == []
    assert ch.counters.events == events
    assert ch.state.cursor == sid(3)
    # Older ids mixed with new ones: only the new ones apply, once.
    ch.apply([(sid(2), pub("b again")), (sid(1), pub("x")), (sid(4), pub("d"))], NOW)
    (msg,) = sub.take()
    assert event_ids(msg) == [sid(4)]
    assert ch.state.items[sid(2)].text == "b"
    # Same id twice in one batch, and an id that is not a stream ID at all.
    ch.apply([(sid(5), pub("e")), (sid(5), pub("e twice")), ("garbage", pub("g"))], NOW)
    (msg,) = sub.take()
    assert event_ids(msg) == [sid(5)]
    assert ch.state.items[sid(5)].text == "e"
    assert ch.position == parse_stream_id(sid(5))


def test_a_replayed_rejected_entry_is_not_rejected_twice(ch: ChannelHub) -> None:
    assert len(ch.apply([(sid(1), pub(""))], NOW)) == 1
    assert ch.apply([(sid(1), pub(""))], NOW) == []
    assert ch.counters.rejected == 1


def test_duplicate_idempotent_publish_sends_nothing(ch: ChannelHub) -> None:
    sub = subscribed(ch)
    ch.apply([(sid(1), pub("a", idem="k"))], NOW)
    sub.frames.clear()
    assert ch.apply([(sid(2), pub("a", idem="k"))], NOW) == []
    assert sub.frames == []
    assert ch.counters.duplicates == 1
    assert list(ch.state.items) == [sid(1)]


# -- subscribe: snapshot and resume -------------------------------------------------------


def test_subscribe_without_cursor_gets_a_snapshot(ch: ChannelHub) -> None:
    ch.apply(
        [
            (sid(1), pub("old")),
            (sid(2), pub("new")),
            (sid(3), pub("pinned")),
            (sid(4), act("pin", sid(3))),
            (sid(5), pub("held")),
            (sid(6), act("hold", sid(5))),
        ],
        NOW,
    )
    sub = FakeSub()
    assert ch.subscribe(sub, None, NOW + 5)
    (msg,) = sub.messages()
    assert msg["type"] == "snapshot"
    assert msg["channel"] == "en"
    assert msg["channel_info"] == {"name": "en", "lang": "en", "dir": "ltr", "title": "Breaking"}
    assert msg["cursor"] == sid(6)
    assert msg["now"] == NOW + 5
    assert msg["reset"] is False
    assert msg["missed"] is None
    assert [it["id"] for it in msg["items"]] == [sid(3), sid(2), sid(1)]
    assert msg["items"][0] == ch.state.items[sid(3)].public()
    # And it is live from now on.
    ch.apply([(sid(7), pub("live"))], NOW + 6)
    assert event_ids(sub.messages()[1]) == [sid(7)]


def test_snapshot_of_an_empty_channel(ch: ChannelHub) -> None:
    sub = FakeSub()
    assert ch.subscribe(sub, None, NOW)
    (msg,) = sub.messages()
    assert msg["type"] == "snapshot" and msg["items"] == [] and msg["cursor"] == "0-0"
    assert msg["reset"] is False


def test_rtl_channel_info_in_snapshot() -> None:
    hub, _ = make_hub()
    ar = hub.channel("ar")
    assert ar is not None
    sub = FakeSub()
    assert ar.subscribe(sub, None, NOW)
    (msg,) = sub.messages()
    assert msg["channel"] == "ar"
    assert msg["channel_info"] == {"name": "ar", "lang": "ar", "dir": "rtl", "title": "عاجل"}


def test_snapshot_respects_max_items() -> None:
    _, ch = make_hub(max_items=3)
    publish_many(ch, 1, 6)
    sub = FakeSub()
    ch.subscribe(sub, None, NOW)
    (msg,) = sub.messages()
    assert [it["id"] for it in msg["items"]] == [sid(6), sid(5), sid(4)]


def test_subscribe_with_the_current_cursor(ch: ChannelHub) -> None:
    publish_many(ch, 1, 3)
    sub = FakeSub()
    assert ch.subscribe(sub, sid(3), NOW + 9)
    (msg,) = sub.messages()
    assert msg == {"type": "events", "cursor": sid(3), "now": NOW + 9, "missed": 0, "events": []}


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4, 5])
def test_subscribe_with_an_older_cursor_gets_exactly_the_missed_events(
    ch: ChannelHub, k: int
) -> None:
    live = subscribed(ch, name="live")
    ch.apply([(sid(1), pub("a")), (sid(2), pub("b"))], NOW)
    ch.apply([(sid(3), act("correct", sid(1), text="a2"))], NOW)
    ch.apply([(sid(4), act("kill", sid(2))), (sid(5), pub("e"))], NOW)
    all_events = [e for m in live.messages() for e in m["events"]]
    cursor = sid(5 - k) if k < 5 else "0-0"
    sub = FakeSub()
    assert ch.subscribe(sub, cursor, NOW + 1)
    (msg,) = sub.messages()
    assert msg["type"] == "events"
    assert msg["missed"] == k == len(msg["events"])
    assert msg["cursor"] == sid(5)
    assert msg["now"] == NOW + 1
    # Byte-for-byte the same events as the live subscriber saw, in the same order.
    assert msg["events"] == all_events[len(all_events) - k :]


def test_resume_from_a_cursor_between_events(ch: ChannelHub) -> None:
    ch.apply([(sid(1), pub("a")), (sid(2), pub("")), (sid(3), pub("c", idem="k"))], NOW)
    ch.apply([(sid(4), pub("c", idem="k")), (sid(5), pub("e"))], NOW)
    for cursor, expected in [
        (sid(2), [sid(3), sid(5)]),
        (sid(4), [sid(5)]),
        (f"{T0 + 4}-9", [sid(5)]),
        (f"{T0 + 1}-1", [sid(3), sid(5)]),
    ]:
        sub = FakeSub()
        assert ch.subscribe(sub, cursor, NOW)
        (msg,) = sub.messages()
        assert event_ids(msg) == expected, cursor
        assert msg["missed"] == len(expected)


def test_resume_then_live(ch: ChannelHub) -> None:
    publish_many(ch, 1, 3)
    sub = FakeSub()
    ch.subscribe(sub, sid(1), NOW)
    ch.apply([(sid(4), pub("d"))], NOW)
    first, second = sub.messages()
    assert first["missed"] == 2 and event_ids(first) == [sid(2), sid(3)]
    assert "missed" not in second and event_ids(second) == [sid(4)]


def test_resume_frames_are_shared_but_correct_after_changes(ch: ChannelHub) -> None:
    publish_many(ch, 1, 3)
    a, b = FakeSub("a"), FakeSub("b")
    ch.subscribe(a, sid(1), NOW)
    ch.subscribe(b, sid(1), NOW)
    assert a.frames == b.frames
    publish_many(ch, 4, 1)
    c = FakeSub("c")
    ch.subscribe(c, sid(1), NOW)
    (msg,) = c.messages()
    assert event_ids(msg) == [sid(2), sid(3), sid(4)] and msg["missed"] == 3
    ch.apply([(sid(5), pub(""))], NOW)  # rejected: the cursor moves on
    d = FakeSub("d")
    ch.subscribe(d, sid(1), NOW)
    (msg,) = d.messages()
    assert event_ids(msg) == [sid(2), sid(3), sid(4)] and msg["cursor"] == sid(5)


@pytest.mark.parametrize(
    "cursor", ["", "abc", "1-", "-0", "1-0-0", "1.5-0", "0x1-0", " 1-0", "1-0\n"]
)
def test_malformed_cursor_gets_a_reset_snapshot(ch: ChannelHub, cursor: str) -> None:
    publish_many(ch, 1, 2)
    sub = FakeSub()
    assert ch.subscribe(sub, cursor, NOW)
    (msg,) = sub.messages()
    assert msg["type"] == "snapshot"
    assert msg["reset"] is True
    assert [it["id"] for it in msg["items"]] == [sid(2), sid(1)]


def test_cursor_ahead_is_refused(ch: ChannelHub) -> None:
    publish_many(ch, 1, 2)
    for cursor in (sid(3), f"{T0 + 2}-1", "99999999999999-0"):
        sub = FakeSub()
        assert ch.subscribe(sub, cursor, NOW) is False
        assert sub.frames == []
        assert sub not in ch.writers
    # Nothing leaked: a later batch reaches no one.
    ch.apply([(sid(3), pub("c"))], NOW)
    assert ch.counters.deliveries == 0


def test_cursor_ahead_of_an_empty_channel_is_refused(ch: ChannelHub) -> None:
    assert ch.subscribe(FakeSub(), "1-0", NOW) is False
    sub = FakeSub()
    assert ch.subscribe(sub, "0-0", NOW)
    assert sub.messages()[0]["missed"] == 0


def test_more_than_resume_limit_missed_gets_a_snapshot_with_the_count(ch: ChannelHub) -> None:
    ch.apply([(sid(0), pub("start"))], NOW)
    n = RESUME_LIMIT + 1
    ch.apply([(sid(k), pub(f"item {k}")) for k in range(1, n + 1)], NOW)
    sub = FakeSub()
    assert ch.subscribe(sub, sid(0), NOW)
    (msg,) = sub.messages()
    assert msg["type"] == "snapshot"
    assert msg["reset"] is True
    assert msg["missed"] == n
    assert msg["cursor"] == sid(n)
    assert len(msg["items"]) == 20
    assert msg["items"][0]["id"] == sid(n)


def test_exactly_resume_limit_missed_gets_events(ch: ChannelHub) -> None:
    ch.apply([(sid(0), pub("start"))], NOW)
    ch.apply([(sid(k), pub(f"item {k}")) for k in range(1, RESUME_LIMIT + 1)], NOW)
    sub = FakeSub()
    ch.subscribe(sub, sid(0), NOW)
    (msg,) = sub.messages()
    assert msg["type"] == "events"
    assert msg["missed"] == RESUME_LIMIT == len(msg["events"])


# -- history and horizon ------------------------------------------------------------------


def test_history_trimming_moves_the_horizon() -> None:
    _, ch = make_hub(history_limit=8)
    ids = publish_many(ch, 1, 10)
    assert ch.horizon == ZERO  # up to limit + limit // 4 kept
    assert ch.keys == [(*(parse_stream_id(i) or ZERO), 0) for i in ids]
    ids += publish_many(ch, 11, 1)
    assert ch.horizon == parse_stream_id(ids[2])
    assert len(ch.keys) == len(ch.cursors) == len(ch.fragments) == 8
    assert ch.cursors == ids[3:]
    # At the horizon: everything after it is still there.
    sub = FakeSub()
    ch.subscribe(sub, ids[2], NOW)
    (msg,) = sub.messages()
    assert msg["type"] == "events" and msg["missed"] == 8 and event_ids(msg) == ids[3:]
    # Below it: a reset snapshot, with what is on air.
    for cursor in (ids[1], ids[0], "0-0"):
        sub = FakeSub()
        ch.subscribe(sub, cursor, NOW)
        (msg,) = sub.messages()
        assert msg["type"] == "snapshot" and msg["reset"] is True, cursor
        assert len(msg["items"]) == 11


def test_horizon_set_by_the_reader_forces_reset() -> None:
    _, ch = make_hub()
    publish_many(ch, 5, 3)
    ch.horizon = parse_stream_id(sid(5)) or ZERO  # the stream was trimmed up to sid(5)
    sub = FakeSub()
    ch.subscribe(sub, sid(4), NOW)
    assert sub.messages()[0]["reset"] is True
    sub = FakeSub()
    ch.subscribe(sub, sid(5), NOW)
    assert sub.messages()[0]["missed"] == 2


# -- slow subscribers ---------------------------------------------------------------------


def test_block_stops_live_frames_and_unblock_sends_exactly_what_was_missed(
    ch: ChannelHub,
) -> None:
    publish_many(ch, 1, 1)
    slow, fast = subscribed(ch, name="slow"), subscribed(ch, name="fast")
    ch.block(slow, 12.5)
    assert slow.blocked_since == 12.5
    assert ch.blocked[slow][0] == sid(1)
    assert slow not in ch.writers
    assert ch.counters.blocked == 1
    ch.apply([(sid(2), pub("b")), (sid(3), pub("c"))], NOW)
    ch.apply([(sid(4), act("kill", sid(2)))], NOW)
    assert slow.frames == []
    assert len(fast.frames) == 2
    ch.unblock(slow, NOW + 7)
    assert slow.blocked_since == 0.0
    assert slow not in ch.blocked and slow in ch.writers
    (msg,) = slow.take()
    assert msg["type"] == "events"
    assert msg["missed"] == 3 == len(msg["events"])
    assert event_ids(msg) == [sid(2), sid(3), sid(4)]
    assert msg["events"] == [e for m in fast.take() for e in m["events"]]
    # Live again, with the same bytes as everyone else.
    ch.apply([(sid(5), pub("e"))], NOW)
    assert slow.frames == fast.frames and len(slow.frames) == 1


def test_unblock_with_nothing_missed_sends_nothing(ch: ChannelHub) -> None:
    publish_many(ch, 1, 1)
    sub = subscribed(ch)
    ch.block(sub, 1.0)
    ch.unblock(sub, NOW)
    assert sub.frames == []
    ch.apply([(sid(2), pub("b"))], NOW)
    assert event_ids(sub.take()[0]) == [sid(2)]


def test_unblock_after_the_horizon_passed_gets_a_reset_snapshot() -> None:
    _, ch = make_hub(history_limit=4)
    publish_many(ch, 1, 1)
    sub = subscribed(ch)
    ch.block(sub, 1.0)
    publish_many(ch, 2, 10)
    assert ch.horizon > parse_stream_id(sid(1))  # type: ignore[operator]
    ch.unblock(sub, NOW)
    (msg,) = sub.take()
    assert msg["type"] == "snapshot" and msg["reset"] is True
    assert msg["cursor"] == sid(11)


def test_a_subscriber_can_block_itself_during_a_broadcast(ch: ChannelHub) -> None:
    slow = SelfBlockingSub(ch, capacity=2)
    assert ch.subscribe(slow, None, NOW)  # frame 1: the snapshot
    other = subscribed(ch, name="other")
    ch.apply([(sid(1), pub("a"))], NOW)  # frame 2: fills it up
    ch.apply([(sid(2), pub("b"))], NOW)
    ch.apply([(sid(3), pub("c"))], NOW)
    assert len(slow.frames) == 2
    assert len(other.frames) == 3
    assert ch.blocked[slow][0] == sid(1)
    slow.capacity = 100
    ch.unblock(slow, NOW)
    msg = slow.messages()[-1]
    assert msg["missed"] == 2 and event_ids(msg) == [sid(2), sid(3)]


def test_block_and_unblock_of_strangers_are_no_ops(ch: ChannelHub) -> None:
    stranger = FakeSub()
    ch.block(stranger, 5.0)
    assert stranger not in ch.blocked and stranger.blocked_since == 0.0
    ch.unblock(stranger, NOW)
    assert stranger.frames == [] and stranger not in ch.writers
    assert ch.counters.blocked == 0


def test_unsubscribe(ch: ChannelHub) -> None:
    a, b = subscribed(ch, name="a"), subscribed(ch, name="b")
    ch.block(b, 1.0)
    ch.unsubscribe(a)
    ch.unsubscribe(b)
    ch.unsubscribe(FakeSub())
    assert ch.writers == {} and ch.blocked == {}
    ch.apply([(sid(1), pub("a"))], NOW)
    assert a.frames == [] and b.frames == []


# -- snapshot cache -----------------------------------------------------------------------


def test_snapshot_cache_is_invalidated_by_changes(ch: ChannelHub) -> None:
    publish_many(ch, 1, 1)
    first = ch.snapshot(NOW)
    assert ch.snapshot(NOW) == first
    ch.apply([(sid(2), pub("b"))], NOW)
    _, payload = decode_frame(ch.snapshot(NOW))
    msg = json.loads(payload)
    assert [it["id"] for it in msg["items"]] == [sid(2), sid(1)]
    assert msg["cursor"] == sid(2)
    ch.apply([(sid(3), act("correct", sid(1), text="fixed"))], NOW)
    msg = json.loads(decode_frame(ch.snapshot(NOW))[1])
    assert msg["items"][1]["text"] == "fixed" and msg["items"][1]["version"] == 2
    ch.apply([(sid(4), act("kill", sid(2)))], NOW)
    msg = json.loads(decode_frame(ch.snapshot(NOW))[1])
    assert [it["id"] for it in msg["items"]] == [sid(1)]


def test_snapshot_cache_is_invalidated_by_expiry(ch: ChannelHub) -> None:
    ch.apply([(sid(0), pub("short", ttl="60")), (sid(1), pub("long"))], NOW)
    expires = T0 + 60_000
    sub = FakeSub()
    ch.subscribe(sub, None, expires - 1)
    assert [it["id"] for it in sub.messages()[0]["items"]] == [sid(1), sid(0)]
    for now in (expires, expires + 1):
        sub = FakeSub()
        ch.subscribe(sub, None, now)
        assert [it["id"] for it in sub.messages()[0]["items"]] == [sid(1)], now
    payload = json.loads(ch.snapshot_payload(expires))
    assert [it["id"] for it in payload["items"]] == [sid(1)]
    # The last one expires too.
    msg = json.loads(ch.snapshot_payload(T0 + 1 + 3 * HOUR))
    assert msg["items"] == []


def test_expiry_of_a_hidden_item_lets_the_next_one_show() -> None:
    _, ch = make_hub(max_items=1)
    ch.apply([(sid(0), pub("older")), (sid(1), pub("newer", ttl="60"))], NOW)
    assert [it["id"] for it in json.loads(ch.snapshot_payload(T0 + 10))["items"]] == [sid(1)]
    later = T0 + 1 + 60_000
    assert [it["id"] for it in json.loads(ch.snapshot_payload(later))["items"]] == [sid(0)]


def test_snapshot_payload_with_missed(ch: ChannelHub) -> None:
    publish_many(ch, 1, 1)
    msg = json.loads(ch.snapshot_payload(NOW, reset=True, missed=7))
    assert msg["missed"] == 7 and msg["reset"] is True
    # and the cached plain snapshot is unaffected
    plain = json.loads(ch.snapshot_payload(NOW))
    assert plain["missed"] is None and plain["reset"] is False


def test_snapshot_now_is_the_current_time(ch: ChannelHub) -> None:
    # docs/protocol.md: `now` is the server's clock; clients compute expiry against it. A
    # cached snapshot must not carry the time it was first built (here: a minute earlier).
    publish_many(ch, 1, 1)
    first = FakeSub("first")
    ch.subscribe(first, None, NOW)
    later = FakeSub("later")
    ch.subscribe(later, None, NOW + 60_000)
    assert abs(later.messages()[0]["now"] - (NOW + 60_000)) <= 1000
    assert abs(json.loads(ch.snapshot_payload(NOW + 120_000))["now"] - (NOW + 120_000)) <= 1000


def test_a_new_readers_snapshot_is_the_framed_message_with_its_clock(ch: ChannelHub) -> None:
    # fresh_frame frames the cached body once and puts each reader's clock in: the bytes
    # must be the library's frame of the whole message, whatever the clock's width and
    # the body's size (the 7-bit, 16-bit and 64-bit lengths of RFC 6455 5.2).
    for count in (0, 1, 3, 20, 300):
        publish_many(ch, 1000 * count + 1, count)
        for now in (NOW, NOW + 1, 99, 123_456_789_012_345, NOW + 2):
            assert ch.fresh_frame(now) == (ch.snapshot(now), ch._snapshot_body(now, False, None)[1])
    big = make_hub(max_items=300)[1]
    for k in range(300):
        big.apply([(sid(k), pub("x" * 200))], NOW)
    data, ids = big.fresh_frame(NOW)
    assert len(ids) == 300 and len(data) > 65536 and data == big.snapshot(NOW)
    sub = FakeSub()
    assert big.subscribe(sub, None, NOW, preamble=b"HTTP/1.1 101 ...\r\n\r\n")
    assert sub.frames == [b"HTTP/1.1 101 ...\r\n\r\n" + data]
    assert all(big.reach[i] == 1 for i in ids)


def test_resume_frame_now_is_the_current_time(ch: ChannelHub) -> None:
    publish_many(ch, 1, 3)
    first = FakeSub("first")
    ch.subscribe(first, sid(1), NOW)
    later = FakeSub("later")
    ch.subscribe(later, sid(1), NOW + 60_000)
    msg = later.messages()[0]
    assert msg["missed"] == 2
    assert abs(msg["now"] - (NOW + 60_000)) <= 1000


# -- Hub: keepalive, slow sweep, status ---------------------------------------------------


def test_ping_drops_subscribers_that_did_not_answer() -> None:
    hub, en = make_hub()
    ar = hub.channel("ar")
    assert ar is not None
    good, quiet, other = subscribed(en, name="good"), subscribed(en, name="quiet"), subscribed(ar)
    hub.ping()
    for sub in (good, quiet, other):
        assert sub.frames == [PING_FRAME]
        assert decode_frame(sub.frames[0]) == (OP_PING, b"")
        assert sub.awaiting_pong is True
        sub.frames.clear()
    good.awaiting_pong = False  # a pong came back
    other.awaiting_pong = False
    hub.ping()
    assert good.frames == [PING_FRAME] and good.dropped == []
    assert other.frames == [PING_FRAME] and other.dropped == []
    assert quiet.frames == []
    assert quiet.dropped == [(1011, "keepalive ping timeout")]
    assert hub.counters.pings_missed == 1


def test_ping_skips_blocked_subscribers() -> None:
    hub, en = make_hub()
    sub = subscribed(en)
    en.block(sub, 1.0)
    hub.ping()
    assert sub.frames == [] and sub.awaiting_pong is False


def test_sweep_slow_drops_subscribers_blocked_too_long() -> None:
    hub, en = make_hub(slow_timeout=30.0)
    stuck, brief, live = subscribed(en, name="stuck"), subscribed(en, name="brief"), subscribed(en)
    en.block(stuck, 100.0)
    en.block(brief, 120.0)
    hub.sweep_slow(130.0)  # exactly the timeout: not yet
    assert stuck.dropped == [] and brief.dropped == []
    hub.sweep_slow(130.5)
    assert stuck.dropped == [(1013, "too slow: reconnect with your cursor")]
    assert stuck not in en.blocked
    assert brief.dropped == [] and brief in en.blocked
    assert live.dropped == [] and live in en.writers
    assert hub.counters.slow_dropped == 1
    hub.sweep_slow(1000.0)
    assert len(stuck.dropped) == 1  # dropped once
    assert brief.dropped == [(1013, "too slow: reconnect with your cursor")]


def test_connections_counts_live_and_blocked() -> None:
    hub, en = make_hub()
    ar = hub.channel("ar")
    assert ar is not None
    a, _ = subscribed(en), subscribed(en)
    subscribed(ar)
    en.block(a, 1.0)
    assert hub.connections() == 3


def test_set_stale_tells_every_live_subscriber_once() -> None:
    hub, en = make_hub()
    ar = hub.channel("ar")
    assert ar is not None
    a, b = subscribed(en), subscribed(ar)
    hub.set_stale(True, NOW)
    hub.set_stale(True, NOW + 1)
    assert a.frames == b.frames
    assert a.take() == [{"type": "status", "stale": True, "now": NOW}]
    hub.set_stale(False, NOW + 2)
    assert a.take() == [{"type": "status", "stale": False, "now": NOW + 2}]
    assert hub.stale is False


def test_a_blocked_subscriber_learns_the_status_it_missed() -> None:
    # docs/protocol.md: `status` goes to every connected reader. One that was blocked when the
    # feed went stale must still end up knowing it (on unblock at the latest).
    hub, en = make_hub()
    publish_many(en, 1, 1)
    sub = subscribed(en)
    en.block(sub, 1.0)
    hub.set_stale(True, NOW)
    en.unblock(sub, NOW + 1)
    statuses = [m for m in sub.messages() if m["type"] == "status"]
    assert statuses and statuses[-1]["stale"] is True


# -- Server-Sent Events subscribers -------------------------------------------------------


def test_sse_subscribers_get_the_same_payload_with_the_cursor_as_id(ch: ChannelHub) -> None:
    ws = subscribed(ch)
    sse1 = subscribed(ch, name="s1", sse=True)
    sse2 = subscribed(ch, name="s2", sse=True)
    ch.apply([(sid(1), pub("a")), (sid(2), pub("b"))], NOW)
    assert sse1.frames == sse2.frames and len(sse1.frames) == 1
    assert sse1.sse_ids() == [sid(2)]
    assert sse1.messages() == ws.messages()
    assert decode_sse(sse1.frames[0])[1] == decode_frame(ws.frames[0])[1]
    assert ch.counters.deliveries == 3 and ch.counters.frames == 1


def test_sse_first_message_and_resume(ch: ChannelHub) -> None:
    publish_many(ch, 1, 3)
    fresh = FakeSub("fresh", sse=True)
    assert ch.subscribe(fresh, None, NOW)
    (msg,) = fresh.messages()
    assert msg["type"] == "snapshot" and fresh.sse_ids() == [sid(3)]
    resumed = FakeSub("resumed", sse=True)
    assert ch.subscribe(resumed, sid(1), NOW)
    (msg,) = resumed.messages()
    assert msg["missed"] == 2 and event_ids(msg) == [sid(2), sid(3)]
    assert resumed.sse_ids() == [sid(3)]


def test_sse_block_unblock_and_no_pings() -> None:
    hub, en = make_hub()
    publish_many(en, 1, 1)
    sub = subscribed(en, sse=True)
    hub.ping()
    assert sub.frames == [] and sub.awaiting_pong is False
    en.block(sub, 1.0)
    assert sub not in en.sse_writers and en.blocked[sub][0] == sid(1)
    publish_many(en, 2, 2)
    assert sub.frames == []
    en.unblock(sub, NOW)
    (msg,) = sub.take()
    assert msg["missed"] == 2 and event_ids(msg) == [sid(2), sid(3)]
    assert sub in en.sse_writers
    assert hub.connections() == 1
    en.unsubscribe(sub)
    assert hub.connections() == 0


def test_sse_status_has_no_id() -> None:
    hub, en = make_hub()
    sub = subscribed(en, sse=True)
    hub.set_stale(True, NOW)
    assert sub.frames == [chunk(b'data: {"type":"status","stale":true,"now":%d}\n\n' % NOW)]


# -- reach and latency --------------------------------------------------------------------


def test_reach_counts_connections_written_to(ch: ChannelHub) -> None:
    for name, sse in (("a", False), ("b", False), ("c", True)):
        subscribed(ch, name=name, sse=sse)
    ch.apply([(sid(1), pub("a")), (sid(2), pub("b"))], NOW)
    ch.apply([(sid(3), act("pin", sid(1)))], NOW)  # not a publish: no new reach
    assert ch.reach == {sid(1): 3, sid(2): 3}
    late = FakeSub("late")
    ch.subscribe(late, None, NOW)  # the snapshot shows it both items
    assert ch.reach == {sid(1): 4, sid(2): 4}


def test_new_readers_count_towards_the_items_of_the_snapshot_they_got(ch: ChannelHub) -> None:
    # New readers are counted once each and added to their snapshot's items when reach is
    # read or the snapshot changes: the counts are those of one increment per item.
    publish_many(ch, 1, 2)
    for n in range(3):
        ch.subscribe(FakeSub(f"r{n}"), None, NOW)
    ch.apply([(sid(3), pub("c"))], NOW)  # the three get it live; the snapshot changes
    for n in range(2):
        ch.subscribe(FakeSub(f"s{n}"), None, NOW)
    assert dict(ch.reach) == {sid(1): 5, sid(2): 5, sid(3): 5}
    ch.subscribe(FakeSub("t"), None, NOW)
    ch.reach = Counter()  # taken by a flush (ticker.redis.reach)
    ch.subscribe(FakeSub("u"), None, NOW)
    assert dict(ch.reach) == {sid(1): 1, sid(2): 1, sid(3): 1}


def test_latency_is_observed_per_event(ch: ChannelHub) -> None:
    subscribed(ch)
    before = sum(ch.counters.latency_counts)
    ch.apply([(sid(1), pub("a")), (sid(2), pub("b")), (sid(3), pub(""))], NOW)
    assert sum(ch.counters.latency_counts) == before  # observed when the caller says so
    ch.observe(NOW / 1000 + 0.2)
    assert sum(ch.counters.latency_counts) == before + 2
    assert ch.counters.latency_sum >= 0.2 * 2
    ch.observe(NOW / 1000 + 0.3)  # nothing written since: nothing more observed
    assert sum(ch.counters.latency_counts) == before + 2


def test_reach_counts_reset_snapshots_too(ch: ChannelHub) -> None:
    # Reach is "connections written to": a reader that got a reset snapshot was shown the
    # items just like one that got a plain snapshot.
    publish_many(ch, 1, 2)  # nobody connected yet
    assert dict(+ch.reach) == {}
    ch.subscribe(FakeSub("fresh"), None, NOW)
    ch.subscribe(FakeSub("reset"), "garbage", NOW)
    assert dict(+ch.reach) == {sid(1): 2, sid(2): 2}


def test_the_heartbeat_goes_to_every_live_sse_reader_and_to_no_websocket() -> None:
    hub, en = make_hub()
    sse, ws = subscribed(en, sse=True), subscribed(en, name="ws")
    blocked = subscribed(en, sse=True, name="blocked")
    en.block(blocked, 1.0)
    hub.heartbeat()
    assert sse.frames == [SSE_HEARTBEAT] and ws.frames == [] and blocked.frames == []
    assert unchunk(SSE_HEARTBEAT) == b": keepalive\n\n"  # a comment: no event dispatched
    assert chunk(b"x" * 300).startswith(b"12c\r\n") and unchunk(chunk(b"abc")) == b"abc"
