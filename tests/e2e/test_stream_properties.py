"""Property: whatever is XADDed raw, the reader survives, and only valid entries reach
subscribers, in order, exactly once (the real Reader against a real Redis)."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RedisServer
from ticker.core.errors import ValidationError
from ticker.core.hub import Hub
from ticker.core.items import parse_entry
from ticker.process.settings import parse_channels
from ticker.redis.connection import connect as redis_client
from ticker.redis.keys import Keys
from ticker.redis.reader import Reader

FIELD_NAMES = [b"op", b"item", b"text", b"source", b"urgency", b"link", b"tags", b"ttl",
               b"expires", b"by", b"idem", b"reason", b"junk"]

raw_entries = st.dictionaries(
    st.one_of(st.sampled_from(FIELD_NAMES), st.binary(min_size=1, max_size=12)),
    st.one_of(
        st.binary(max_size=40),
        st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.sampled_from([b"publish", b"kill", b"correct", b"flash", b"5", b"", b"0-1",
                         b"https://example.com/a", b"\xff\xfe", b"a\nb"]),
    ),
    min_size=1, max_size=6,
)
good_entries = st.builds(
    lambda text, urgency: {b"text": text.encode(), b"urgency": urgency},
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=1,
            max_size=40).filter(lambda t: t.strip() != ""),
    st.sampled_from([b"flash", b"urgent", b"breaking"]),
)


class Recorder:
    """A subscriber that keeps the exact bytes the hub would write to a socket."""

    sse = False
    awaiting_pong = False
    blocked_since = 0.0

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def drop(self, code: int, reason: str) -> None:
        raise AssertionError(f"dropped {code} {reason}")

    def messages(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        buf = bytes(self.data)
        i = 0
        while i < len(buf):
            n = buf[i + 1] & 0x7F
            j = i + 2
            if n == 126:
                (n,) = struct.unpack("!H", buf[j:j + 2])
                j += 2
            elif n == 127:
                (n,) = struct.unpack("!Q", buf[j:j + 8])
                j += 8
            out.append(json.loads(buf[j:j + n]))
            i = j + n
        return out


def is_valid(entry: dict[bytes, bytes]) -> bool:
    try:
        e = parse_entry(entry)
    except ValidationError:
        return False
    return e.op == "publish" and e.idem is None


async def run(url: str, entries: list[dict[bytes, bytes]]) -> tuple[list[str], list[str]]:
    """(stream ids of the entries, cursors of the events subscribers received)."""
    keys = Keys("p" + uuid.uuid4().hex[:10])
    redis = redis_client(url)
    try:
        hub = Hub(parse_channels("en"))
        reader = Reader(redis, hub, keys, count=7, block_ms=50)
        await reader.bootstrap()
        recorder = Recorder()
        assert hub.channels["en"].subscribe(recorder, None, 0)
        ids = [(await redis.xadd(keys.stream("en"), entry)).decode() for entry in entries]
        for _ in range(len(entries) + 3):
            await reader.read_once()
        got = [ev["cursor"] for m in recorder.messages() if m["type"] == "events"
               for ev in m["events"]]
        assert hub.channels["en"].state.cursor == ids[-1]  # the reader got past everything
        return ids, got
    finally:
        await redis.aclose()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.one_of(raw_entries, good_entries), min_size=1, max_size=15))
def test_raw_entries_never_crash_the_reader_and_only_valid_ones_arrive(
    redis_server: RedisServer, entries: list[dict[bytes, bytes]]
) -> None:
    # Ops on items are only valid when their item exists; raw entries here rarely name
    # one, so those are rejected (dead letters), which is exactly what we want to see.
    ids, got = asyncio.run(run(redis_server.url, entries))
    expected = [i for i, e in zip(ids, entries, strict=True) if is_valid(e)]
    # Every valid publish arrives, in order, exactly once.
    assert [c for c in got if c in expected] == expected
    assert got == sorted(set(got), key=ids.index)  # stream order, no duplicates
    # Anything else that arrived is a valid op on an earlier item (rare with raw fuzz);
    # an invalid entry never reaches a subscriber.
    for cursor in got:
        if cursor not in expected:
            entry = parse_entry(entries[ids.index(cursor)])
            assert entry.op != "publish" or entry.idem is not None
