"""A websocket upgrade request read the quick way when the library has judged its kind before.

The library way (ticker.transport.websocket: httptools parses the head into the websockets
library's `Request`, and `ServerProtocol.process_request` checks it against RFC 6455 4.2.1)
is most of what a new reader costs when readers arrive one by one, as they do after a flash
alert: every piece of it then runs with cold caches (docs/performance.md, "The spike's
connect cost"). Yet a newsroom's readers send a handful of kinds of request: the same
browsers send the same header values, and only the key differs from one reader to the next.

So, for a *plain* head (below), the values of every header that `process_request` reads
other than the key (its *shape*) are looked up among the shapes the library has accepted on
this process. When the library accepted that shape before, it would accept this request
too if its key passes the library's key check, which is done here as the library does it (a
single `Sec-WebSocket-Key`, strict base64 of 16 bytes), and the accept key is computed as
RFC 6455 4.2.2 defines it. Any other head, any shape not accepted before and any key that
fails goes the library way, and gets the library's own answer; a refused shape is never
remembered. `tests/test_upgrade.py` holds both ways to the same answers.

A head is *plain* when it is exactly `GET <target> HTTP/1.1`, the target made of the URI
characters of RFC 3986 only, and each header line a token, a colon and a value of visible
ASCII, spaces and tabs, with no space or tab at the value's end, and it has no body
(`Transfer-Encoding`, or a `Content-Length` other than 0). httptools reads every plain head,
and reads it as `read_plain` does (the same header values, in the same order); what is not
plain (obsolete line folding, bytes above 127, bare CR or LF, a space before the colon, ...)
is left to httptools' judgement.

A plain head answered that way is remembered without the values nobody's verdict reads
(`remember_head`): its `Sec-WebSocket-Key`, which differs for every reader, and the
`X-Request-ID` a balancer adds to every request (deploy/nginx.conf does), each cut where
browsers and nginx spell the header. A later head that is the same byte for byte but for
those values (the next reader of the same page) is answered from it (`known_head`) without
being read again, if its key passes the check and its request ID is a plain value. The cut
is remembered with where it was made, so everything else of such a head is the remembered
one's: its request line, every other header, and so the library's verdict and what the
server checks (the target, `Host`, `Origin`, `X-Forwarded-For`). A key that passes is 24
base64 characters and a plain value is plain, so the head is as plain as the one remembered.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Callable
from typing import Final

from websockets.http11 import Request

GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
# A plain head (module docstring), in one pattern: the request line, header lines, the end.
TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"  # RFC 9110 5.6.2
VALUE: Final = rb"[ \t]*(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?"  # no space at its end
TARGET: Final = rb"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+"  # RFC 3986's characters
PLAIN: Final = re.compile(
    b"GET " + TARGET + rb" HTTP/1\.1\r\n(?:" + TOKEN + b":" + VALUE + rb"\r\n)*\r\n")
# Every header `process_request` reads, but the key: what its verdict depends on.
JUDGED: Final = ("connection", "upgrade", "sec-websocket-version", "origin",
                 "sec-websocket-protocol", "sec-websocket-extensions")
MAX_SHAPES: Final = 256  # kinds of request remembered; more are judged by the library each time
KEY_LINE: Final = b"\r\nSec-WebSocket-Key: "  # as browsers and the usual clients spell it
ID_LINE: Final = b"\r\nX-Request-ID: "  # as deploy/nginx.conf spells it
ID_VALUE: Final = re.compile(VALUE)  # a request ID that keeps a head plain (after ": ")
MAX_HEADS: Final = 256  # heads remembered (`heads`); the oldest makes way for a new one

NONE: Final[list[str]] = []
Shape = tuple[tuple[str, ...], ...]
accepted: dict[Shape, None] = {}  # the shapes the library accepted on this process
# Heads answered the quick way, their key's and request ID's values cut out: what was read
# of them. The key and request ID read with them are the first reader's, not needed again
# (a websocket's checks read neither).
Cut = tuple[bytes, int, int]  # a head without those two values, and where they were
heads: dict[Cut, PlainHead] = {}


class PlainHead:
    """A plain head's target and header values (names in lower case, values in order)."""

    __slots__ = ("fields", "target")

    def __init__(self, target: str, fields: dict[str, list[str]]) -> None:
        self.target = target
        self.fields = fields

    def get_all(self, name: str) -> list[str]:
        """Every value of the header `name` (any case), as `Headers.get_all` gives them."""
        return self.fields.get(name.lower(), NONE)


