"""Load-generator worker: many lightweight websocket or SSE clients in one uvloop process.

Each client is a raw ``asyncio.Protocol`` with a minimal HTTP client and a minimal parser
(the ``websockets`` client, or an HTTP library, per connection would make the client side the
bottleneck). It connects from one of the given source addresses (round robin, so no address
holds more than its share), waits for its first message (a ``snapshot``, or the ``events`` of
a resume), then for every ``publish`` event whose item text is ``bench <seq> <t_ns>`` records
``time.time_ns()`` at receipt minus ``t_ns`` (publish→receive latency). Each client keeps the
cursor of the last message it got, as the widget does, so it can resume.

``--protocol`` (default: ``sse`` when ``--path`` starts with ``/sse/``, else ``ws``):

- ``ws``: ``GET PATH`` with a websocket upgrade (``ws://HOST:PORT/PATH``); messages are text
  frames; a resume is ``PATH?cursor=<cursor>``. Pings are answered with masked pongs, as a
  client must.
- ``sse``: ``GET PATH`` with ``Accept: text/event-stream`` (ticker's ``/sse/{channel}``); a
  status other than 200 fails the attempt (the error names it). The body is read chunked
  (or raw until the end without ``Transfer-Encoding: chunked``) as an event stream (``\\n``,
  ``\\r\\n`` or ``\\r`` line ends; comments, ``retry:`` and ``event:`` are skipped; several
  ``data:`` lines are joined with ``\\n``); each event's data is the JSON of a websocket
  message and is counted exactly like one. The last ``id:`` seen is the cursor; a resume sends
  ``Last-Event-ID: <cursor>``. A stream the server ends (the last chunk) is closed.

Every byte-identical message (websocket payload, SSE event) is parsed once per worker.

Control is line-delimited JSON: commands on stdin, one reply line per command on stdout.

- ``{"cmd": "connect"}`` → ``{"connected", "failed", "errors", "t_start", "t_done",
  "first_us", "in_snapshot"}``, at most ``--concurrency`` handshakes in flight. ``first_us``:
  each connected client's time from its connect start (before the TCP connect; the first
  attempt's, when it took more than one) to its first complete message, in microseconds.
  ``in_snapshot``: ``{seq: clients}``, how many clients' first message was a snapshot that
  carried bench item ``seq`` (an item published while clients connect reaches each of them
  either live or in its snapshot)
- ``{"cmd": "connect", "over": s}`` (s > 0): paced; client k starts at ``t0 + k*s/n``,
  however many handshakes are in flight (up to a cap of 4096 for sanity). The same reply,
  plus ``"late_start_us"``: how far behind its schedule the worker started a client, at worst
  (the load generator must not be the bottleneck), and ``"capped"``: clients that found the
  cap full (they start late). Deliveries during the wave are recorded as usual
- ``{"cmd": "expect", "deliveries": k, "timeout": s}`` → ``{"deliveries", "reached"}`` once
  ``k`` deliveries were recorded since the last ``collect`` (or the timeout passed)
- ``{"cmd": "collect"}`` → ``{"items": {seq: {"lat_us": [...], "last_ns": ns}}, "open": n,
  "frames": n}`` and forgets the recorded deliveries
- ``{"cmd": "disconnect", "count": k}`` → aborts every connection, or ``k`` of them evenly
  spread (a network blip: RST, no close
  handshake) → ``{"closed", "cursors": {cursor: clients}}``
- ``{"cmd": "reconnect", "concurrency": k}`` → every client that was connected before the
  ``disconnect`` connects again with its last cursor (``?cursor=``, ``Last-Event-ID``); the
  same reply as ``connect`` plus ``"first": {"snapshot"|"events": clients}`` (what the first
  message was) and ``"missed": {k: clients}`` (the ``missed`` count the server reported)
- ``{"cmd": "stall", "count": k, "rcvbuf": b}`` → ``k`` clients, evenly spread, stop reading
  (``pause_reading()``; with ``b`` > 0 their kernel receive buffer shrunk to ``b`` bytes
  first): phones in a tunnel. Stalled clients record every bench seq they get from then on,
  in order → ``{"stalled": n}``
- ``{"cmd": "unstall"}`` → the stalled clients read again (with a normal receive buffer:
  a tiny window would leave the sender to its zero-window probes) → ``{"resumed": n}``
- ``{"cmd": "stalled"}`` → what each stalled client got since it stalled: ``{"seqs":
  [[seq, ...], ...], "resets": n, "open": n}`` (``resets``: clients sent a snapshot)
- ``{"cmd": "follow", "concurrency": k}`` → from now on, a client whose established
  connection ends (its node died) connects again at once with its cursor, as the widget
  does, ``k`` at a time → ``{"following": n}``
- ``{"cmd": "rejoined"}`` → what those reconnections came to so far: ``{"lost",
  "reconnected", "failed", "pending", "t_done", "errors", "first", "missed"}``
- ``{"cmd": "close"}`` → aborts every connection, replies, exits
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import resource
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import quote

import uvloop

KEY = base64.b64encode(b"fanout-benchmark").decode()  # in the request; each client's replaces it


def key_of(i: int) -> tuple[bytes, bytes]:
    """Client ``i``'s ``Sec-WebSocket-Key`` and the ``Sec-WebSocket-Accept`` it expects: every
    client sends its own key, as browsers do, so no server can answer from a key seen before."""
    key = base64.b64encode(i.to_bytes(16, "big"))
    digest = hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    return key, base64.b64encode(digest)
CACHE_MAX = 512
PACED_CAP = 4096  # handshakes in flight during a paced connect, at most
HEAD_MAX = 16384  # bytes of an HTTP response head, at most

Event = tuple[str | None, "Parsed | None"]  # an SSE event: its id, its data as a message


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """Encode one final client frame (payload < 126 bytes), masked as RFC 6455 requires."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload[:125]))
    return bytes([0x80 | opcode, 0x80 | len(body)]) + mask + body


