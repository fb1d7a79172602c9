"""The wire messages (docs/protocol.md): what readers are sent, as compact JSON. Pure.

Bodies are encoded once per channel and batch; `ticker.core.framing` wraps them for each transport.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; the one encoder of everything sent to readers."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def event_json(event: dict[str, Any]) -> bytes:
    """One event, encoded once; frames are built by joining these fragments."""
    return dumps(event)


def status_payload(stale: bool, now: int) -> bytes:
    """`{"type":"status","stale":...}`: whether the live feed is interrupted."""
    return dumps({"type": "status", "stale": stale, "now": now})


def with_now(body: bytes, now: int) -> bytes:
    """Put the server clock into a cached message body (a JSON object): `{"now":N,...}`.

    Cached bodies never carry a clock of their own, so a cached snapshot is never stale.
    """
    return b'{"now":' + str(now).encode() + b"," + body[1:]


def events_body(cursor: str, fragments: Iterable[bytes], missed: int | None = None) -> bytes:
    """`{"type":"events",...}` without `now`, built from pre-encoded event fragments."""
    tail = b"" if missed is None else b',"missed":' + str(missed).encode()
    return b"".join((
        b'{"type":"events","cursor":"', cursor.encode("ascii"), b'"',
        tail, b',"events":[', b",".join(fragments), b"]}",
    ))


def events_payload(
    cursor: str, now: int, fragments: Iterable[bytes], missed: int | None = None
) -> bytes:
    """An `events` message (docs/protocol.md)."""
    return with_now(events_body(cursor, fragments, missed), now)


def snapshot_body(
    channel_info: dict[str, str],
    cursor: str,
    items: Sequence[dict[str, Any]],
    reset: bool,
    missed: int | None = None,
) -> bytes:
    """A `snapshot` message without `now` (see `with_now`)."""
    return dumps({
        "type": "snapshot",
        "channel": channel_info["name"],
        "channel_info": channel_info,
        "cursor": cursor,
        "reset": reset,
        "missed": missed,
        "items": list(items),
    })


def snapshot_payload(
    channel_info: dict[str, str],
    cursor: str,
    now: int,
    items: Sequence[dict[str, Any]],
    reset: bool,
    missed: int | None = None,
) -> bytes:
    return with_now(snapshot_body(channel_info, cursor, items, reset, missed), now)
