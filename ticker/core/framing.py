"""How a message travels: a websocket frame, or a Server-Sent Event. Pure.

Frames are built once per channel and batch and written byte-for-byte to every subscriber:
server-to-client websocket frames are unmasked, so the same bytes are valid on every socket.
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