def bench_item(item: Any) -> tuple[int, int] | None:
    """``(seq, t_ns)`` of a bench item (text ``bench <seq> <t_ns>``), else None."""
    parts = str((item or {}).get("text", "")).split()
    if len(parts) == 3 and parts[0] == "bench":
        return int(parts[1]), int(parts[2])
    return None


CLOCK = b'"now":'
DIGITS = re.compile(rb"\d*")


def clockless(payload: bytes) -> bytes:
    """The message without its clock (``"now":<ms>``, which nothing here reads): the cache
    key. A snapshot differs from one reader's to the next by its clock alone, so it is parsed
    once per worker, as an item's frame is, rather than once per reader: parsing each one
    (a server's snapshot with the items on air is kilobytes of JSON) made the load generator
    slower for the servers that send those items than for one that sends none. The key
    appears in no item (an item's text has its quotes escaped), and only once."""
    at = payload.find(CLOCK)
    if at < 0:
        return payload
    end = DIGITS.match(payload, at + len(CLOCK))
    return payload[:at] + payload[end.end() if end else at:]


class Parsed:
    """What a message means to the benchmark: its type, cursor, ``missed`` and bench items
    (``items``: published by an ``events`` message; ``snap``: on air in a ``snapshot``)."""

    __slots__ = ("cursor", "items", "kind", "missed", "snap")

    def __init__(
        self,
        kind: str,
        cursor: str | None,
        missed: int | None,
        items: tuple[tuple[int, int], ...],
        snap: tuple[int, ...] = (),
    ) -> None:
        self.kind = kind
        self.cursor = cursor
        self.missed = missed
        self.items = items
        self.snap = snap


