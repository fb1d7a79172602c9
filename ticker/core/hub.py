"""Subscribers per channel and the fan-out. No Redis, no HTTP, no asyncio.

The reader hands the hub each channel's entries of one Redis read; the hub folds them into
the channel state, encodes ONE frame for the whole batch, and writes the same bytes to every
subscriber with a plain `transport.write` (no await per connection). A subscriber whose
transport buffer passes its high-water mark is *blocked*: it gets no live frames until the
buffer drains, then it is sent exactly the events it has not had (or a reset snapshot), so
a slow reader costs bounded memory and never delays anyone else.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ticker.core.channels import Channel
from ticker.core.errors import ValidationError
from ticker.core.framing import PING_FRAME, SSE_HEARTBEAT, frame, sse_chunk
from ticker.core.items import Rejection, parse_entry, parse_stream_id
from ticker.core.messages import (
    event_json,
    events_body,
    events_payload,
    snapshot_body,
    status_payload,
    with_now,
)
from ticker.core.state import ChannelState
from ticker.core.stories import Stories

log = logging.getLogger("ticker.core.hub")

StreamKey = tuple[int, int]
# A place in a channel's resume history: the stream key, then 0 for the entry's own event or
# 1, 2, ... for `versions` events that happened after it (a translation linked in another
# edition moves no cursor of this one; a client resuming from the entry gets them again,
# which is harmless: they carry the item's whole state).
HistoryKey = tuple[int, int, int]
ZERO: StreamKey = (0, 0)
# Beyond this many missed events a resuming client gets a snapshot (with the count) instead:
# the snapshot is smaller and equal in effect.
RESUME_LIMIT = 500
# Upper bounds (seconds) of the publish-to-write latency buckets, which /metrics exposes as
# the `ticker_publish_to_write_seconds` histogram: between a millisecond and a few seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class Subscriber(Protocol):
    """What the hub needs of a connection (the websocket protocol object provides it)."""

    awaiting_pong: bool
    blocked_since: float
    sse: bool  # True: Server-Sent Events framing; False: websocket frames

    def write(self, data: bytes) -> None: ...

    def drop(self, code: int, reason: str) -> None: ...


@dataclass(slots=True)
class Counters:
    """Monotonic counters the metrics endpoint reads."""

    entries_read: int = 0
    events: int = 0
    frames: int = 0
    deliveries: int = 0
    rejected: int = 0
    duplicates: int = 0
    blocked: int = 0
    slow_dropped: int = 0
    resumes: int = 0
    resets: int = 0
    pings_missed: int = 0
    # Publish-to-write latency: observations per bucket (`latency_counts[i]`: at most
    # LATENCY_BUCKETS[i] and above the bucket before; the last: above every bound), and their
    # sum in seconds. Plain numbers, one list index per observation: ticker.node.metrics makes the
    # cumulative histogram of them when scraped.
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0


@dataclass(slots=True)
class ChannelHub:
    """One channel: its folded state, its resume history and its subscribers."""

    info: Channel
    state: ChannelState
    history_limit: int
    counters: Counters
    # conn -> its transport.write: the hot loop calls these and nothing else.
    writers: dict[Subscriber, Callable[[bytes], None]] = field(default_factory=dict)
    # The same for Server-Sent Events readers (same payload, SSE framing).
    sse_writers: dict[Subscriber, Callable[[bytes], None]] = field(default_factory=dict)
    # item id -> connections this node wrote it to, since the last flush (reach), but for
    # the new readers' snapshots counted in `_fresh_served` (the `reach` property adds them).
    _reach: Counter[str] = field(default_factory=Counter)
    # conn -> (the cursor it has everything up to, the status it was last told, the
    # history revision then), while its buffer is full.
    blocked: dict[Subscriber, tuple[str, bool, int]] = field(default_factory=dict)
    keys: list[HistoryKey] = field(default_factory=list)
    fragments: list[bytes] = field(default_factory=list)
    cursors: list[str] = field(default_factory=list)
    horizon: StreamKey = ZERO
    position: StreamKey = ZERO
    stale: bool = False  # Redis unreachable: readers are told, and told when it is back
    # The on-air snapshot body (no clock), valid until the first on-air item expires.
    _snapshot: tuple[bytes, int, tuple[str, ...]] | None = None
    # fresh_frame's: (the snapshot body it framed, digits of the clock, frame up to the
    # clock, the rest)
    _fresh: tuple[bytes, int, bytes, bytes] | None = None
    # New readers that got the snapshot framed in `_fresh` (its items' reach), not yet in
    # `_reach`, and the ids of its items: one count per reader instead of one per item.
    _fresh_served: int = 0
    _fresh_ids: tuple[str, ...] = ()
    # cursor -> resume body (no clock), until the next event.
    _resume_cache: dict[str, bytes] = field(default_factory=dict)
    # Entry-ID times (ms) of the events the last live `apply` wrote, until `observe`.
    written: list[int] = field(default_factory=list)
    # Every channel of the process by name (this one too): a translation published here
    # changes the `versions` of items in other editions.
    peers: dict[str, ChannelHub] = field(default_factory=dict)
    # `versions` events written since the last entry (the third part of their HistoryKey).
    relinks: int = 0
    # Bumped whenever history grows: a blocked reader whose cursor did not move may still
    # have missed a `versions` event.
    revision: int = 0

    # -- folding -----------------------------------------------------------------------

    def apply(
        self, entries: Iterable[tuple[str, Mapping[bytes, bytes]]], now: int,
        live: bool = True,
    ) -> list[Rejection]:
        """Fold entries (stream order) and fan the visible events out as one frame.

        `live=False` while a node folds its backlog at start: latency is not observed then.
        The caller reads the clock once the writes are done and passes it to `observe`.
        """
        fresh: list[bytes] = []
        published: list[str] = []
        stamps: list[int] = []
        rejected: list[Rejection] = []
        relinked: dict[str, set[str]] = {}
        c = self.counters
        for entry_id, fields in entries:
            c.entries_read += 1
            key = parse_stream_id(entry_id)
            if key is None or key <= self.position:
                continue  # not after what we have: a replay, never applied twice
            self.position = key
            try:
                event = self.state.apply(entry_id, parse_entry(fields))
                self._collect_relinked(entry_id, relinked)
            except Exception as exc:
                if not isinstance(exc, ValidationError):
                    # A validator bug must cost one entry, never the batch or the reader.
                    log.exception("entry %s could not be validated", entry_id)
                    exc = ValidationError(f"entry could not be validated ({type(exc).__name__})",
                                          field="entry")
                self.state.skip(entry_id)
                c.rejected += 1
                rejected.append(Rejection(self.info.name, entry_id, fields, exc))
                continue
            if event is None:
                c.duplicates += 1
                continue
            fragment = event_json(event)
            if event["op"] == "publish":
                published.append(entry_id)
            stamps.append(key[0])
            self.relinks = 0
            self.keys.append((*key, 0))
            self.cursors.append(entry_id)
            self.fragments.append(fragment)
            fresh.append(fragment)
        own = relinked.pop(self.info.name, None)
        if own:
            fresh.extend(self._versions_events(own))
        if fresh:
            c.events += len(fresh)
            self.revision += 1
            self._changed()
            self._trim()
            reached = self.broadcast(events_payload(self.state.cursor, now, fresh),
                                     self.state.cursor)
            for item_id in published:
                self.reach[item_id] += reached
            if live:
                self.written = stamps
        elif rejected or own:
            self._changed()
        for name, ids in relinked.items():
            self.peers[name].relink(ids, now)
        return rejected

    def _collect_relinked(self, entry_id: str, into: dict[str, set[str]]) -> None:
        """Note the items, in every edition, whose `versions` the entry just folded changed
        (not the entry's own item: its event already carries them)."""
        for story in self.state.take_relinked():
            for channel, ids in story.members.items():
                if channel in self.peers:
                    into.setdefault(channel, set()).update(ids)
        mine = into.get(self.info.name)
        if mine is not None:
            mine.discard(entry_id)

    def _versions_events(self, ids: Iterable[str]) -> list[bytes]:
        """`versions` events for the items `ids` of this channel whose versions changed,
        appended to the history (their cached forms are dropped either way)."""
        out: list[bytes] = []
        for item_id in sorted(ids, key=lambda i: parse_stream_id(i) or ZERO):
            item = self.state.items.get(item_id)
            if item is None:
                continue
            item.public_cache = None
            if item.held or item.killed:
                continue  # nothing of it is on air; a release sends the whole item
            fragment = event_json({"op": "versions", "item": item.public()})
            self.relinks += 1
            self.keys.append((*self.position, self.relinks))
            self.cursors.append(self.state.cursor)
            self.fragments.append(fragment)
            out.append(fragment)
        return out

    def relink(self, ids: Iterable[str], now: int) -> None:
        """Another edition linked or unlinked versions of these items: tell this channel's
        readers (a `versions` event each, no cursor of its own) and drop cached bodies."""
        fresh = self._versions_events(ids)
        self._changed()
        if fresh:
            self.counters.events += len(fresh)
            self.revision += 1
            self._trim()
            self.broadcast(events_payload(self.state.cursor, now, fresh), self.state.cursor)

    def observe(self, done: float) -> None:
        """Publish-to-write latency of what the last `apply` wrote, the writes having ended
        at `done` (epoch seconds): the hub reads no clock of its own."""
        c = self.counters
        for ms in self.written:
            seconds = max(0.0, done - ms / 1000)
            c.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            c.latency_sum += seconds
        self.written = []

    def history_after(self, key: HistoryKey) -> tuple[bool, list[tuple[HistoryKey, bytes]]]:
        """(whether history after `key` was trimmed away, the events after `key` still held):
        what a follower at `key` (the webhook and push fan-outs) has not had, in order."""
        start = bisect.bisect_right(self.keys, key)
        gap = start == 0 and bool(self.keys) and key < self.keys[0] and self.horizon > key[:2]
        return gap, list(zip(self.keys[start:], self.fragments[start:], strict=True))

    def _changed(self) -> None:
        self._snapshot = None
        self._resume_cache.clear()

    def _trim(self) -> None:
        excess = len(self.keys) - self.history_limit
        if excess > self.history_limit // 4:
            ms, seq, sub = self.keys[excess - 1]
            # A cursor at (ms, seq) resumes only if nothing after it was trimmed.
            self.horizon = (ms, seq + 1) if sub else (ms, seq)
            del self.keys[:excess], self.cursors[:excess], self.fragments[:excess]

    # -- fan-out -----------------------------------------------------------------------

    def broadcast(self, payload: bytes, cursor: str) -> int:
        """Write one frame to every live subscriber: encode once, no await. Returns how many."""
        n = 0
        if self.writers:
            data = frame(payload)
            writers = tuple(self.writers.values())  # a write may block (remove) its subscriber
            for write in writers:
                write(data)
            n = len(writers)
        if self.sse_writers:
            data = sse_chunk(payload, cursor)
            sse = tuple(self.sse_writers.values())
            for write in sse:
                write(data)
            n += len(sse)
        self.counters.frames += 1
        self.counters.deliveries += n
        return n

    def broadcast_message(self, payload: bytes) -> None:
        """A message that is not an event (status): no cursor, no reach."""
        if self.writers:
            data = frame(payload)
            for write in tuple(self.writers.values()):
                write(data)
        if self.sse_writers:
            data = sse_chunk(payload, None)
            for write in tuple(self.sse_writers.values()):
                write(data)

    def live(self, conn: Subscriber) -> dict[Subscriber, Callable[[bytes], None]]:
        return self.sse_writers if conn.sse else self.writers

    # -- subscribing -------------------------------------------------------------------

    def snapshot(self, now: int, reset: bool = False, missed: int | None = None) -> bytes:
        """The snapshot as a websocket frame (see `snapshot_payload`)."""
        return frame(self.snapshot_payload(now, reset, missed))

    def snapshot_payload(self, now: int, reset: bool = False, missed: int | None = None
                         ) -> bytes:
        """The snapshot message: what is on air at `now`, with the current clock."""
        return with_now(self._snapshot_body(now, reset, missed)[0], now)

    def _snapshot_body(self, now: int, reset: bool, missed: int | None
                       ) -> tuple[bytes, tuple[str, ...]]:
        """(body without clock, ids of the items in it); the plain one is cached."""
        plain = not reset and missed is None
        if plain and self._snapshot is not None and now < self._snapshot[1]:
            return self._snapshot[0], self._snapshot[2]
        live = self.state.on_air(now)
        ids = tuple(it.id for it in live)
        body = snapshot_body(self.info.info(), self.state.cursor,
                             [it.public() for it in live], reset, missed)
        if plain:
            # Valid until the first on-air item expires (a later one may then show).
            upcoming = [it.expires for it in self.state.items.values() if it.on_air(now)]
            self._snapshot = (body, min(upcoming, default=1 << 62), ids)
        return body, ids

    def catch_up(self, cursor: str | None, now: int) -> tuple[bytes, tuple[str, ...]] | None:
        """(message, ids of snapshot items) a client at `cursor` needs; None if it is ahead.

        The ids are empty unless the message is a snapshot (they count towards reach).
        """
        key = parse_stream_id(cursor) if cursor else None
        if key is None or key < self.horizon:
            if cursor is not None:
                self.counters.resets += 1
            body, ids = self._snapshot_body(now, cursor is not None, None)
            return with_now(body, now), ids
        if key > self.position:
            return None
        cached = self._resume_cache.get(cursor or "")
        if cached is not None:
            return with_now(cached, now), ()
        start = bisect.bisect_right(self.keys, (*key, 0))
        missed = len(self.keys) - start
        self.counters.resumes += 1
        if missed > RESUME_LIMIT:
            self.counters.resets += 1
            body, ids = self._snapshot_body(now, True, missed)
            return with_now(body, now), ids
        body = events_body(self.state.cursor, self.fragments[start:], missed)
        if len(self._resume_cache) < 64:
            self._resume_cache[cursor or ""] = body
        return with_now(body, now), ()

    def catch_up_frame(self, cursor: str | None, now: int) -> bytes | None:
        """`catch_up` as a websocket frame."""
        found = self.catch_up(cursor, now)
        return None if found is None else frame(found[0])

    def _send(self, conn: Subscriber, payload: bytes, preamble: bytes = b"") -> None:
        data = sse_chunk(payload, self.state.cursor) if conn.sse else frame(payload)
        conn.write(preamble + data if preamble else data)

    def _send_first(self, conn: Subscriber, payload: bytes, ids: tuple[str, ...], now: int,
                    told_stale: bool = False, preamble: bytes = b"") -> None:
        self._send(conn, payload, preamble)
        self._sent_first(conn, ids, now, told_stale)

    def _sent_first(self, conn: Subscriber, ids: tuple[str, ...], now: int,
                    told_stale: bool = False) -> None:
        """After a reader's first message: the items of its snapshot count towards reach,
        and it is told the live feed's state if that is not what it was told before."""
        for item_id in ids:
            self.reach[item_id] += 1
        if self.stale != told_stale:
            self._send(conn, status_payload(self.stale, now))

    @property
    def reach(self) -> Counter[str]:
        """item id -> connections this node wrote it to, since the last flush."""
        if self._fresh_served:
            served, self._fresh_served = self._fresh_served, 0
            for item_id in self._fresh_ids:
                self._reach[item_id] += served
        return self._reach

    @reach.setter
    def reach(self, counts: Counter[str]) -> None:
        self._fresh_served = 0
        self._reach = counts

    def fresh_frame(self, now: int) -> tuple[bytes, tuple[str, ...]]:
        """(the snapshot frame for a reader without a cursor, ids of its items): the cached
        snapshot framed once, with only the clock put in for each reader."""
        body, ids = self._snapshot_body(now, False, None)
        digits = str(now).encode()
        cached = self._fresh
        if cached is None or cached[0] is not body or cached[1] != len(digits):
            self.reach  # noqa: B018 -- the readers of the last one count towards its items
            payload = with_now(body, now)  # b'{"now":' digits b',' body[1:]
            whole = frame(payload)
            head = whole[:len(whole) - len(payload)]  # depends on the length alone
            cached = self._fresh = (body, len(digits), head + b'{"now":', b"," + body[1:])
            self._fresh_ids = ids
        return b"".join((cached[2], digits, cached[3])), ids

    def subscribe(self, conn: Subscriber, cursor: str | None, now: int,
                  preamble: bytes = b"") -> bool:
        """Send `conn` its first frame and add it to the live set. False: cursor is ahead.

        `preamble` (the handshake response) goes out in the same write as the first frame:
        one send() per new connection instead of two.
        """
        if cursor is None and not conn.sse:  # a new reader (most of a breaking-news wave)
            data, _ = self.fresh_frame(now)
            self.writers[conn] = conn.write
            conn.write(preamble + data)
            self._fresh_served += 1  # its items' reach (the `reach` property)
            if self.stale:
                self._send(conn, status_payload(True, now))
            return True
        found = self.catch_up(cursor, now)
        if found is None:
            return False
        self.live(conn)[conn] = conn.write
        self._send_first(conn, *found, now, preamble=preamble)
        return True

    def unsubscribe(self, conn: Subscriber) -> None:
        self.writers.pop(conn, None)
        self.sse_writers.pop(conn, None)
        self.blocked.pop(conn, None)

    def subscribers(self) -> int:
        return len(self.writers) + len(self.sse_writers) + len(self.blocked)

    def block(self, conn: Subscriber, at: float) -> None:
        """`conn`'s buffer is full: stop live frames; it has everything up to our cursor."""
        if self.live(conn).pop(conn, None) is not None:
            self.blocked[conn] = (self.state.cursor, self.stale, self.revision)
            conn.blocked_since = at
            self.counters.blocked += 1

    def unblock(self, conn: Subscriber, now: int) -> None:
        """`conn`'s buffer drained: send what it missed (events, status), then live frames."""
        held = self.blocked.pop(conn, None)
        if held is None:
            return
        cursor, told_stale, revision = held
        conn.blocked_since = 0.0
        self.live(conn)[conn] = conn.write
        if cursor == self.state.cursor and revision == self.revision:
            if self.stale != told_stale:
                self._send(conn, status_payload(self.stale, now))
            return
        found = self.catch_up(cursor, now)
        if found is not None:
            self._send_first(conn, *found, now, told_stale=told_stale)


class Hub:
    """All channels of this process. The reader feeds it; websocket protocols subscribe."""

    def __init__(
        self,
        channels: Iterable[Channel],
        *,
        max_items: int = 20,
        history_limit: int = 10000,
        slow_timeout: float = 30.0,
    ) -> None:
        self.counters = Counters()
        self.slow_timeout = slow_timeout
        self.stories = Stories()
        channels = tuple(channels)
        editions = frozenset(ch.name for ch in channels)
        self.channels: dict[str, ChannelHub] = {
            ch.name: ChannelHub(
                info=ch,
                state=ChannelState(ch.name, max_items=max_items, max_kept=2 * history_limit,
                                   stories=self.stories, editions=editions),
                history_limit=history_limit,
                counters=self.counters,
            )
            for ch in channels
        }
        for hub in self.channels.values():
            hub.peers = self.channels
        self.stale = False

    def channel(self, name: str) -> ChannelHub | None:
        return self.channels.get(name)

    def connections(self) -> int:
        return sum(ch.subscribers() for ch in self.channels.values())

    def set_stale(self, stale: bool, now: int) -> None:
        """Tell every reader whether the live feed is interrupted (Redis unreachable)."""
        if stale == self.stale:
            return
        self.stale = stale
        payload = status_payload(stale, now)
        for ch in self.channels.values():
            ch.stale = stale
            ch.broadcast_message(payload)

    def ping(self) -> None:
        """Ping every live subscriber; drop those that did not answer the previous ping."""
        for ch in self.channels.values():
            for conn in tuple(ch.writers):  # websockets only: SSE has no pings
                if conn.awaiting_pong:
                    self.counters.pings_missed += 1
                    conn.drop(1011, "keepalive ping timeout")
                else:
                    conn.awaiting_pong = True
                    conn.write(PING_FRAME)

    def heartbeat(self) -> None:
        """A comment line to every live SSE reader (TICKER_SSE_HEARTBEAT): one timer per
        process for all of them, as for pings."""
        for ch in self.channels.values():
            for write in tuple(ch.sse_writers.values()):
                write(SSE_HEARTBEAT)

    def sweep_slow(self, at: float) -> None:
        """Close subscribers blocked longer than `slow_timeout`; they resume by cursor."""
        for ch in self.channels.values():
            for conn in tuple(ch.blocked):
                if at - conn.blocked_since > self.slow_timeout:
                    ch.blocked.pop(conn, None)
                    self.counters.slow_dropped += 1
                    conn.drop(1013, "too slow: reconnect with your cursor")
