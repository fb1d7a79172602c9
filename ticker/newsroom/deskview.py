"""What the desk shows: every live item per channel (with its author and status), the held
ones, recently expired ones, and the jobs not yet on the stream. Built from this node's
folded state (the same fold every node does) plus the jobs in Redis.

An item's desk `status`: `on_air` (readers see it), `over_limit` (live, but below the
channel's `max_items` newest/pinned), `held`, or `expired` (within the last
`RECENT_EXPIRED_MS`, so an editor can still extend it back on air). Killed items are gone.
"""

from __future__ import annotations

from typing import Any, Final

from ticker.core.hub import ChannelHub
from ticker.core.items import parse_stream_id
from ticker.core.state import Item
from ticker.newsroom.jobs import Job

RECENT_EXPIRED_MS: Final = 3600 * 1000
MAX_DESK_ITEMS: Final = 200
STATUS_ORDER: Final = {"on_air": 0, "over_limit": 1, "held": 2, "expired": 3}


def desk_item(item: Item, status: str) -> dict[str, Any]:
    """The reader's view of the item plus what only editors see."""
    return {**item.public(), "by": item.by, "held": item.held, "status": status,
            "updated": item.updated}


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
        rows.append(((-STATUS_ORDER[status], item.pinned, key), desk_item(item, status)))
    rows.sort(key=lambda r: r[0], reverse=True)
    return [row for _, row in rows[:MAX_DESK_ITEMS]]


def desk_state(channels: list[ChannelHub], now: int, me: dict[str, str],
               scheduled: list[Job], pending: list[Job]) -> dict[str, Any]:
    """The whole desk view (GET /desk/api/state and the desk's live feed)."""
    return {
        "now": now,
        "me": me,
        "channels": [
            {**ch.info.info(), "cursor": ch.state.cursor, "max_items": ch.state.max_items,
             "items": channel_items(ch, now)}
            for ch in channels
        ],
        "scheduled": [j.public() for j in scheduled],
        "pending": [j.public() for j in pending],
    }
