"""A raw websocket client over a plain socket, for tests that must control reading.

Nothing reads the socket unless the test asks for a message, so a stalled client really is
stalled: the kernel buffers fill and the server sees a peer that does not read.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any


class RawClient:
    """Connects with a tiny receive buffer and reads only when told to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, port: int, path: str, rcvbuf: int = 4096,
                      headers: str = "") -> RawClient:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        client = cls(sock)
        await client.loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        await client.loop.sock_sendall(sock, (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n{headers}"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        while b"\r\n\r\n" not in client.buffer:
            await client._fill()
        end = client.buffer.index(b"\r\n\r\n") + 4
        head = bytes(client.buffer[:end])
        del client.buffer[:end]
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))
        return client

    async def _fill(self) -> None:
        chunk = await self.loop.sock_recv(self.sock, 65536)
        if not chunk:
            raise ConnectionError("connection closed")
        self.buffer += chunk

    async def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def frame(self) -> tuple[int, bytes]:
        b0, b1 = await self._exactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self._exactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self._exactly(8))
        return b0 & 0x0F, await self._exactly(n)

    async def message(self) -> dict[str, Any]:
        """The next text message (pings are skipped)."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x1:
                value: dict[str, Any] = json.loads(payload)
                return value
            if opcode == 0x8:
                raise ConnectionError(f"closed {payload[:2].hex()}")

    def close(self) -> None:
        self.sock.close()


def client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True,
                 rsv: int = 0) -> bytes:
    """A client frame as given, malformed if asked (unmasked, reserved bits): the library's
    encoder refuses to make the frames the hostile tests need."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    if n < 126:
        length = bytes([(0x80 if mask else 0) | n])
    elif n < 65536:
        length = bytes([(0x80 if mask else 0) | 126]) + struct.pack("!H", n)
    else:
        length = bytes([(0x80 if mask else 0) | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + length + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + length + key + masked
