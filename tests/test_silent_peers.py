"""The silent-peer sweep (`ticker.ops.uvicorn_adapter.SilentPeers`): one timer a second for
every connection that has not sent a byte yet, armed on the loop its peers connect on.

Over real sockets it is tested in tests/e2e/test_hostile_ws.py; here, what a socket test does
not reach: a sweep armed on a loop that has since stopped (a test's, or a worker's before a
fork) must not leave the next loop's peers without one.
"""

from __future__ import annotations

import asyncio

import pytest

from ticker.ops.uvicorn_adapter import SilentPeers
from ticker.transport import reader


class Peer:
    """What the sweep needs of a connection: `silent()`, which closes it."""

    def __init__(self) -> None:
        self.silenced = 0

    def silent(self) -> None:
        self.silenced += 1


def test_a_new_loop_gets_its_own_sweep_and_the_stopped_loops_peers_are_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reader, "HANDSHAKE_TIMEOUT", 0.2)
    peers = SilentPeers()
    gone, silent, talking = Peer(), Peer(), Peer()

    async def connect(*new: Peer, wait: float) -> asyncio.AbstractEventLoop:
        for peer in new:
            peers.add(peer)  # type: ignore[arg-type]
        await asyncio.sleep(wait)
        return asyncio.get_running_loop()

    # A loop that stops before its sweep ever runs: the sweep's timer goes with it.
    first = asyncio.run(connect(gone, wait=0.01))
    assert peers.loop is first and not first.is_running() and gone in peers.since

    async def second_loop() -> None:
        await connect(silent, talking, wait=0.05)
        assert peers.loop is asyncio.get_running_loop()
        assert set(peers.since) == {silent, talking}  # the stopped loop's peer is forgotten
        peers.discard(talking)  # its first bytes came (TickerHttp routes it)
        # The sweep runs on the whole second: 0.2 s of silence is seen within two of them.
        for _ in range(50):
            if silent.silenced:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.2)  # one more sweep: nothing is closed twice

    asyncio.run(second_loop())
    assert (gone.silenced, silent.silenced, talking.silenced) == (0, 1, 0)
    assert peers.since == {} and peers.loop is None  # nobody left: the sweep stopped
