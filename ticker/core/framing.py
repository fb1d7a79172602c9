"""How a message travels: a websocket frame, or a Server-Sent Event. Pure.

Frames are built once per channel and batch and written byte-for-byte to every subscriber:
server-to-client websocket frames are unmasked, so the same bytes are valid on every socket.
An SSE stream is an HTTP/1.1 response in chunked transfer coding, so its events are written
as chunks, also built once (`sse_chunk`) for every SSE reader.
"""

from __future__ import annotations

from websockets.frames import Frame, Opcode

OP_TEXT = Opcode.TEXT.value
OP_PING = Opcode.PING.value


def frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A complete, unmasked, unfragmented websocket frame carrying `payload`, encoded once
    and written as it is to every subscriber (websockets.broadcast() does the same)."""
    return Frame(Opcode(opcode), payload).serialize(mask=False)


PING_FRAME = frame(b"", OP_PING)


def sse_event(payload: bytes, cursor: str | None) -> bytes:
    """One Server-Sent Event carrying `payload`; its id is the cursor (for Last-Event-ID).

    The payload is compact JSON, which never contains a raw newline, so one `data:` line
    holds it.
    """
    if cursor is None:
        return b"data: " + payload + b"\n\n"
    return b"id: " + cursor.encode("ascii") + b"\ndata: " + payload + b"\n\n"


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of an HTTP/1.1 chunked body (RFC 9112 7.1); never empty, since an
    empty chunk ends the body."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


def unchunk(data: bytes) -> bytes:
    """What one `chunk` carries (for a stream whose server does the chunking itself)."""
    return data[data.index(b"\r\n") + 2:-2]


def sse_chunk(payload: bytes, cursor: str | None) -> bytes:
    """`sse_event` as one chunk: what the hub writes to an SSE reader."""
    return chunk(sse_event(payload, cursor))


# A comment line: the browser ignores it; proxies see traffic, and a reader that vanished
# leaves it unacknowledged (TICKER_CLIENT_TIMEOUT).
SSE_HEARTBEAT = chunk(b": keepalive\n\n")
LAST_CHUNK = b"0\r\n\r\n"  # the end of a chunked body
