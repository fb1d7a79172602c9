"""Wire messages and websocket framing (docs/protocol.md): `ticker.core.messages`."""

from __future__ import annotations

import json
import struct

import pytest

from ticker.core.framing import OP_PING, OP_TEXT, PING_FRAME, frame
from ticker.core.messages import dumps, event_json, events_payload, snapshot_payload


@pytest.mark.parametrize(
    ("n", "header"),
    [
        (0, b"\x81\x00"),
        (1, b"\x81\x01"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (127, b"\x81\x7e\x00\x7f"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (70000, b"\x81\x7f" + struct.pack("!Q", 70000)),
    ],
)
def test_frame_header(n: int, header: bytes) -> None:
    payload = bytes(i % 251 for i in range(n))
    data = frame(payload)
    assert data[: len(header)] == header
    assert data[len(header) :] == payload
    assert len(data) == len(header) + n


def test_frame_is_final_unmasked_text_by_default() -> None:
    data = frame(b"hi")
    assert data[0] & 0x80  # FIN
    assert data[0] & 0x70 == 0  # no RSV bits: no extension
    assert data[0] & 0x0F == OP_TEXT
    assert data[1] & 0x80 == 0  # server frames are not masked


def test_ping_frame() -> None:
    assert OP_PING == 0x9
    assert PING_FRAME == b"\x89\x00"
    assert frame(b"x", OP_PING) == b"\x89\x01x"


def test_dumps_is_compact_utf8() -> None:
    assert dumps({"a": [1, "é", None, True]}) == '{"a":[1,"é",null,true]}'.encode()
    assert dumps("عاجل") == '"عاجل"'.encode()
    assert dumps("\u2028") == '"\u2028"'.encode()  # valid JSON: U+2028 needs no escape


def test_event_json() -> None:
    event = {"op": "kill", "cursor": "5-0", "id": "4-0"}
    assert event_json(event) == b'{"op":"kill","cursor":"5-0","id":"4-0"}'


def test_events_payload_without_missed() -> None:
    fragments = [
        event_json({"op": "kill", "cursor": "5-0", "id": "4-0"}),
        event_json({"op": "hold", "cursor": "6-0", "id": "3-0"}),
    ]
    payload = events_payload("6-0", 1732662001004, fragments)
    msg = json.loads(payload)
    assert msg == {
        "type": "events",
        "cursor": "6-0",
        "now": 1732662001004,
        "events": [
            {"op": "kill", "cursor": "5-0", "id": "4-0"},
            {"op": "hold", "cursor": "6-0", "id": "3-0"},
        ],
    }
    assert "missed" not in msg


@pytest.mark.parametrize("missed", [0, 1, 5, 500])
def test_events_payload_with_missed(missed: int) -> None:
    payload = events_payload("7-1", 42, [b'{"op":"kill","cursor":"7-1","id":"1-0"}'], missed)
    msg = json.loads(payload)
    assert msg["missed"] == missed
    assert msg["type"] == "events" and msg["cursor"] == "7-1" and msg["now"] == 42
    assert msg["events"] == [{"op": "kill", "cursor": "7-1", "id": "1-0"}]


def test_events_payload_empty() -> None:
    assert json.loads(events_payload("1-0", 1, [], 0)) == {
        "type": "events",
        "cursor": "1-0",
        "now": 1,
        "missed": 0,
        "events": [],
    }
    assert json.loads(events_payload("1-0", 1, iter([]))) == {
        "type": "events",
        "cursor": "1-0",
        "now": 1,
        "events": [],
    }


def test_events_payload_keeps_non_ascii_items() -> None:
    item = {"id": "1-0", "text": "عاجل: \u200fخبر", "tags": ["ar"]}
    payload = events_payload(
        "1-0", 1, [event_json({"op": "publish", "cursor": "1-0", "item": item})]
    )
    assert json.loads(payload.decode("utf-8"))["events"][0]["item"] == item


CHANNEL = {"name": "ar", "lang": "ar", "dir": "rtl", "title": "عاجل"}


def test_snapshot_payload() -> None:
    items = [{"id": "2-0", "text": "b"}, {"id": "1-0", "text": "a"}]
    payload = snapshot_payload(CHANNEL, "2-0", 1732662000123, items, False)
    msg = json.loads(payload)
    assert msg == {
        "type": "snapshot",
        "channel": "ar",
        "channel_info": CHANNEL,
        "cursor": "2-0",
        "now": 1732662000123,
        "reset": False,
        "missed": None,
        "items": items,
    }


def test_snapshot_payload_reset_and_empty() -> None:
    msg = json.loads(snapshot_payload(CHANNEL, "0-0", 5, (), True))
    assert msg["reset"] is True
    assert msg["items"] == []
    assert msg["missed"] is None
    assert b'"missed":null' in snapshot_payload(CHANNEL, "0-0", 5, (), True)


def test_frames_decode_back_to_the_payload() -> None:
    payload = events_payload("1-0", 1, [b'{"op":"kill","cursor":"1-0","id":"0-1"}'] * 3000)
    data = frame(payload)
    assert data[1] == 127
    (n,) = struct.unpack("!Q", data[2:10])
    assert n == len(payload)
    assert json.loads(data[10:])["events"][2999]["id"] == "0-1"