class Stats:
    """What one worker has received: deliveries per bench item, shared by all its clients."""

    def __init__(self) -> None:
        self.lat_us: dict[int, list[int]] = {}
        self.last_ns: dict[int, int] = {}
        self.deliveries = 0
        self.frames = 0  # messages that carried at least one bench item
        self.waiter: tuple[int, asyncio.Future[None]] | None = None
        # Every client gets byte-identical messages, so each distinct payload is parsed once.
        self.cache: dict[bytes, Parsed] = {}
        self.blocks: dict[bytes, tuple[Event, ...]] = {}  # the same for SSE event text
        self.reads: dict[bytes, tuple[Event, ...]] = {}  # and for SSE reads of whole events

    def parse(self, payload: bytes) -> Parsed:
        """The message's type, cursor and the (seq, t_ns) of the bench publishes it carries."""
        key = clockless(payload)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        msg = json.loads(payload)
        kind = str(msg.get("type"))
        found: list[tuple[int, int]] = []
        for ev in msg.get("events", ()) if kind == "events" else ():
            bench = bench_item(ev.get("item")) if ev.get("op") == "publish" else None
            if bench is not None:
                found.append(bench)
        snap: list[int] = []
        for item in msg.get("items", ()) if kind == "snapshot" else ():
            bench = bench_item(item)
            if bench is not None:
                snap.append(bench[0])
        if len(self.cache) >= CACHE_MAX:
            self.cache.clear()
        result = Parsed(
            kind, msg.get("cursor"), msg.get("missed"), tuple(found), tuple(dict.fromkeys(snap))
        )
        self.cache[key] = result
        return result

    def sse_events(self, block: bytes) -> tuple[Event, ...]:
        """The events of SSE text up to (not including) a blank line, ``\\n`` line ends."""
        hit = self.blocks.get(block)
        if hit is not None:
            return hit
        events: list[Event] = []
        event_id: str | None = None
        data: list[bytes] = []
        for line in [*block.split(b"\n"), b""]:
            if not line:  # an event ends (a blank line inside: the text began with one)
                if data or event_id is not None:
                    events.append((event_id, self.parse(b"\n".join(data)) if data else None))
                event_id, data = None, []
            elif line[0] != 0x3A:  # ":" starts a comment (the heartbeat)
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    data.append(value)
                elif name == b"id" and b"\0" not in value:
                    event_id = value.decode()
        if len(self.blocks) >= CACHE_MAX:
            self.blocks.clear()
        result = self.blocks[block] = tuple(events)
        return result

    def record(self, items: tuple[tuple[int, int], ...], now: int) -> None:
        for seq, t_ns in items:
            lat = self.lat_us.get(seq)
            if lat is None:
                lat = self.lat_us[seq] = []
                self.last_ns[seq] = now
            lat.append((now - t_ns) // 1000)
            if now > self.last_ns[seq]:
                self.last_ns[seq] = now
        self.deliveries += len(items)
        self.frames += 1
        if self.waiter and self.deliveries >= self.waiter[0] and not self.waiter[1].done():
            self.waiter[1].set_result(None)


class Reader(asyncio.Protocol):
    """What websocket and SSE clients share: the request, the first message, recording."""

    def __init__(
        self, stats: Stats, request: bytes, ready: asyncio.Future[None], cursor: str | None = None
    ) -> None:
        self.stats = stats
        self.request = request
        self.ready = ready
        self.cursor = cursor  # of the last message received
        self.first: Parsed | None = None  # the first message
        self.t_first = 0  # time.time_ns() when it arrived
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.seqs: list[int] | None = None  # bench seqs received, once stalled
        self.resets = 0  # snapshots received after the first message
        # Called when an established connection ends (the ``follow`` command): the widget's
        # reconnect with its cursor.
        self.on_lost: Callable[[Reader], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before snapshot: {exc}"))
        elif self.on_lost is not None:
            self.on_lost(self)

    def got(self, parsed: Parsed, now: int) -> None:
        """One message (a websocket text frame, an SSE event's data), received at ``now``."""
        if parsed.cursor:
            self.cursor = parsed.cursor
        if self.first is None and parsed.kind in ("snapshot", "events"):
            self.first = parsed
            self.t_first = now
            if not self.ready.done():
                self.ready.set_result(None)
        elif parsed.kind == "snapshot":
            self.resets += 1
        if parsed.items:
            self.stats.record(parsed.items, now)
            if self.seqs is not None:
                self.seqs.extend(seq for seq, _ in parsed.items)

    def fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        if self.transport:
            self.transport.abort()


class Client(Reader):
    """One websocket client: upgrade, then parse server frames and record bench deliveries."""

    def __init__(
        self, stats: Stats, request: bytes, ready: asyncio.Future[None], cursor: str | None = None
    ) -> None:
        super().__init__(stats, request, ready, cursor)
        self.upgraded = False
        self.frag_op = 0
        self.frag: list[bytes] = []
        self.accept = b""  # the accept key its request's key calls for (`key_of`)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            head = buf[:end]
            if b" 101 " not in head.split(b"\r\n", 1)[0] or self.accept not in head:
                self.fail(f"bad upgrade: {head[:60]!r}")
                return
            self.upgraded = True
            buf = buf[end + 4 :]
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, hdr = b1 & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, hdr = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, hdr = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if b1 & 0x80:
                self.fail("server sent a masked frame")
                return
            if size - pos < hdr + length:
                break
            payload = buf[pos + hdr : pos + hdr + length]
            pos += hdr + length
            self.frame(b0 & 0x0F, bool(b0 & 0x80), payload, now)
        self.buf = buf[pos:]

    def frame(self, opcode: int, fin: bool, payload: bytes, now: int) -> None:
        if opcode == 0x9:
            self.send(masked_frame(0xA, payload))
        elif opcode == 0x8:
            self.send(masked_frame(0x8, payload[:2]))
            if self.transport:
                self.transport.close()
        elif opcode in (0x1, 0x2, 0x0):
            if opcode:
                self.frag_op, self.frag = opcode, []
            self.frag.append(payload)
            if fin:
                message = b"".join(self.frag) if len(self.frag) > 1 else self.frag[0]
                self.frag = []
                if self.frag_op == 0x1:
                    self.got(self.stats.parse(message), now)

    def send(self, data: bytes) -> None:
        if self.transport and not self.transport.is_closing():
            self.transport.write(data)


class SSEClient(Reader):
    """One EventSource-like client: status and headers, chunked body, event stream."""

    def __init__(
        self, stats: Stats, request: bytes, ready: asyncio.Future[None], cursor: str | None = None
    ) -> None:
        super().__init__(stats, request, ready, cursor)
        self.headed = False  # the response head was read (a 200)
        self.chunked = False
        self.left = 0  # bytes of the current chunk still to come, its closing CRLF included
        self.text = b""  # event-stream text after the last complete event, \n line ends
        self.skip_lf = False  # the text read so far ended in a CR: an LF next is its CRLF

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        clean = self.headed and not (self.buf or self.text or self.left or self.skip_lf)
        if clean:
            # Usually a read is one whole chunk with one event, the same for every client.
            hit = self.stats.reads.get(data)
            if hit is not None:
                self.dispatch(hit, now)
                return
        buf = self.buf + data if self.buf else data
        if not self.headed:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                if len(buf) > HEAD_MAX:
                    self.fail("response head too long")
                return
            if not self.head(buf[:end]):
                return
            buf = buf[end + 4 :]
        ended = False
        if not self.chunked:
            body, self.buf = buf, b""
        else:
            out: list[bytes] = []
            pos, size, left = 0, len(buf), self.left
            while pos < size:
                if left:
                    take = left if left < size - pos else size - pos
                    if left > 2:  # chunk data before the closing CRLF
                        out.append(buf[pos : pos + (take if take < left - 2 else left - 2)])
                    pos += take
                    left -= take
                    continue
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                try:
                    n = int(buf[pos:eol].split(b";", 1)[0], 16)
                except ValueError:
                    self.fail(f"bad chunk size: {buf[pos:eol][:20]!r}")
                    return
                pos = eol + 2
                if n == 0:  # the last chunk: the server ended the stream
                    ended = True
                    break
                left = n + 2
            self.left = left
            self.buf = buf[pos:] if pos < size and not ended else b""
            body = out[0] if len(out) == 1 else b"".join(out)
        events = self.events(body) if body else ()
        if clean and not ended and not (self.buf or self.text or self.left or self.skip_lf):
            reads = self.stats.reads
            if len(reads) >= CACHE_MAX:
                reads.clear()
            reads[data] = events
        self.dispatch(events, now)
        if ended and self.transport:
            self.transport.close()

    def dispatch(self, events: tuple[Event, ...], now: int) -> None:
        for event_id, parsed in events:
            if parsed is not None:
                self.got(parsed, now)
            if event_id is not None:
                self.cursor = event_id  # the browser's last event id

    def head(self, head: bytes) -> bool:
        """Check the response head (status 200); False if the attempt failed."""
        status, _, fields = head.partition(b"\r\n")
        parts = status.split(b" ", 2)
        if len(parts) < 2 or parts[1] != b"200":
            code = parts[1].decode(errors="replace") if len(parts) > 1 else repr(status[:40])
            self.fail(f"HTTP {code}")
            return False
        self.headed = True
        for line in fields.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower():
                self.chunked = True
        return True

    def events(self, body: bytes) -> tuple[Event, ...]:
        """The events completed by ``body`` (event-stream text); keeps the incomplete rest."""
        if self.skip_lf:
            self.skip_lf = False
            if body[:1] == b"\n":
                body = body[1:]
        if b"\r" in body:  # CRLF or CR line ends; a CR at the end may be half a CRLF
            self.skip_lf = body[-1] == 0x0D
            body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        text = self.text + body if self.text else body
        start = 0
        events: tuple[Event, ...] = ()
        while (end := text.find(b"\n\n", start)) >= 0:
            events += self.stats.sse_events(text[start:end])
            start = end + 2
        self.text = text[start:] if start < len(text) else b""
        return events


class Worker:
    """Holds ``n`` clients over its source addresses and answers the orchestrator's commands."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stats = Stats()
        self.sse = args.protocol == "sse"
        self.kind: type[Reader] = SSEClient if self.sse else Client
        self.clients: list[Reader] = []
        self.dropped: list[Reader] = []  # disconnected, to reconnect with their cursors
        self.stalled: list[Reader] = []  # not reading (the ``stall`` command)
        self.sources = args.source.split(",")
        self.request = self.http_request(None)
        self.requests: dict[str, bytes] = {}  # resume requests by cursor
        self.first_us: list[int] = []  # of the clients connected by the current command
        self.late = 0.0  # seconds the current paced connect started a client late, at worst
        # The ``follow`` command: clients whose connection ends reconnect at once.
        self.following = False
        self.rejoin = {"lost": 0, "reconnected": 0, "failed": 0, "t_done": 0}
        self.rejoin_errors: dict[str, int] = {}
        self.rejoined: list[Reader] = []
        self.rejoin_tasks: set[asyncio.Task[None]] = set()
        self.rejoin_sem = asyncio.Semaphore(args.concurrency)

    def http_request(self, cursor: str | None) -> bytes:
        """The request a client sends: a websocket upgrade or an event-stream GET."""
        host = f"{self.args.host}:{self.args.port}"
        path = self.args.path
        if self.sse:
            resume = f"Last-Event-ID: {cursor}\r\n" if cursor is not None else ""
            return (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
                f"Cache-Control: no-cache\r\n{resume}\r\n"
            ).encode()
        if cursor is not None:
            path = f"{path}?cursor={quote(cursor)}"
        return (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    async def connect_one(
        self,
        i: int,
        sem: asyncio.Semaphore,
        errors: dict[str, int],
        cursor: str | None = None,
        due: float | None = None,
        joined: list[Reader] | None = None,
    ) -> bool:
        """Connect client ``i`` (resuming from ``cursor``); ``due``: its paced start time
        (``time.monotonic()``); ``joined``: a list to add the connected client to. Up to three
        attempts."""
        loop = asyncio.get_running_loop()
        source = self.sources[i % len(self.sources)]
        request = self.request
        if cursor is not None:
            request = self.requests.get(cursor) or self.requests.setdefault(
                cursor, self.http_request(cursor)
            )
        accept = b""
        if not self.sse:
            key, accept = key_of(i)
            request = request.replace(KEY.encode(), key, 1)
        async with sem:
            if due is not None:
                self.late = max(self.late, time.monotonic() - due)
            t_start = time.time_ns()
            for _attempt in range(3):
                ready: asyncio.Future[None] = loop.create_future()
                client = self.kind(self.stats, request, ready, cursor)
                if isinstance(client, Client):
                    client.accept = accept
                try:
                    async with asyncio.timeout(self.args.connect_timeout):
                        await loop.create_connection(
                            lambda c=client: c,  # type: ignore[misc]
                            self.args.host,
                            self.args.port,
                            local_addr=(source, 0),
                        )
                        await ready
                except (OSError, TimeoutError) as exc:
                    key = type(exc).__name__ + ": " + str(exc)[:60]
                    errors[key] = errors.get(key, 0) + 1
                    if client.transport:
                        client.transport.abort()
                    continue
                self.clients.append(client)
                if joined is not None:
                    joined.append(client)
                if self.following:
                    client.on_lost = self.lost
                self.first_us.append((client.t_first - t_start) // 1000)
                return True
        return False

    async def connect(self, over: float) -> dict[str, Any]:
        """Every client connects: ``concurrency`` at a time, or paced over ``over`` s."""
        errors: dict[str, int] = {}
        n = self.args.clients
        if over <= 0:
            sem = asyncio.Semaphore(self.args.concurrency)
            return await self.connect_all(
                asyncio.gather(*(self.connect_one(i, sem, errors) for i in range(n))), errors
            )
        cap = asyncio.Semaphore(PACED_CAP)
        capped = 0

        async def paced() -> list[bool]:
            nonlocal capped
            loop = asyncio.get_running_loop()
            t0 = time.monotonic()
            tasks: list[asyncio.Task[bool]] = []
            for k in range(n):
                due = t0 + k * over / n
                delay = due - time.monotonic()
                if delay > 0.001:  # (a shorter sleep would spin: the loop's timers are in ms)
                    await asyncio.sleep(delay)
                if cap.locked():
                    capped += 1
                tasks.append(loop.create_task(self.connect_one(k, cap, errors, due=due)))
            return list(await asyncio.gather(*tasks))

        self.late = 0.0
        reply = await self.connect_all(paced(), errors)
        return reply | {"late_start_us": int(self.late * 1e6), "capped": capped}

    async def connect_all(
        self, attempts: Awaitable[list[bool]], errors: dict[str, int]
    ) -> dict[str, Any]:
        """Run the connection attempts; the reply common to connect and reconnect."""
        t_start = time.time_ns()
        before = len(self.clients)
        self.first_us = []
        results = await attempts
        ok = sum(results)
        in_snapshot = Counter(
            seq
            for c in self.clients[before:]
            if c.first is not None and c.first.kind == "snapshot"
            for seq in c.first.snap
        )
        return {
            "connected": ok,
            "failed": len(results) - ok,
            "errors": errors,
            "t_start": t_start,
            "t_done": time.time_ns(),
            "first_us": self.first_us,
            "in_snapshot": {str(k): v for k, v in sorted(in_snapshot.items())},
        }

    def disconnect(self, count: int | None = None) -> dict[str, Any]:
        """Abort every connection at once (RST), or ``count`` of them evenly spread (the rest
        stay), remembering each dropped client's cursor."""
        n = len(self.clients)
        k = n if count is None else max(0, min(count, n))
        chosen = {i * n // k for i in range(k)} if k else set()
        dropped = [c for i, c in enumerate(self.clients) if i in chosen]
        self.clients = [c for i, c in enumerate(self.clients) if i not in chosen]
        cursors = Counter(c.cursor for c in dropped)
        for c in dropped:
            if c.transport:
                c.transport.abort()
        self.dropped = dropped
        return {"closed": len(dropped), "cursors": {str(k): v for k, v in cursors.items()}}

    def follow(self, concurrency: int) -> dict[str, Any]:
        """From now on a client whose established connection ends (its node died) connects
        again at once with its cursor, as the widget does, ``concurrency`` at a time;
        ``rejoined`` reports."""
        self.following = True
        self.rejoin_sem = asyncio.Semaphore(concurrency)
        for c in self.clients:
            c.on_lost = self.lost
        return {"following": len(self.clients)}

    def lost(self, client: Reader) -> None:
        self.rejoin["lost"] += 1
        task = asyncio.get_running_loop().create_task(self.again(client))
        self.rejoin_tasks.add(task)
        task.add_done_callback(self.rejoin_tasks.discard)

    async def again(self, client: Reader) -> None:
        ok = await self.connect_one(self.rejoin["lost"], self.rejoin_sem, self.rejoin_errors,
                                    client.cursor or "0-0", joined=self.rejoined)
        self.rejoin["reconnected" if ok else "failed"] += 1
        if ok:
            self.rejoin["t_done"] = time.time_ns()

    def rejoined_report(self) -> dict[str, Any]:
        """What the ``follow`` reconnections came to so far."""
        first = Counter(c.first.kind for c in self.rejoined if c.first)
        missed = Counter(str(c.first.missed) for c in self.rejoined if c.first)
        return self.rejoin | {"pending": len(self.rejoin_tasks), "errors": self.rejoin_errors,
                              "first": dict(first), "missed": dict(missed)}

    async def reconnect(self, concurrency: int) -> dict[str, Any]:
        """Every dropped client connects again with its last cursor."""
        errors: dict[str, int] = {}
        sem = asyncio.Semaphore(concurrency)
        dropped, self.dropped = self.dropped, []
        back: list[Reader] = []
        reply = await self.connect_all(
            asyncio.gather(
                *(
                    self.connect_one(i, sem, errors, c.cursor or "0-0", joined=back)
                    for i, c in enumerate(dropped)
                )
            ),
            errors,
        )
        first = Counter(c.first.kind for c in back if c.first)
        missed = Counter(str(c.first.missed) for c in back if c.first)
        return reply | {"first": dict(first), "missed": dict(missed)}

    def stall(self, count: int, rcvbuf: int) -> dict[str, Any]:
        """``count`` clients, evenly spread, stop reading, with a small receive buffer."""
        n = len(self.clients)
        picked = {i * n // count for i in range(count)} if count and n else set()
        self.stalled = [c for i, c in enumerate(self.clients) if i in picked and c.transport]
        for c in self.stalled:
            assert c.transport is not None
            sock = c.transport.get_extra_info("socket")
            if sock is not None and rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            c.transport.pause_reading()
            c.seqs, c.resets = [], 0
        return {"stalled": len(self.stalled)}

    def unstall(self) -> dict[str, Any]:
        for c in self.stalled:
            if c.transport and not c.transport.is_closing():
                sock = c.transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                c.transport.resume_reading()
        return {"resumed": len(self.stalled)}

    def stalled_report(self) -> dict[str, Any]:
        return {
            "seqs": [c.seqs or [] for c in self.stalled],
            "resets": sum(c.resets for c in self.stalled),
            "open": sum(1 for c in self.stalled if c.transport and not c.transport.is_closing()),
        }

    async def expect(self, deliveries: int, wait_s: float) -> dict[str, Any]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stats.waiter = (deliveries, fut)
        if self.stats.deliveries >= deliveries:
            fut.set_result(None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fut, wait_s)
        self.stats.waiter = None
        return {"deliveries": self.stats.deliveries, "reached": fut.done()}

    def collect(self) -> dict[str, Any]:
        st = self.stats
        items = {str(s): {"lat_us": st.lat_us[s], "last_ns": st.last_ns[s]} for s in st.lat_us}
        frames, st.lat_us, st.last_ns, st.deliveries, st.frames = st.frames, {}, {}, 0, 0
        is_open = sum(1 for c in self.clients if c.transport and not c.transport.is_closing())
        return {"items": items, "open": is_open, "frames": frames}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            cmd = json.loads(line)
            reply: dict[str, Any]
            if cmd["cmd"] == "connect":
                reply = await self.connect(float(cmd.get("over") or 0))
            elif cmd["cmd"] == "expect":
                reply = await self.expect(int(cmd["deliveries"]), float(cmd["timeout"]))
            elif cmd["cmd"] == "collect":
                reply = self.collect()
            elif cmd["cmd"] == "disconnect":
                count = cmd.get("count")
                reply = self.disconnect(None if count is None else int(count))
            elif cmd["cmd"] == "stall":
                reply = self.stall(int(cmd["count"]), int(cmd.get("rcvbuf", 0)))
            elif cmd["cmd"] == "unstall":
                reply = self.unstall()
            elif cmd["cmd"] == "stalled":
                reply = self.stalled_report()
            elif cmd["cmd"] == "follow":
                reply = self.follow(int(cmd.get("concurrency", self.args.concurrency)))
            elif cmd["cmd"] == "rejoined":
                reply = self.rejoined_report()
            elif cmd["cmd"] == "reconnect":
                reply = await self.reconnect(int(cmd.get("concurrency", self.args.concurrency)))
            else:
                for c in self.clients:
                    if c.transport:
                        c.transport.abort()
                reply = {"closed": len(self.clients)}
            sys.stdout.write(json.dumps(reply, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            if cmd["cmd"] == "close":
                return


def main(argv: list[str] | None = None) -> None:
    """Run one worker until stdin closes or a ``close`` command arrives."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default=None, help="default /ws/en, or /sse/en for sse")
    p.add_argument(
        "--protocol", choices=("ws", "sse"), default=None,
        help="default: sse if --path starts with /sse/, else ws",
    )
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--source", default="127.0.0.2", help="source addresses, comma-separated")
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight")
    p.add_argument("--connect-timeout", type=float, default=20.0)
    args = p.parse_args(argv)
    if args.protocol is None:
        args.protocol = "sse" if (args.path or "").startswith("/sse/") else "ws"
    if args.path is None:
        args.path = "/sse/en" if args.protocol == "sse" else "/ws/en"
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(Worker(args).serve())


if __name__ == "__main__":
    main()
