"""The "raw floor": the least a Python fan-out server can do per delivery.

A bare uvloop server: accept TCP, do the minimal websocket handshake (``Sec-WebSocket-Accept``),
send a snapshot frame, keep the transport. One XREAD loop (``XREAD BLOCK 1000 COUNT 100`` on
``ticker:stream:en`` from ``$``) encodes ONE frame per read batch (header + JSON payload, all the
batch's events) and calls every socket's ``transport.write(frame)`` (kept pre-bound in a dict:
measured ~20% cheaper per delivery than ``for t in set_of_transports: t.write(frame)``): one
frame per client per read batch, no awaiting, no backpressure, no state, no pings.
``GET /healthz`` answers 200.

``--snapshot-items N`` (the ``raw-items`` server of benchmarks/fanout.py): the snapshot carries
the last N published items, as a ticker's carries the items on air, their JSON joined once
per read batch, so that a new reader costs the floor what the bytes of a real snapshot
cost and no more. Without it the snapshot's ``items`` is empty.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import collections
import hashlib
import json
import logging
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import parse_qs, unquote

import redis.asyncio as aioredis
import uvloop
from redis.exceptions import RedisError

STREAM = "ticker:stream:en"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
log = logging.getLogger("raw_floor")


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame (server to client)."""
    n = len(payload)
    if n < 126:
        header = bytes([0x81, n])
    elif n < 65536:
        header = bytes([0x81, 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x81, 127]) + n.to_bytes(8, "big")
    return header + payload


def item_of(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """The protocol's ITEM for a publish entry (defaults, no validation)."""
    ts = int(entry_id.split("-", 1)[0])
    return {
        "id": entry_id,
        "text": fields.get("text", ""),
        "source": fields.get("source"),
        "urgency": fields.get("urgency", "breaking"),
        "link": None,
        "tags": [],
        "ts": ts,
        "expires": ts + 7_200_000,
        "version": 1,
        "corrected": False,
        "pinned": False,
    }


class History:
    """Every event's (stream ID, encoded JSON), in order: what resume needs and no more."""

    def __init__(self, on_air: int = 0) -> None:
        self.keys: list[tuple[int, int]] = []
        self.fragments: list[bytes] = []
        self.cursor = "0-0"
        self.kept: collections.deque[bytes] = collections.deque(maxlen=on_air or None)
        self.keep = on_air  # items the snapshot carries (0: none)
        self.on_air = b""  # their JSON, newest first, joined

    def published(self, items: list[dict[str, Any]]) -> None:
        """Items published in one read batch: the snapshot's from now on."""
        if self.keep:
            self.kept.extendleft(json.dumps(i, separators=(",", ":")).encode() for i in items)
            self.on_air = b",".join(self.kept)

    def after(self, cursor: str) -> bytes | None:
        """The events frame for a client at ``cursor`` (None when the cursor is unusable)."""
        try:
            ms, seq = cursor.split("-")
            key = (int(ms), int(seq))
        except ValueError:
            return None
        start = bisect.bisect_right(self.keys, key)
        missed = len(self.keys) - start
        return text_frame(
            b'{"type":"events","cursor":"%s","now":%d,"missed":%d,"events":[%s]}'
            % (
                self.cursor.encode(),
                int(time.time() * 1000),
                missed,
                b",".join(self.fragments[start:]),
            )
        )


def snapshot_frame(history: History) -> bytes:
    msg = {
        "type": "snapshot",
        "channel": "en",
        "cursor": history.cursor,
        "reset": False,
        "now": int(time.time() * 1000),
        "missed": None,
        "channel_info": {"name": "en", "lang": "en", "dir": "ltr", "title": "Breaking"},
        "items": [],
    }
    body = json.dumps(msg, separators=(",", ":")).encode()
    if history.on_air:
        body = body.replace(b'"items":[]', b'"items":[' + history.on_air + b"]", 1)
    return text_frame(body)


class Conn(asyncio.Protocol):
    """One client: handshake, then kept in ``conns``; inbound frames other than close ignored."""

    def __init__(
        self, conns: dict[asyncio.Transport, Callable[[bytes], None]], history: History
    ) -> None:
        self.conns = conns
        self.history = history
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport:
            self.conns.pop(self.transport, None)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        if self.upgraded:  # answer a close frame (assumed to start a read), ignore the rest
            if data[0] & 0x0F == 0x8:
                self.transport.write(b"\x88\x02\x03\xe8")
                self.transport.close()
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > 8192:
                self.transport.abort()
            return
        lines = self.buf[:end].split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get(b"sec-websocket-key")
        if key is None:
            body = b"ok" if lines[0].startswith(b"GET /healthz ") else b"not found"
            status = b"200 OK" if body == b"ok" else b"404 Not Found"
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % len(body) + body
            )
            self.transport.close()
            return
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        first = None
        target = lines[0].split(b" ")[1].decode("latin-1")
        if "?" in target:
            cursor = parse_qs(target.partition("?")[2]).get("cursor")
            first = self.history.after(unquote(cursor[0])) if cursor else None
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept
            + b"\r\n\r\n"
            + (first or snapshot_frame(self.history))
        )
        self.upgraded, self.buf = True, b""
        self.conns[self.transport] = self.transport.write


