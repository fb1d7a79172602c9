"""The delivery verifier: a reader's events, checked against the stream itself.

Folds the whole stream exactly as a node does (`ChannelState` over `parse_entry`) to get the
events a reader must see, in order. Each reader's received cursors must be exactly the
events after its first snapshot: no gap, no duplicate, no reordering. The only exception is
an explicit reset (a snapshot after the first), after which the reader must again see
exactly the events after that snapshot's cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from ticker.core.errors import ValidationError
from ticker.core.items import parse_entry, parse_stream_id
from ticker.core.state import ChannelState


async def visible_events(redis: Redis, key: str) -> list[str]:
    """Cursors of every event readers are sent, oldest first (the fold of the stream)."""
    state = ChannelState("verify", max_kept=1 << 30)
    rows: Any = await redis.xrange(key, "-", "+")
    events: list[str] = []
    for raw_id, fields in rows:
        entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        try:
            event = state.apply(entry_id, parse_entry(fields))
        except ValidationError:
            state.skip(entry_id)
            continue
        if event is not None:
            events.append(entry_id)
    return events


@dataclass
class Record:
    """What one reader saw: segments of event cursors, each starting at a snapshot."""

    segments: list[tuple[str, list[str]]] = field(default_factory=list)

    def take(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "snapshot":
            self.segments.append((msg["cursor"], []))
        elif msg.get("type") == "events":
            assert self.segments, "events before any snapshot"
            self.segments[-1][1].extend(e["cursor"] for e in msg["events"])

    @property
    def resets(self) -> int:
        return max(0, len(self.segments) - 1)


def key_of(cursor: str) -> tuple[int, int]:
    parsed = parse_stream_id(cursor)
    assert parsed is not None, cursor
    return parsed


def verify(record: Record, events: Sequence[str], *, until: str | None = None,
           allow_resets: bool = True) -> None:
    """Raise AssertionError naming the first gap, duplicate or reordering.

    `until`: the last stream ID the reader can have been sent (default: all of it).
    """
    assert record.segments, "the reader never got a snapshot"
    if not allow_resets:
        assert record.resets == 0, f"{record.resets} reset snapshots"
    limit = key_of(until) if until else None
    for n, (start, got) in enumerate(record.segments):
        assert len(got) == len(set(got)), f"segment {n}: duplicate events"
        after = [c for c in events if key_of(c) > key_of(start)
                 and (limit is None or key_of(c) <= limit)]
        last = n == len(record.segments) - 1
        # A segment that ended with a reset may stop early; it must still be a prefix.
        want = after if last else after[:len(got)]
        if got != want:
            i = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                     min(len(got), len(want)))
            raise AssertionError(
                f"segment {n} (from {start}): got {len(got)} events, expected {len(want)}; "
                f"first difference at {i}: got {got[i:i + 3]}, expected {want[i:i + 3]}")
