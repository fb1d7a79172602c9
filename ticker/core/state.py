"""ChannelState: folds a channel's stream, in order, into what is on air. Pure.

Every node folds the same entries into the same state: nothing here reads a clock. Times
come from the entries' stream IDs (the milliseconds Redis stamped them with); only
`on_air(now)` takes the present, and only to hide what has expired.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ticker.core.errors import ValidationError
from ticker.core.items import DEFAULT_TTL, Entry, parse_stream_id, split_story
from ticker.core.stories import Stories, Story, story_key

IDEM_WINDOW_MS = 24 * 3600 * 1000


class Rejected(ValidationError):
    """A well-formed entry that cannot apply to the state (e.g. it names an unknown item)."""

    code = "rejected"


@dataclass(slots=True)
class Item:
    """One item's current state. `id` is the stream ID of its publish entry; `story` the
    story it is a version of (its own `channel:id` for an original, docs/editions.md)."""

    id: str
    ts: int
    text: str
    source: str | None
    urgency: str
    link: str | None
    tags: tuple[str, ...]
    expires: int
    by: str | None
    version: int = 1
    corrected: bool = False
    pinned: bool = False
    held: bool = False
    killed: bool = False
    killed_at: int | None = None
    updated: int = 0
    story: str = ""
    story_ref: Story | None = field(default=None, repr=False)
    # Its corrections and confirmations ("no change needed"), (time, op), in stream order:
    # what `ticker.core.editions.needs_update` weighs against the other versions'.
    revisions: list[tuple[int, str]] = field(default_factory=list)
    public_cache: dict[str, Any] | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        """The item as readers see it (docs/protocol.md, ITEM). Never includes `by`."""
        if self.public_cache is None:
            self.public_cache = {
                "id": self.id,
                "text": self.text,
                "source": self.source,
                "urgency": self.urgency,
                "link": self.link,
                "tags": list(self.tags),
                "ts": self.ts,
                "expires": self.expires,
                "version": self.version,
                "corrected": self.corrected,
                "pinned": self.pinned,
                "story": self.story,
                "versions": dict(self.story_ref.versions()) if self.story_ref else {},
            }
        return self.public_cache

    def changed(self, at: int) -> None:
        self.public_cache = None
        self.updated = at

    def on_air(self, now: int) -> bool:
        return not self.held and not self.killed and self.expires > now


def stream_ms(entry_id: str) -> int:
    parsed = parse_stream_id(entry_id)
    if parsed is None:
        raise ValueError(f"not a stream ID: {entry_id!r}")
    return parsed[0]


@dataclass(slots=True)
class ChannelState:
    """The folded state of one channel. `cursor` is the ID of the last entry applied."""

    name: str
    max_items: int = 20
    max_kept: int = 20000
    cursor: str = "0-0"
    items: OrderedDict[str, Item] = field(default_factory=OrderedDict)
    idem: OrderedDict[str, tuple[int, str]] = field(default_factory=OrderedDict)
    # The cross-edition index, shared by every channel of the process (one of its own when
    # the state is folded alone), and the configured editions (None: any).
    stories: Stories = field(default_factory=Stories)
    editions: frozenset[str] | None = None
    # Stories whose `versions` changed since the owner last looked (`take_relinked`).
    relinked: list[Story] = field(default_factory=list)

    def apply(self, entry_id: str, entry: Entry) -> dict[str, Any] | None:
        """Apply one validated entry; return the wire event readers need, or None.

        None means the entry changed nothing a reader can see (a duplicate idempotent
        publish, or an op on an item that is held). Raises `Rejected` for an op the state
        cannot take (unknown or killed item); the cursor advances either way.
        """
        at = stream_ms(entry_id)
        self.cursor = entry_id
        if entry.op == "publish":
            return self._publish(entry_id, at, entry)
        assert entry.item is not None  # parse_entry guarantees it for targeted ops
        item = self.items.get(entry.item)
        if item is None:
            raise Rejected(f"{entry.op}: no item {entry.item} in this channel", field="item")
        if item.killed:
            raise Rejected(f"{entry.op}: item {entry.item} was killed", field="item")
        was_visible = not item.held
        op = entry.op
        if op == "kill":
            item.killed = True
            item.killed_at = at
            item.changed(at)
            return {"op": op, "cursor": entry_id, "id": item.id} if was_visible else None
        if op == "confirm":
            # The desk's "no change needed" after another version's correction: nothing a
            # reader sees changes.
            item.revisions.append((at, op))
            item.updated = at
            return None
        if op == "hold":
            if item.held:
                return None
            item.held = True
            item.changed(at)
            return {"op": op, "cursor": entry_id, "id": item.id}
        if op == "release":
            if not item.held:
                return None
            item.held = False
        elif op == "correct":
            assert entry.text is not None
            item.text = entry.text
            item.version += 1
            item.corrected = True
            item.revisions.append((at, op))
            if entry.source is not None:
                item.source = entry.source
            if entry.link is not None:
                item.link = entry.link
            if entry.urgency is not None:
                item.urgency = entry.urgency
            if entry.tags is not None:
                item.tags = entry.tags
        elif op in ("pin", "unpin"):
            item.pinned = op == "pin"
        elif op == "extend":
            item.expires = entry.expires if entry.expires is not None else (
                at + (entry.ttl or 0) * 1000
            )
        item.changed(at)
        if item.held:
            return None
        return {"op": op, "cursor": entry_id, "item": item.public()}

    def _publish(self, entry_id: str, at: int, entry: Entry) -> dict[str, Any] | None:
        if entry.idem is not None:
            self._forget_idem(at)
            if entry.idem in self.idem:
                return None
            self.idem[entry.idem] = (at, entry_id)
        assert entry.text is not None
        if entry.translation_of is not None:
            linked, _ = split_story(entry.translation_of)
            if linked == self.name:
                raise Rejected("translation_of names an item of this same edition",
                               field="translation_of")
            if self.editions is not None and linked not in self.editions:
                raise Rejected(f"translation_of names {linked!r}, which is not a configured "
                               "edition", field="translation_of")
        urgency = entry.urgency or "breaking"
        if entry.expires is not None:
            expires = entry.expires
        else:
            expires = at + (entry.ttl or DEFAULT_TTL[urgency]) * 1000
        item = Item(id=entry_id, ts=at, text=entry.text, source=entry.source, urgency=urgency,
                    link=entry.link, tags=entry.tags or (), expires=expires, by=entry.by,
                    updated=at,
                    story=entry.translation_of or story_key(self.name, entry_id))
        self.items[entry_id] = item
        item.story_ref, changed = self.stories.add(item.story, self.name, entry_id)
        if changed:
            self.relinked.append(item.story_ref)
        if len(self.items) > self.max_kept:
            _, old = self.items.popitem(last=False)
            story, changed = self.stories.remove(old.story, self.name, old.id)
            if changed and story is not None:
                self.relinked.append(story)
        return {"op": "publish", "cursor": entry_id, "item": item.public()}

    def _forget_idem(self, now: int) -> None:
        while self.idem:
            key, (at, _) = next(iter(self.idem.items()))
            if now - at < IDEM_WINDOW_MS:
                break
            del self.idem[key]

    def idem_item(self, key: str) -> str | None:
        """The item a still-remembered idempotency key published, if any."""
        hit = self.idem.get(key)
        return hit[1] if hit else None

    def take_relinked(self) -> list[Story]:
        """The stories whose versions changed since the last call (their items' cached
        public forms are stale: the owner refreshes them, here and in other editions)."""
        out, self.relinked = self.relinked, []
        return out

    def skip(self, entry_id: str) -> None:
        """Advance past an entry that was rejected before it reached the state."""
        self.cursor = entry_id

    def on_air(self, now: int) -> list[Item]:
        """What readers see at `now`: pinned first, then newest; at most `max_items`."""
        live = [it for it in self.items.values() if it.on_air(now)]
        live.sort(key=lambda it: (it.pinned, parse_stream_id(it.id)), reverse=True)
        return live[: self.max_items]
