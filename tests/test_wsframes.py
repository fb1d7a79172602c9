"""The server's websocket wire format, fed exact bytes (RFC 6455)."""

from __future__ import annotations

import base64
import os
import struct

import pytest

from ticker.wsframes import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameReader,
    HandshakeError,
    ProtocolError,
    close_code,
    handshake,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example


def request(path: str = "/ws/en", **headers: str) -> bytes:
    base = {"Host": "example.com", "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13"}
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in base.items() if v]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True,
                 rsv: int = 0) -> bytes:
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


def test_handshake_accepts_and_computes_the_rfc_example_key() -> None:
    up = handshake(request("/ws/en?cursor=1-0", Origin="https://news.example"))
    assert (up.path, up.query, up.origin, up.host) == (
        "/ws/en", "cursor=1-0", "https://news.example", "example.com")
    response = up.accept()
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert b"Sec-WebSocket-Extensions" not in response  # no deflate, ever


def test_handshake_ignores_offered_extensions_and_joins_repeated_headers() -> None:
    up = handshake(request(Sec_WebSocket_Extensions="permessage-deflate",
                           Connection="keep-alive, Upgrade"))
    assert b"deflate" not in up.accept()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (request().replace(b"GET ", b"POST "), 400),
        (request().replace(b"HTTP/1.1", b"HTTP/1.0"), 400),
        (request(Upgrade="h2c"), 426),
        (request(Connection="keep-alive"), 400),
        (request(Sec_WebSocket_Version="8"), 426),
        (request(Sec_WebSocket_Key=""), 400),
        (request(Sec_WebSocket_Key="not base64!"), 400),
        (request(Sec_WebSocket_Key=base64.b64encode(b"short").decode()), 400),
        (b"GET /ws/en HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (request() + b"x" * 9000, 400),
    ],
)
def test_bad_handshakes_get_a_clear_status(raw: bytes, status: int) -> None:
    with pytest.raises(HandshakeError) as caught:
        handshake(raw)
    assert caught.value.status == status
    response = caught.value.response()
    assert response.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Connection: close" in response


def test_version_refusal_names_the_supported_version() -> None:
    with pytest.raises(HandshakeError) as caught:
        handshake(request(Sec_WebSocket_Version="8"))
    assert b"Sec-WebSocket-Version: 13\r\n" in caught.value.response()


def test_reader_returns_whole_messages_across_arbitrary_splits() -> None:
    data = (client_frame(OP_TEXT, b"hello") + client_frame(OP_PING, b"p")
            + client_frame(OP_TEXT, "é".encode() * 100) + client_frame(OP_PONG, b""))
    for step in (1, 2, 3, 7, len(data)):
        reader = FrameReader(1024)
        got = []
        for i in range(0, len(data), step):
            got += reader.feed(data[i:i + step])
        assert got == [(OP_TEXT, b"hello"), (OP_PING, b"p"),
                       (OP_TEXT, "é".encode() * 100), (OP_PONG, b"")]
        assert reader.buffer == b""


def test_fragmented_messages_are_reassembled_with_control_frames_between() -> None:
    reader = FrameReader(1024)
    got = reader.feed(client_frame(OP_TEXT, b"ab", fin=False)
                      + client_frame(OP_PING, b"!")
                      + client_frame(0x0, b"cd", fin=False)
                      + client_frame(0x0, b"ef"))
    assert got == [(OP_PING, b"!"), (OP_TEXT, b"abcdef")]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (client_frame(OP_TEXT, b"x", mask=False), 1002),
        (client_frame(OP_TEXT, b"x", rsv=0x40), 1002),
        (client_frame(0x3, b"x"), 1002),
        (client_frame(0xB, b"x"), 1002),
        (client_frame(OP_PING, b"x" * 126), 1002),
        (client_frame(OP_PING, b"x", fin=False), 1002),
        (client_frame(0x0, b"x"), 1002),
        (client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_TEXT, b"b"), 1002),
        (client_frame(OP_TEXT, b"x" * 1025), 1009),
        (client_frame(OP_TEXT, b"x" * 700, fin=False) + client_frame(0x0, b"x" * 700), 1009),
        (client_frame(OP_TEXT, b"\xff\xfe"), 1007),
        (client_frame(OP_TEXT, b"x" * 70000), 1009),
    ],
)
def test_protocol_violations_name_their_close_code(data: bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        FrameReader(1024).feed(data)
    assert caught.value.code == code


def test_a_huge_declared_length_is_refused_before_it_is_buffered() -> None:
    header = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 40)
    with pytest.raises(ProtocolError) as caught:
        FrameReader(1024).feed(header)
    assert caught.value.code == 1009


def test_binary_and_close_pass_through_for_the_server_to_answer() -> None:
    got = FrameReader().feed(client_frame(OP_BINARY, b"\x00")
                             + client_frame(OP_CLOSE, struct.pack("!H", 1001) + b"bye"))
    assert got == [(OP_BINARY, b"\x00"), (OP_CLOSE, b"\x03\xe9bye")]
    assert close_code(got[1][1]) == 1001 and close_code(b"") is None
