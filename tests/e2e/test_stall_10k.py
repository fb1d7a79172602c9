"""1% of 10,000 readers stall: the others' latency is unchanged, server memory is flat, and
each stalled reader, reading again, gets every item it missed in order.

The fan-out benchmark's own machinery (benchmarks/fanout.py `bench_server`, phase `stall`):
a real `ticker serve` process, 10,000 raw websocket clients spread over load-gen processes
and 127.0.0.x source addresses, a private redis-server. The server runs with bounded
per-reader buffers (`TICKER_SOCKET_SNDBUF`, `TICKER_CLIENT_BUFFER`, as docs/operations.md
advises for large fan-outs) so the stalled readers fill and are set aside within seconds;
the phase publishes padded bursts until the server's /metrics counts all 100 as blocked.
docs/benchmarks.md has the same phase's figures from a benchmark run.
"""

from __future__ import annotations

import resource
from pathlib import Path

from benchmarks import fanout, procs

CLIENTS = 10_000


async def test_one_percent_of_10k_readers_stalled(tmp_path: Path) -> None:
    nofile = procs.raise_nofile()
    assert nofile >= CLIENTS + fanout.FD_RESERVE, (
        f"RLIMIT_NOFILE hard limit {nofile}: one server process cannot hold {CLIENTS} sockets")
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == nofile
    args = fanout.parse_args([
        "--clients", str(CLIENTS), "--phases", "stall", "--stall-items", "10",
        "--interval", "0.3", "--timeout", "60",
        "--server-env", "TICKER_SOCKET_SNDBUF=8192",
        "--server-env", "TICKER_CLIENT_BUFFER=32768",
    ])
    with procs.redis_server(args.redis_server, tmp_path) as rport:
        res = await fanout.bench_server("ticker", CLIENTS, args, rport, tmp_path, 0, nofile)
    assert "error" not in res, res.get("error")
    stall = res["stall"]
    assert stall["stalled"] == CLIENTS // 100
    assert stall["blocked"] == stall["stalled"]  # every stalled reader was set aside
    before, during = stall["before"], stall["during"]
    assert before["missing"] == 0 and during["missing"] == 0  # the healthy got every item
    # Unchanged latency for the healthy 99 % (a generous margin: two shared cores, and the
    # load generator runs on them too).
    assert during["last_client_ms"] <= max(1.5 * before["last_client_ms"],
                                           before["last_client_ms"] + 50), stall
    assert during["lat_p99_ms"] <= max(1.5 * before["lat_p99_ms"],
                                       before["lat_p99_ms"] + 50), stall
    # Memory flat: once the stalled readers are set aside, more items cost them nothing.
    assert stall["rss_during_kib"] <= 2048, stall["rss_kib"]
    # Reading again, each stalled reader got every item it missed, in order, no reset.
    assert stall["exact"] == stall["stalled"] and stall["missing"] == 0
    assert stall["resets"] == 0 and stall["still_open"] == stall["stalled"]
