"""What the desk shows: every live item per channel (with its author and status), the held
ones, recently expired ones, and the jobs not yet on the stream. Built from this node's
folded state (the same fold every node does) plus the jobs in Redis.

An item's desk `status`: `on_air` (readers see it), `over_limit` (live, but below the
channel's `max_items` newest/pinned), `held`, or `expired` (within the last
`RECENT_EXPIRED_MS`, so an editor can still extend it back on air). Killed items are gone.
Each item also says which edition's correction it has not caught up with (`needs_update`),
and each edition has its translation queue (`to_translate`, docs/editions.md): the flash and
urgent originals on air in other editions that have no version in it and were not dismissed
for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ticker.core.editions import needs_update
from ticker.core.hub import ChannelHub
from ticker.core.items import parse_stream_id
from ticker.core.state import Item
from ticker.core.stories import story_key
from ticker.newsroom.jobs import Job
from ticker.newsroom.translations import URGENT_ENOUGH

RECENT_EXPIRED_MS: Final = 3600 * 1000
MAX_DESK_ITEMS: Final = 200
STATUS_ORDER: Final = {"on_air": 0, "over_limit": 1, "held": 2, "expired": 3}


def desk_item(item: Item, status: str, peers: Mapping[str, ChannelHub]) -> dict[str, Any]:
    """The reader's view of the item plus what only editors see."""
    return {**item.public(), "by": item.by, "held": item.held, "status": status,
            "updated": item.updated, "needs_update": needs_update(peers, item)}


def to_translate(channels: list[ChannelHub], edition: str, now: int,
                 dismissed: set[tuple[str, str]]) -> list[dict[str, Any]]:
    """The flash and urgent originals on air elsewhere that `edition` has no version of,
    oldest first (the longest waiting on top)."""
    out: list[tuple[tuple[int, int], dict[str, Any]]] = []
    for hub in channels:
        name = hub.info.name
        if name == edition:
            continue
        for item in hub.state.items.values():
            if item.urgency not in URGENT_ENOUGH or not item.on_air(now) \
                    or item.story != story_key(name, item.id):
                continue
            if item.story_ref is not None and edition in item.story_ref.members:
                continue
            if (edition, item.story) in dismissed:
                continue
            out.append((parse_stream_id(item.id) or (0, 0), {
                "channel": name, "id": item.id, "story": item.story, "text": item.text,
                "source": item.source, "urgency": item.urgency, "ts": item.ts,
                "link": item.link, "tags": list(item.tags)}))
    out.sort(key=lambda row: row[0])
    return [row for _, row in out]


def channel_items(channel: ChannelHub, now: int) -> list[dict[str, Any]]:
    """The channel's items for the desk: on air first (in on-air order), then the rest."""
    state = channel.state
    shown = {it.id for it in state.on_air(now)}
    rows: list[tuple[tuple[int, bool, tuple[int, int]], dict[str, Any]]] = []
    for item in state.items.values():
        if item.killed:
            continue
        if item.held:
            status = "held"
        elif item.expires <= now:
            if now - item.expires > RECENT_EXPIRED_MS:
                continue
            status = "expired"
        else:
            status = "on_air" if item.id in shown else "over_limit"
        key = parse_stream_id(item.id) or (0, 0)
        rows.append(((-STATUS_ORDER[status], item.pinned, key),
                     desk_item(item, status, channel.peers)))
    rows.sort(key=lambda r: r[0], reverse=True)
    return [row for _, row in rows[:MAX_DESK_ITEMS]]


def desk_state(channels: list[ChannelHub], now: int, me: Mapping[str, Any],
               scheduled: list[Job], pending: list[Job],
               dismissed: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The whole desk view (GET /desk/api/state and the desk's live feed)."""
    return {
        "now": now,
        "me": me,
        "channels": [
            {**ch.info.info(), "cursor": ch.state.cursor, "max_items": ch.state.max_items,
             "items": channel_items(ch, now),
             "to_translate": to_translate(channels, ch.info.name, now, dismissed or set())}
            for ch in channels
        ],
        "scheduled": [j.public() for j in scheduled],
        "pending": [j.public() for j in pending],
    }
