"""Process plumbing for the fan-out benchmark: Redis, servers under test, load-gen workers.

Also the two server-side meters: CPU seconds (the scheduler's run time of every thread,
``/proc/PID/task/TID/schedstat``, nanoseconds; ``utime + stime`` from ``/proc/PID/stat``, in
10 ms ticks, where schedstat is missing) and resident memory (``VmRSS`` from
``/proc/PID/status``), each summed over the server's process tree so a server that forks
workers is charged for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_WS = HERE / "baselines" / "node_ws"  # the node baseline: server.js and its npm lock
# What raw-items's snapshot carries: ticker's TICKER_MAX_ITEMS default (the items on air).
RAW_SNAPSHOT_ITEMS = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (children inherit it); return it.

    Raising the hard limit itself needs CAP_SYS_RESOURCE, which this machine's root lacks:
    the hard limit (20000 here) is what one process can hold.
    """
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(hard)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def source_address(k: int) -> str:
    """The k-th client source address: 127.0.0.2, 127.0.0.3, ... (each has its own ports)."""
    return f"127.0.{k // 250}.{2 + k % 250}"


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from "state" (field 3) on


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def _run_ns(pid: int) -> int | None:
    """Nanoseconds ``pid``'s threads have run (user + system), from schedstat; None if absent."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process tree rooted at ``pid``.

    A thread that exits between two readings takes its time with it; the servers measured
    here do not start threads during a phase.
    """
    total = 0.0
    for p in tree(pid):
        ns = _run_ns(p)
        if ns is not None:
            total += ns / 1e9
            continue
        with contextlib.suppress(OSError):
            f = _stat_fields(p)
            total += (int(f[11]) + int(f[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    return total


def user_system_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the process tree rooted at ``pid`` (``utime``,
    ``stime``: 10 ms ticks, so for phases of seconds): where a server's time goes, its own
    code or the kernel's (accept, epoll, send; on loopback also the receiving side of what
    it sends)."""
    user = system = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            f = _stat_fields(p)
            user += int(f[11])
            system += int(f[12])
    return user / CLK_TCK, system / CLK_TCK


def rss_kib(pid: int) -> int:
    """Resident set size in KiB of the process tree rooted at ``pid``."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def redis_version(binary: str) -> str:
    """``redis-server --version`` of ``binary`` (one line)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


@contextlib.contextmanager
def redis_server(binary: str, workdir: Path) -> Iterator[int]:
    """A private ``redis-server`` on a free port, no persistence; yields the port."""
    port = free_port()
    log = (workdir / "redis.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start, see {workdir / 'redis.log'}")
            time.sleep(0.05)
        yield port
    finally:
        stop(proc)
        log.close()


def server_command(name: str, port: int, redis_url: str, ping: float, nprocs: int = 1) -> list[str]:
    """The command line of a server under test (``nprocs`` processes sharing the port)."""
    if name == "ticker":
        return [
            sys.executable,
            "-m",
            "ticker",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--redis-url",
            redis_url,
            "--channels",
            "en",
            "--workers",
            str(nprocs),
        ]
    if nprocs != 1 and name not in ("raw", "raw-items", "node"):
        raise ValueError(f"{name} runs as one process only")
    baseline = ["--port", str(port), "--redis-url", redis_url]
    if name == "naive":
        return [
            sys.executable,
            str(HERE / "baselines" / "naive_app.py"),
            *baseline,
            "--ping-interval",
            str(ping),
        ]
    if name in ("raw", "raw-items"):  # raw-items: a snapshot with the items, as ticker's
        items = ["--snapshot-items", str(RAW_SNAPSHOT_ITEMS)] if name == "raw-items" else []
        return [sys.executable, str(HERE / "baselines" / "raw_floor.py"), *baseline,
                "--procs", str(nprocs), *items]
    if name == "node":  # nprocs > 1: Node's cluster module, a primary and nprocs workers
        pings = ["--ping-interval", str(ping)] if ping else []
        return ["node", str(NODE_WS / "server.js"), *baseline, "--procs", str(nprocs), *pings]
    raise ValueError(f"unknown server {name!r}")


def node_ws_ready() -> None:
    """Make sure the node baseline's dependencies are installed exactly as its lock says.

    ``npm ci`` (which installs from ``package-lock.json`` only) when ``node_modules`` is
    missing or older than the lock; raises RuntimeError if ``node`` or ``npm`` is missing or
    the install fails.
    """
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise RuntimeError(
                f"the node baseline needs {tool!r} on PATH (Node.js 20 or later with npm)"
            )
    lock = NODE_WS / "package-lock.json"
    modules = NODE_WS / "node_modules"
    if modules.is_dir() and modules.stat().st_mtime >= lock.stat().st_mtime:
        return
    cmd = ["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(NODE_WS)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}{out.stderr}".rstrip()
        )
    modules.touch()  # what the check above reads: installed from this lock


def start_server(
    name: str, port: int, redis_url: str, ping: float, log: Path, nprocs: int = 1,
    extra_env: dict[str, str] | None = None, tree: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server under test. `tree`: a source tree of ticker to run instead of this one
    (an A/B of two trees in one sitting); it is the server's working directory, which
    `python -m` puts first on sys.path."""
    if name == "node":
        node_ws_ready()
    env = dict(os.environ, TICKER_LOG_LEVEL="warning", **(extra_env or {}))
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    if ping:
        env["TICKER_PING_INTERVAL"] = str(ping)
    with log.open("wb") as out:
        return subprocess.Popen(
            server_command(name, port, redis_url, ping, nprocs),
            cwd=tree or ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own process group (stopped as one), but the benchmark's session: with the
            # kernel's autogroup scheduling a new session would be one scheduling entity, so
            # N server processes would share one process's CPU share against the load-gen.
            process_group=0,
        )


async def wait_healthy(port: int, proc: subprocess.Popen[bytes], within: float) -> None:
    """Poll ``GET /healthz`` until it answers 200; raise if the server exits or times out."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            async with asyncio.timeout(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(
                    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )
                status = await reader.readline()
                writer.close()
                if b" 200 " in status:
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"server not healthy after {within:.0f} s")


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0, group: bool = False) -> None:
    """SIGTERM (to its process group if ``group``), then SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return

    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    send(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()


class Workers:
    """Load-gen worker processes (``loadgen.py``), driven by line-delimited JSON."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(
        self, port: int, clients: int, sources: list[list[str]], path: str, concurrency: int = 64,
        protocol: str = "ws",
    ) -> None:
        """One worker per entry of ``sources``, binding its clients to those addresses;
        ``protocol`` ``ws`` (websockets) or ``sse`` (Server-Sent Events)."""
        n = len(sources)
        extra = [] if protocol == "ws" else ["--protocol", protocol]
        for i, source in enumerate(sources):
            share = clients // n + (1 if i < clients % n else 0)
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(HERE / "loadgen.py"),
                    "--port",
                    str(port),
                    "--clients",
                    str(share),
                    "--source",
                    ",".join(source),
                    "--path",
                    path,
                    "--concurrency",
                    str(concurrency),
                    *extra,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=1 << 26,
                )
            )

    def cpu_seconds(self) -> float:
        """CPU seconds the workers have used so far."""
        return sum(cpu_seconds(p.pid) for p in self.procs)

    async def call(self, cmd: dict[str, Any], within: float) -> list[dict[str, Any]]:
        """Send ``cmd`` to every worker; their replies, in worker order."""
        return await self.call_each([cmd] * len(self.procs), within)

    async def call_each(self, cmds: list[dict[str, Any]], within: float) -> list[dict[str, Any]]:
        """Send ``cmds[i]`` to worker ``i``; their replies, in worker order."""

        async def one(p: asyncio.subprocess.Process, cmd: dict[str, Any]) -> dict[str, Any]:
            line = (json.dumps(cmd) + "\n").encode()
            if p.stdin is None or p.stdout is None:
                raise RuntimeError("worker pipes missing")
            p.stdin.write(line)
            await p.stdin.drain()
            reply = await p.stdout.readline()
            if not reply:
                raise RuntimeError(f"load-gen worker {p.pid} died")
            return dict(json.loads(reply))

        async with asyncio.timeout(within):
            return await asyncio.gather(*(one(p, c) for p, c in zip(self.procs, cmds, strict=True)))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.call({"cmd": "close"}, 10)
        for p in self.procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
            await p.wait()
        self.procs = []
