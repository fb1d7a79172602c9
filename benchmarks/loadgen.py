"""Load-generator worker: many lightweight websocket clients in one uvloop process.

Each client is a raw ``asyncio.Protocol`` with a minimal HTTP upgrade and a minimal frame
parser (the ``websockets`` client per connection would make the client side the bottleneck).
It connects to ``ws://HOST:PORT/PATH`` from one of the given source addresses (round robin,
so no address holds more than its share), waits for its first frame (a ``snapshot``, or the
``events`` of a resume), then for every ``publish`` event whose item text is
``bench <seq> <t_ns>`` records ``time.time_ns()`` at receipt minus ``t_ns`` (publish→receive
latency). Each client keeps the cursor of the last frame it got, as the widget does, so it
can resume with ``?cursor=``. Pings are answered with masked pongs, as a client must.

Control is line-delimited JSON: commands on stdin, one reply line per command on stdout.

- ``{"cmd": "connect"}`` → ``{"connected", "failed", "errors", "t_start", "t_done"}``
- ``{"cmd": "expect", "deliveries": k, "timeout": s}`` → ``{"deliveries", "reached"}`` once
  ``k`` deliveries were recorded since the last ``collect`` (or the timeout passed)
- ``{"cmd": "collect"}`` → ``{"items": {seq: {"lat_us": [...], "last_ns": ns}}, "open": n,
  "frames": n}`` and forgets the recorded deliveries
- ``{"cmd": "disconnect"}`` → aborts every connection (a network blip: RST, no close
  handshake) → ``{"closed", "cursors": {cursor: clients}}``
- ``{"cmd": "reconnect", "concurrency": k}`` → every client that was connected before the
  ``disconnect`` connects again with ``?cursor=<its last cursor>``; the same reply as
  ``connect`` plus ``"first": {"snapshot"|"events": clients}`` (what the first frame was) and
  ``"missed": {k: clients}`` (the ``missed`` count the server reported)
- ``{"cmd": "stall", "count": k, "rcvbuf": b}`` → ``k`` clients, evenly spread, stop reading
  (``pause_reading()``; with ``b`` > 0 their kernel receive buffer shrunk to ``b`` bytes
  first): phones in a tunnel. Stalled clients record every bench seq they get from then on,
  in order → ``{"stalled": n}``
- ``{"cmd": "unstall"}`` → the stalled clients read again (with a normal receive buffer:
  a tiny window would leave the sender to its zero-window probes) → ``{"resumed": n}``
- ``{"cmd": "stalled"}`` → what each stalled client got since it stalled: ``{"seqs":
  [[seq, ...], ...], "resets": n, "open": n}`` (``resets``: clients sent a snapshot)
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
import resource
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Iterable
from typing import Any, cast
from urllib.parse import quote

import uvloop

KEY = base64.b64encode(b"fanout-benchmark").decode()
ACCEPT = base64.b64encode(
    hashlib.sha1((KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
).decode()
CACHE_MAX = 512


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """Encode one final client frame (payload < 126 bytes), masked as RFC 6455 requires."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload[:125]))
    return bytes([0x80 | opcode, 0x80 | len(body)]) + mask + body


class Parsed:
    """What a frame means to the benchmark: its type, cursor, ``missed`` and bench items."""

    __slots__ = ("cursor", "items", "kind", "missed")

    def __init__(
        self, kind: str, cursor: str | None, missed: int | None, items: tuple[tuple[int, int], ...]
    ) -> None:
        self.kind = kind
        self.cursor = cursor
        self.missed = missed
        self.items = items


class Stats:
    """What one worker has received: deliveries per bench item, shared by all its clients."""

    def __init__(self) -> None:
        self.lat_us: dict[int, list[int]] = {}
        self.last_ns: dict[int, int] = {}
        self.deliveries = 0
        self.frames = 0  # frames that carried at least one bench item
        self.waiter: tuple[int, asyncio.Future[None]] | None = None
        # Every client gets byte-identical frames, so each distinct payload is parsed once.
        self.cache: dict[bytes, Parsed] = {}

    def parse(self, payload: bytes) -> Parsed:
        """The frame's type, cursor and the (seq, t_ns) of the bench publishes it carries."""
        hit = self.cache.get(payload)
        if hit is not None:
            return hit
        msg = json.loads(payload)
        kind = str(msg.get("type"))
        found: list[tuple[int, int]] = []
        for ev in msg.get("events", ()) if kind == "events" else ():
            text = (ev.get("item") or {}).get("text", "") if ev.get("op") == "publish" else ""
            parts = text.split()
            if len(parts) == 3 and parts[0] == "bench":
                found.append((int(parts[1]), int(parts[2])))
        if len(self.cache) >= CACHE_MAX:
            self.cache.clear()
        result = Parsed(kind, msg.get("cursor"), msg.get("missed"), tuple(found))
        self.cache[payload] = result
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


