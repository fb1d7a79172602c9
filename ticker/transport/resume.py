"""Where a reader resumes, the same on every transport: its cursor, checked once, and the
short wait when that cursor comes from a node that has read further than this one.

A reader that reconnects to another node (a balancer, a restart) may carry a cursor this
node has not read yet. It waits `AHEAD_WAIT` x `AHEAD_RETRIES` seconds for this node to catch
up (no task: a timer per try), then gets a fresh snapshot if the cursor still cannot be
placed. A malformed cursor is a 400 on the websocket upgrade and on SSE alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from ticker.core.clock import now_ms
from ticker.core.errors import HTTPError
from ticker.core.hub import ChannelHub, Subscriber
from ticker.core.items import parse_stream_id

MAX_CURSOR: Final = 64
AHEAD_RETRIES: Final = 20
AHEAD_WAIT: Final = 0.1  # seconds between tries


def check_cursor(value: str | None, where: str) -> str | None:
    """The cursor in `value` (blank or absent: None); 400 naming `where` if malformed."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > MAX_CURSOR or parse_stream_id(value) is None:
        raise HTTPError(400, "bad_request",
                        f"{where} must be a cursor (a stream ID like 1732662000000-0)",
                        field=where)
    return value


def subscribe(channel: ChannelHub, conn: Subscriber, cursor: str | None,
              gone: Callable[[], bool], preamble: bytes = b"") -> None:
    """Send `conn` its first message and add it to the live set, now or once this node has
    caught up with `cursor`. `preamble` (the websocket's 101) goes out at once either way;
    `gone()` says the reader left meanwhile."""
    if channel.subscribe(conn, cursor, now_ms(), preamble=preamble):
        return
    if preamble:
        conn.write(preamble)  # answer now, subscribe soon
    _later(channel, conn, cursor, gone, AHEAD_RETRIES)


def _later(channel: ChannelHub, conn: Subscriber, cursor: str | None,
           gone: Callable[[], bool], retries: int) -> None:
    asyncio.get_running_loop().call_later(AHEAD_WAIT, _retry, channel, conn, cursor, gone,
                                          retries)


def _retry(channel: ChannelHub, conn: Subscriber, cursor: str | None,
           gone: Callable[[], bool], retries: int) -> None:
    if gone() or channel.subscribe(conn, cursor, now_ms()):
        return
    if retries <= 1:
        # Still ahead of us after waiting: a cursor we cannot place gets a fresh snapshot.
        channel.subscribe(conn, None, now_ms())
        return
    _later(channel, conn, cursor, gone, retries - 1)
