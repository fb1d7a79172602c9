"""The websocket upgrade, in process: what each way of using the websockets library costs.

The connect path's budget is tight (docs/performance.md, "The websocket layer on the
websockets library"), so each candidate is timed here in one run, on the benchmark's own
request (five headers) and on a browser's (eleven):

- ``serverprotocol``: a `ServerProtocol` per connection, as its docs describe: `receive_data`,
  `events_received`, `accept`, `send_response`, `data_to_send`;
- ``library-parse``: the library's parser (`Request.parse` over its stream reader) and
  `accept()` of one shared `ServerProtocol`, `Response.serialize()`;
- ``httptools+accept``: httptools parses (ticker.transport.websocket.parse_request), the shared
  `accept()` checks and builds the response, `Response.serialize()`;
- ``ticker``: what ticker.transport.websocket does with a kind of request it has not seen:
  httptools parses, the shared `process_request()` checks and computes the accept key, and
  the fixed 101 is written with it;
- ``known-kind``: what it does with a plain request of a kind the library has accepted
  before (ticker.transport.upgrade): one pattern and a split, the shape looked up, the key
  checked and the accept key computed.

Each figure is CPU µs per upgrade with the garbage collector on (its cost is part of it).
Then a reader's pong, parsed by an OPEN-state `ServerProtocol` built for it, and by one
reused from ticker.transport.websocket's spares.

    python benchmarks/handshake.py [--n 20000]
"""

from __future__ import annotations

import argparse
import gc
import logging
import time
from collections.abc import Callable

from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from ticker.transport import upgrade
from ticker.transport.websocket import SWITCHING, VALIDATOR, parse_request

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MINIMAL = ("GET /ws/en HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n").encode()
BROWSER = ("GET /ws/en?cursor=1732662001000-0 HTTP/1.1\r\nHost: news.example\r\n"
           "Connection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n"
           "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/156.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\n"
           "Origin: https://news.example\r\nSec-WebSocket-Version: 13\r\n"
           "Accept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\n"
           f"Sec-WebSocket-Key: {KEY}\r\n"
           "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
           ).encode()
QUIET = logging.getLogger("benchmarks.handshake")
QUIET.setLevel(logging.WARNING)


def serverprotocol(data: bytes) -> bytes:
    conn = ServerProtocol(logger=QUIET)
    conn.receive_data(data)
    request = conn.events_received()[0]
    assert isinstance(request, Request)
    conn.send_response(conn.accept(request))
    return b"".join(conn.data_to_send())


def library_parse(data: bytes) -> bytes:
    reader = StreamReader()
    reader.feed_data(data)
    parser = Request.parse(reader.read_line)
    try:
        next(parser)
    except StopIteration as done:
        request: Request = done.value
    else:
        raise AssertionError("incomplete request")
    return VALIDATOR.accept(request).serialize()


def httptools_accept(data: bytes) -> bytes:
    return VALIDATOR.accept(parse_request(data)).serialize()


def ticker(data: bytes) -> bytes:
    accept, _, _ = VALIDATOR.process_request(parse_request(data))
    return SWITCHING + accept.encode() + b"\r\n\r\n"


def known_kind(data: bytes) -> bytes:
    head = upgrade.read_plain(data)
    accept = None if head is None else upgrade.known_accept(head)
    assert accept is not None, "the kind was accepted before"
    return SWITCHING + accept + b"\r\n\r\n"


WAYS: dict[str, Callable[[bytes], bytes]] = {
    "serverprotocol": serverprotocol, "library-parse": library_parse,
    "httptools+accept": httptools_accept, "ticker": ticker, "known-kind": known_kind,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000, help="upgrades per figure")
    args = p.parse_args()
    for request in (MINIMAL, BROWSER):  # as a process that has answered such a request
        upgrade.remember(parse_request(request))
    for way in WAYS.values():  # every way gives a 101 with the same accept key
        assert way(MINIMAL).startswith(b"HTTP/1.1 101 ")
        assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in way(BROWSER)
    print("| way | µs, 5 headers | µs, 11 headers | x ticker |")
    print("| --- | ---: | ---: | ---: |")
    figures: dict[str, tuple[float, float]] = {}
    for name, way in WAYS.items():
        row = []
        for request in (MINIMAL, BROWSER):
            gc.collect()
            start = time.process_time()
            for _ in range(args.n):
                way(request)
            row.append((time.process_time() - start) / args.n * 1e6)
        figures[name] = (row[0], row[1])
    base = figures["ticker"]
    for name, (small, big) in figures.items():
        print(f"| {name} | {small:.1f} | {big:.1f} | {small / base[0]:.2f}x / "
              f"{big / base[1]:.2f}x |")
    pong = bytes([0x8A, 0x80]) + b"\x01\x02\x03\x04"  # an empty, masked pong
    spare = ServerProtocol(state=OPEN, max_size=1024, logger=QUIET)

    def one(conn: ServerProtocol) -> None:
        conn.receive_data(pong)
        (frame,) = conn.events_received()
        assert frame.opcode is Opcode.PONG and not conn.data_to_send()

    print("\n| a pong | µs |\n| --- | ---: |")
    for name, make in (("a protocol built for it", lambda: ServerProtocol(
            state=OPEN, max_size=1024, logger=QUIET)), ("a spare reused", lambda: spare)):
        gc.collect()
        start = time.process_time()
        for _ in range(args.n):
            one(make())
        print(f"| {name} | {(time.process_time() - start) / args.n * 1e6:.1f} |")


if __name__ == "__main__":
    main()
