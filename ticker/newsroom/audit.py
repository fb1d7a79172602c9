"""The audit trail: who did what, when, to which item, with the text before and after.

Two kinds of audit stream, read together newest first:

- `{prefix}:audit:{channel}`, beside each channel's stream: every desk write to a channel's
  stream (publish, correct, hold, release, pin, unpin, extend, kill, approve, a scheduled
  publish) is appended by `Journal.append`, in ONE Lua script with the stream entry it
  explains, so the trail never misses an entry that went on air nor mentions one that did
  not, and it names that entry (`entry`). Both keys share the channel's hash slot, so this
  also works on a Redis Cluster.
- `{prefix}:audit`: everything else (sign-in and out, users and tokens, scheduling,
  submitting, rejecting and cancelling held-back items; `channel` lists the channels).

"When" is the entry's stream ID (the Redis clock, like the items' own times). Fields (only
`user` and `action` always present): `user`, `action`, `channel`, `item`, `before`, `after`,
`reason`, `detail`, `entry`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

from ticker.core.items import parse_stream_id
from ticker.redis.keys import Keys
from ticker.redis.store import Replication

AUDIT_MAXLEN: Final = 1_000_000  # per stream; ~300 bytes each: years of desk work
FIELDS: Final = ("user", "action", "channel", "item", "before", "after", "reason", "detail",
                 "entry")
SCAN_PAGE: Final = 200
SCAN_LIMIT: Final = 20_000  # a filtered query reads at most this many entries per page

# KEYS: the channel's stream, the channel's audit stream (one hash slot).
# ARGV: stream maxlen, audit maxlen, item-is-entry ('1': the audit `item` is the new entry's
#       id), n stream fields, fields..., audit fields...
APPEND: Final = """
local nf = tonumber(ARGV[4])
local fields = {}
for i = 1, nf * 2 do fields[i] = ARGV[4 + i] end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(fields))
local audit = {'entry', id}
if ARGV[3] == '1' then
  audit[3] = 'item'
  audit[4] = id
end
for i = 5 + nf * 2, #ARGV do audit[#audit + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(audit))
return id
"""


def clip(value: str | None, limit: int = 500) -> str:
    return "" if value is None else value[:limit]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit entry as read back; `at` is epoch ms from its stream ID."""

    id: str
    at: int
    user: str
    action: str
    channel: str
    item: str
    before: str
    after: str
    reason: str
    detail: str
    entry: str

    def public(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("id", "at", *FIELDS)}

    def concerns(self, channel: str) -> bool:
        return channel in self.channel.split(",")