async def reader(
    redis_url: str, conns: dict[asyncio.Transport, Callable[[bytes], None]], history: History
) -> None:
    """The one XREAD loop: one pre-encoded frame per batch, ``write`` to every socket."""
    r = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=10)
    # From the newest entry, not "$": "$" again after an empty read would skip what was
    # added between that reply and the next XREAD.
    newest = await r.xrevrange(STREAM, count=1)
    last = newest[0][0] if newest else "0-0"
    while True:
        try:
            reply: Any = await r.xread({STREAM: last}, count=100, block=1000)
        except RedisError as exc:
            log.warning("xread failed: %s", exc)
            await asyncio.sleep(0.5)
            continue
        for _stream, entries in reply or ():
            if not entries:
                continue
            events = [
                {"op": "publish", "cursor": eid, "item": item_of(eid, f)} for eid, f in entries
            ]
            last = entries[-1][0]
            msg = {
                "type": "events",
                "cursor": last,
                "now": int(time.time() * 1000),
                "events": events,
            }
            frame = text_frame(json.dumps(msg, separators=(",", ":")).encode())
            for (eid, _f), event in zip(entries, events, strict=True):
                ms, seq = eid.split("-")
                history.keys.append((int(ms), int(seq)))
                history.fragments.append(json.dumps(event, separators=(",", ":")).encode())
            history.cursor = last
            history.published([e["item"] for e in events])
            for write in tuple(conns.values()):
                write(frame)


async def serve(host: str, port: int, redis_url: str, on_air: int) -> None:
    conns: dict[asyncio.Transport, Callable[[bytes], None]] = {}
    history = History(on_air)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Conn(conns, history), host, port, backlog=8192, reuse_port=True
    )
    async with server:
        await reader(redis_url, conns, history)


def main(argv: list[str] | None = None) -> None:
    """Serve until killed."""
    p = argparse.ArgumentParser(description="raw asyncio fan-out floor")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--procs", type=int, default=1, help="processes sharing the port")
    p.add_argument("--snapshot-items", type=int, default=0,
                   help="published items the snapshot carries (module docstring)")
    args = p.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # The others share our process group: the benchmark's killpg stops them with us.
    for _ in range(args.procs - 1):
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--host",
                args.host,
                "--port",
                str(args.port),
                "--redis-url",
                args.redis_url,
                "--snapshot-items",
                str(args.snapshot_items),
            ]
        )
    uvloop.run(serve(args.host, args.port, args.redis_url, args.snapshot_items))


if __name__ == "__main__":
    main()
