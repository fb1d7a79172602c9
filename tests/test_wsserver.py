"""The pure helpers of the websocket endpoint (`ticker.transport.websocket`); the endpoint itself is
tested over real sockets in tests/e2e (test_rfc6455, test_hostile_ws, test_ws_upgrade)."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from tests.e2e.rawws import client_frame
from ticker.transport.websocket import short_reason, wire_size


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536, 70000])
def test_wire_size_is_what_a_client_frame_takes(n: int) -> None:
    data = client_frame(0x1, b"x" * n)
    conn = ServerProtocol(state=OPEN, max_size=None)
    conn.receive_data(data)
    (frame,) = conn.events_received()
    assert isinstance(frame, Frame) and frame.opcode is Opcode.TEXT
    assert wire_size(frame) == len(data)


def test_short_reason_fits_a_control_frame_without_splitting_a_character() -> None:
    assert short_reason("restart") == "restart"
    assert short_reason("x" * 500) == "x" * 120
    cut = short_reason("a" + "é" * 70)  # 141 bytes: the cut falls inside an "é"
    assert len(cut.encode()) <= 120 and cut.startswith("aé") and cut.endswith("é")