def _entry(entry_id: bytes | str, raw: dict[bytes, bytes]) -> AuditEntry:
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    values = {f: raw.get(f.encode(), b"").decode("utf-8", "replace") for f in FIELDS}
    parsed = parse_stream_id(eid)
    return AuditEntry(id=eid, at=parsed[0] if parsed else 0, **values)


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Entries newest first; `older` is the `before` cursor of the next page, if any."""

    entries: list[AuditEntry]
    older: str | None


def parse_cursor(value: str) -> tuple[tuple[int, int], int] | None:
    """`<stream id>.<stream number>` (what `AuditPage.older` gives) -> ((ms, seq), number)."""
    head, _, tail = value.partition(".")
    key = parse_stream_id(head)
    if key is None or (tail and not tail.isdigit()) or len(tail) > 4:
        return None
    return key, int(tail or 0)


class Journal:
    """Writes a channel's stream entry and its audit entry together (see the module doc)."""

    def __init__(self, redis: Redis, keys: Keys, stream_maxlen: int, *,
                 replication: Replication) -> None:
        self.redis = redis
        self.keys = keys
        self.stream_maxlen = stream_maxlen
        self.replication = replication
        self._append = redis.register_script(APPEND)

    async def append(self, channel: str, fields: dict[str, str], audit: dict[str, str | None],
                     *, item_is_entry: bool) -> str:
        """XADD `fields` to the channel's stream and `audit` (+ `channel`, `entry`, and for a
        publish `item`) to its audit stream, atomically; returns the entry's id."""
        flat_fields = [x for kv in fields.items() for x in kv]
        flat_audit = [x for k, v in {**audit, "channel": channel}.items() if v
                      for x in (k, clip(v))]
        keys = [self.keys.stream(channel), self.keys.channel_audit(channel)]
        args = [self.stream_maxlen, AUDIT_MAXLEN, "1" if item_is_entry else "0",
                len(flat_fields) // 2, *flat_fields, *flat_audit]
        if self.replication.replicas:
            pipe = self.redis.pipeline(transaction=False)
            await self._append(keys=keys, args=args, client=pipe)
            self.replication.wait(pipe)
            result, answer = await pipe.execute()
            self.replication.counted(answer, f"a desk write to {channel}")
        else:
            result = await self._append(keys=keys, args=args)
        return result.decode() if isinstance(result, bytes) else str(result)


class _Source:
    """One audit stream read backwards in pages, for the newest-first merge."""

    def __init__(self, redis: Redis, key: str, number: int) -> None:
        self.redis = redis
        self.key = key
        self.number = number
        self.buffer: list[AuditEntry] = []
        self.done = False
        self.max = "+"

    def start_before(self, cursor: tuple[tuple[int, int], int] | None) -> None:
        if cursor is None:
            return
        (ms, seq), number = cursor
        # Streams after the cursor's in merge order may still hold its very id.
        self.max = f"{ms}-{seq}" if self.number > number else f"({ms}-{seq}"

    async def head(self) -> AuditEntry | None:
        if not self.buffer and not self.done:
            rows: Any = await self.redis.xrevrange(self.key, max=self.max, min="-",
                                                   count=SCAN_PAGE)
            self.buffer = [_entry(i, raw) for i, raw in rows]
            self.buffer.reverse()  # pop() from the end gives newest first
            if len(rows) < SCAN_PAGE:
                self.done = True
            if self.buffer:
                self.max = f"({self.buffer[0].id}"
        return self.buffer[-1] if self.buffer else None


class Audit:
    """Reading the audit streams, and writing the non-channel one."""

    def __init__(self, redis: Redis, keys: Keys, channels: Sequence[str]) -> None:
        self.redis = redis
        self.keys = keys
        self.channels = tuple(channels)

    async def add(self, user: str, action: str, **fields: str | None) -> str:
        """Append one entry to `{prefix}:audit` (actions that write no channel stream)."""
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown audit fields {sorted(unknown)}")
        values = {"user": user, "action": action,
                  **{k: clip(v) for k, v in fields.items() if v}}
        entry_id = await self.redis.xadd(self.keys.audit, values,  # type: ignore[arg-type]
                                         maxlen=AUDIT_MAXLEN, approximate=True)
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def query(self, *, user: str | None = None, channel: str | None = None,
                    before: str | None = None, limit: int = 100) -> AuditPage:
        """Newest first, optionally only `user`'s and/or `channel`'s, older than `before`
        (a cursor from a previous page's `older`)."""
        sources = [_Source(self.redis, self.keys.audit, 0)] + [
            _Source(self.redis, self.keys.channel_audit(name), n)
            for n, name in enumerate(self.channels, start=1)
            if channel is None or name == channel
        ]
        cursor = parse_cursor(before) if before else None
        for source in sources:
            source.start_before(cursor)
        found: list[AuditEntry] = []
        scanned = 0
        last: tuple[str, int] | None = None
        while len(found) < limit and scanned < SCAN_LIMIT:
            best: tuple[tuple[int, int], int, _Source] | None = None
            for source in sources:
                entry = await source.head()
                if entry is None:
                    continue
                key = (parse_stream_id(entry.id) or (0, 0), -source.number)
                if best is None or key > best[:2]:
                    best = (key[0], key[1], source)
            if best is None:
                last = None
                break
            source = best[2]
            entry = source.buffer.pop()
            scanned += 1
            last = (entry.id, source.number)
            if user is not None and entry.user != user:
                continue
            # A channel's own audit stream concerns it by construction; the desk-wide one
            # names the channels in each entry.
            if channel is not None and source.number == 0 and not entry.concerns(channel):
                continue
            found.append(entry)
        more = last is not None and any(s.buffer or not s.done for s in sources)
        return AuditPage(found, f"{last[0]}.{last[1]}" if more and last else None)