class Client(asyncio.Protocol):
    """One websocket client: upgrade, then parse server frames and record bench deliveries."""

    def __init__(
        self, stats: Stats, request: bytes, ready: asyncio.Future[None], cursor: str | None = None
    ) -> None:
        self.stats = stats
        self.request = request
        self.ready = ready
        self.cursor = cursor  # of the last frame received
        self.first: Parsed | None = None  # the first frame after the upgrade
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = False
        self.frag_op = 0
        self.frag: list[bytes] = []
        self.seqs: list[int] | None = None  # bench seqs received, once stalled
        self.resets = 0  # snapshots received after the first frame

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before snapshot: {exc}"))

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            head = buf[:end]
            if b" 101 " not in head.split(b"\r\n", 1)[0] or ACCEPT.encode() not in head:
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
                    self.message(message, now)

    def message(self, payload: bytes, now: int) -> None:
        parsed = self.stats.parse(payload)
        if parsed.cursor:
            self.cursor = parsed.cursor
        if self.first is None and parsed.kind in ("snapshot", "events"):
            self.first = parsed
            if not self.ready.done():
                self.ready.set_result(None)
        elif parsed.kind == "snapshot":
            self.resets += 1
        if parsed.items:
            self.stats.record(parsed.items, now)
            if self.seqs is not None:
                self.seqs.extend(seq for seq, _ in parsed.items)

    def send(self, data: bytes) -> None:
        if self.transport and not self.transport.is_closing():
            self.transport.write(data)

    def fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        if self.transport:
            self.transport.abort()


class Worker:
    """Holds ``n`` clients over its source addresses and answers the orchestrator's commands."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stats = Stats()
        self.clients: list[Client] = []
        self.dropped: list[Client] = []  # disconnected, to reconnect with their cursors
        self.stalled: list[Client] = []  # not reading (the ``stall`` command)
        self.sources = args.source.split(",")
        self.request = self.upgrade(args.path)

    def upgrade(self, target: str) -> bytes:
        host = f"{self.args.host}:{self.args.port}"
        return (
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    async def connect_one(
        self,
        i: int,
        sem: asyncio.Semaphore,
        errors: dict[str, int],
        cursor: str | None = None,
        requests: dict[str, bytes] | None = None,
    ) -> bool:
        loop = asyncio.get_running_loop()
        source = self.sources[i % len(self.sources)]
        request = self.request
        if cursor is not None and requests is not None:
            request = requests.get(cursor) or requests.setdefault(
                cursor, self.upgrade(f"{self.args.path}?cursor={quote(cursor)}")
            )
        async with sem:
            for _attempt in range(3):
                ready: asyncio.Future[None] = loop.create_future()
                client = Client(self.stats, request, ready, cursor)
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
                return True
        return False

    async def connect(self) -> dict[str, Any]:
        errors: dict[str, int] = {}
        sem = asyncio.Semaphore(self.args.concurrency)
        return await self.connect_all(
            (self.connect_one(i, sem, errors) for i in range(self.args.clients)), errors
        )

    @staticmethod
    async def connect_all(
        attempts: Iterable[Awaitable[bool]], errors: dict[str, int]
    ) -> dict[str, Any]:
        """Run the connection attempts together; the reply common to connect and reconnect."""
        t_start = time.time_ns()
        results = await asyncio.gather(*attempts)
        ok = sum(results)
        return {
            "connected": ok,
            "failed": len(results) - ok,
            "errors": errors,
            "t_start": t_start,
            "t_done": time.time_ns(),
        }

    def disconnect(self) -> dict[str, Any]:
        """Abort every connection at once (RST), remembering each client's cursor."""
        cursors = Counter(c.cursor for c in self.clients)
        for c in self.clients:
            if c.transport:
                c.transport.abort()
        self.dropped, self.clients = self.clients, []
        return {"closed": len(self.dropped), "cursors": {str(k): v for k, v in cursors.items()}}

    async def reconnect(self, concurrency: int) -> dict[str, Any]:
        """Every dropped client connects again with ``?cursor=`` its last cursor."""
        errors: dict[str, int] = {}
        sem = asyncio.Semaphore(concurrency)
        requests: dict[str, bytes] = {}
        dropped, self.dropped = self.dropped, []
        reply = await self.connect_all(
            (
                self.connect_one(i, sem, errors, c.cursor or "0-0", requests)
                for i, c in enumerate(dropped)
            ),
            errors,
        )
        first = Counter(c.first.kind for c in self.clients if c.first)
        missed = Counter(str(c.first.missed) for c in self.clients if c.first)
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
                reply = await self.connect()
            elif cmd["cmd"] == "expect":
                reply = await self.expect(int(cmd["deliveries"]), float(cmd["timeout"]))
            elif cmd["cmd"] == "collect":
                reply = self.collect()
            elif cmd["cmd"] == "disconnect":
                reply = self.disconnect()
            elif cmd["cmd"] == "stall":
                reply = self.stall(int(cmd["count"]), int(cmd.get("rcvbuf", 0)))
            elif cmd["cmd"] == "unstall":
                reply = self.unstall()
            elif cmd["cmd"] == "stalled":
                reply = self.stalled_report()
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
    p.add_argument("--path", default="/ws/en")
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--source", default="127.0.0.2", help="source addresses, comma-separated")
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight")
    p.add_argument("--connect-timeout", type=float, default=20.0)
    args = p.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(Worker(args).serve())


if __name__ == "__main__":
    main()