def read_plain(head: bytes) -> PlainHead | None:
    """The request in `head` (up to and including the blank line) if it is plain (module
    docstring); None: it is for httptools and the library to read."""
    if PLAIN.fullmatch(head) is None:
        return None
    lines = head[:-4].decode("ascii").split("\r\n")
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.lower()
        values = fields.get(name)
        if values is None:
            fields[name] = [value.lstrip(" \t")]
        else:
            values.append(value.lstrip(" \t"))
    if "transfer-encoding" in fields or any(v != "0" for v in fields.get("content-length", ())):
        return None
    return PlainHead(lines[0][4:-9], fields)


def shape(get_all: Callable[[str], list[str]]) -> Shape:
    """What `process_request`'s verdict on a request depends on, but for the key."""
    return tuple(tuple(get_all(name)) for name in JUDGED)


def plain_shape(fields: dict[str, list[str]]) -> Shape:
    """`shape` of a plain head, spelled out: the same tuples for the same values."""
    get = fields.get
    return (tuple(get("connection", NONE)), tuple(get("upgrade", NONE)),
            tuple(get("sec-websocket-version", NONE)), tuple(get("origin", NONE)),
            tuple(get("sec-websocket-protocol", NONE)),
            tuple(get("sec-websocket-extensions", NONE)))


def remember(request: Request) -> None:
    """The library has accepted `request`: requests of its shape are judged here from now on."""
    if request.method == "GET" and request.protocol == "HTTP/1.1" \
            and len(accepted) < MAX_SHAPES:
        accepted[shape(request.headers.get_all)] = None


def known_accept(head: PlainHead) -> bytes | None:
    """The `Sec-WebSocket-Accept` value for `head` if the library has accepted its shape and
    its key passes the library's check; None: ask the library."""
    fields = head.fields
    if plain_shape(fields) not in accepted:
        return None
    keys = fields.get("sec-websocket-key")
    if keys is None or len(keys) != 1:
        return None
    return checked_accept(keys[0].encode())


def cut(head: bytes) -> tuple[Cut, bytes, bytes] | None:
    """`head` without the values of its first `KEY_LINE` and `ID_LINE` and where they were
    (-1: no request ID), then those values; None: no `KEY_LINE`, the head is only read."""
    k = head.find(KEY_LINE)
    if k < 0:
        return None
    k += len(KEY_LINE)
    k_end = head.find(b"\r\n", k)
    r = head.find(ID_LINE)
    if r < 0:
        return (head[:k] + head[k_end:], k, -1), head[k:k_end], b""
    r += len(ID_LINE)
    r_end = head.find(b"\r\n", r)
    if r < k:
        return ((head[:r] + head[r_end:k] + head[k_end:], k - (r_end - r), r),
                head[k:k_end], head[r:r_end])
    return ((head[:k] + head[k_end:r] + head[r_end:], k, r - (k_end - k)),
            head[k:k_end], head[r:r_end])


def known_head(parts: tuple[Cut, bytes, bytes]) -> tuple[PlainHead, bytes] | None:
    """For a head's `cut`: what was read of the head remembered by `remember_head` that it
    equals but for its key and request ID, and its accept key, if its key passes the
    library's check and its request ID is plain; None: read the head."""
    read = heads.get(parts[0])
    if read is None or (parts[2] and ID_VALUE.fullmatch(parts[2]) is None):
        return None
    accept = checked_accept(parts[1])
    return None if accept is None else (read, accept)


def remember_head(kept: Cut, read: PlainHead) -> None:
    """The head whose `cut` is `kept` was read as `read` and answered the quick way
    (`known_accept`): heads that equal it but for the key and request ID are answered from
    now on without being read (module docstring)."""
    if len(heads) >= MAX_HEADS:
        del heads[next(iter(heads))]
    heads[kept] = read


def checked_accept(key: bytes) -> bytes | None:
    """The accept key for `key` if it passes the library's check: what the library's check
    calls, base64.b64decode(key, validate=True), is this strict decode, of 16 bytes. None:
    it does not."""
    try:
        if len(binascii.a2b_base64(key, strict_mode=True)) != 16:
            return None
    except binascii.Error:
        return None
    return accept_key(key)


def accept_key(key: bytes) -> bytes:
    """RFC 6455 4.2.2: the base64 SHA-1 of the key and the protocol's GUID."""
    return binascii.b2a_base64(hashlib.sha1(key + GUID).digest(), newline=False)
