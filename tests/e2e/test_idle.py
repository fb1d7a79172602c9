"""An idle server wakes about twice a second, not twenty times (ticker.process.ticks).

Every wake-up of an idle process is CPU that a small fan-out pays for (docs/performance.md):
with 1,000 readers, uvicorn's 10 Hz loop, a 4 Hz scheduler poll and a supervisor polling its
workers 5 times a second cost more than a quarter of the deliveries. This counts the
voluntary context switches (each one a sleep that ended) of every thread of a real
`ticker serve --workers 2`: the supervisor, and each worker with its reader's XREAD BLOCK of
one second and its aligned once-a-second jobs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.fleet import listening_sockets, ticker, wait_for, worker_pids

WINDOW = 6.0


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of `pid` so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


async def test_an_idle_server_wakes_about_twice_a_second(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    with ticker(tmp_path, "idle", redis_url=redis_url, key_prefix=prefix, workers=2,
                read_block_ms=1000) as n:
        await wait_for(lambda: listening_sockets(n.port) == 2, "both workers listening")
        pids = {"supervisor": n.proc.pid,
                **{f"worker {i}": pid for i, pid in worker_pids(n).items()}}
        await asyncio.sleep(2.0)  # past startup
        before = {name: wakeups(pid) for name, pid in pids.items()}
        await asyncio.sleep(WINDOW)
        rates = {name: (wakeups(pid) - before[name]) / WINDOW for name, pid in pids.items()}
    assert rates["supervisor"] < 0.5, rates  # it sleeps until a worker exits or a signal
    for name in ("worker 0", "worker 1"):
        # The reader's BLOCK and one aligned tick: 2/s (uvicorn's own loop alone was 10/s).
        assert rates[name] < 4.0, rates
