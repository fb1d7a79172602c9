"""A private network for partition tests: a network namespace joined to this one by a veth pair,
and a partition that makes packets vanish on it (no reset, no ICMP, no error to anyone).

The test's own addresses only: 10.231.X.1 on this side, 10.231.X.2 inside, X a /24 no
interface here uses. Needs root and `ip` (iproute2); without them the tests are skipped.

How the partition is made: this kernel has no `tc netem` (no sch_netem) and there is no
iptables. `ip route add blackhole ADDR` was tried first: a connection already open then hangs
(its packets are discarded), but a new `connect()` fails at once with EINVAL (a locally
generated packet on a blackhole route is refused by the route lookup), which is not what a
partition looks like. So `cut()` instead gives each end a permanent neighbour (ARP) entry for
the other with a MAC address nobody has: every frame still leaves, and the far end discards
it as addressed to someone else. Open connections hang, a new connect hangs until its own
timeout, nothing errors. `heal()` removes the two entries; ARP finds the real addresses again.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ticker.redis.embedded import find_redis_server

CLONE_NEWNET = 0x40000000
NOBODY_MAC = "02:00:00:00:00:01"  # locally administered, on no interface
NETNS_DIR = Path("/var/run/netns")


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    command = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
    return done.stdout


def available() -> str | None:
    """Why this machine cannot run the partition tests, or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` (iproute2)"
    return None


def sweep_stale() -> None:
    """Remove namespaces an earlier run left when it was killed (named after its pid)."""
    for name in ip("netns", "list", check=False).split():
        found = re.fullmatch(r"tkp(\d+)x[0-9a-f]+", name)
        if found and not Path(f"/proc/{found.group(1)}").exists():
            ip("netns", "del", name, check=False)


def free_subnet() -> int:
    """A /24 of 10.231.0.0/16 that no address or route here is in."""
    used = ip("-4", "addr") + ip("-4", "route")
    taken = {int(x) for x in re.findall(r"10\.231\.(\d+)\.", used)}
    for third in range(10 + os.getpid() % 200, 255):
        if third not in taken:
            return third
    for third in range(1, 255):
        if third not in taken:
            return third
    raise RuntimeError("no free 10.231.X.0/24")


class Netns:
    """A namespace `name` with a veth pair: `host` (here) and `inside` are the two addresses."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.name = f"tkp{os.getpid()}x{tag}"
        self.outer, self.inner = f"tkh{tag}", f"tkn{tag}"
        third = free_subnet()
        self.host = f"10.231.{third}.1"
        self.inside = f"10.231.{third}.2"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.is_cut = False

    def create(self) -> Netns:
        ip("netns", "add", self.name)
        try:
            ip("link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
            ip("link", "set", self.inner, "netns", self.name)
            ip("addr", "add", f"{self.host}/24", "dev", self.outer)
            ip("link", "set", self.outer, "up")
            ip("addr", "add", f"{self.inside}/24", "dev", self.inner, netns=self.name)
            ip("link", "set", self.inner, "up", netns=self.name)
            ip("link", "set", "lo", "up", netns=self.name)
        except Exception:
            self.destroy()
            raise
        return self

    def popen(self, argv: Sequence[str], **options: object) -> subprocess.Popen[bytes]:
        """Start a process inside the namespace; it is stopped by `destroy()`."""
        process = subprocess.Popen(["ip", "netns", "exec", self.name, *argv],  # type: ignore[call-overload]
                                   **options)
        self.processes.append(process)
        return process

    def cut(self) -> None:
        """The partition: every packet between the two sides vanishes (module docstring)."""
        ip("neigh", "replace", self.inside, "lladdr", NOBODY_MAC, "nud", "permanent",
           "dev", self.outer)
        ip("neigh", "replace", self.host, "lladdr", NOBODY_MAC, "nud", "permanent",
           "dev", self.inner, netns=self.name)
        self.is_cut = True

    def heal(self) -> None:
        ip("neigh", "del", self.inside, "dev", self.outer, check=False)
        ip("neigh", "del", self.host, "dev", self.inner, netns=self.name, check=False)
        self.is_cut = False

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """This thread inside the namespace for the block: a socket made in it stays there.
        No await inside: the event loop's thread is the one that moves."""
        libc = ctypes.CDLL(None, use_errno=True)
        with open("/proc/thread-self/ns/net", "rb") as home, \
                open(NETNS_DIR / self.name, "rb") as there:
            if libc.setns(there.fileno(), CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into " + self.name)
            try:
                yield
            finally:
                if libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back home")

    def socket_inside(self) -> socket.socket:
        """A TCP socket of the namespace (non-blocking), for a client that lives there."""
        with self.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock

    def destroy(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        ip("netns", "del", self.name, check=False)  # its end of the veth goes, and so ours
        ip("link", "del", self.outer, check=False)


@pytest.fixture
def netns() -> Iterator[Netns]:
    reason = available()
    # Not a skip: the test command runs as root (scripts/setup.sh installs iproute2), and a
    # fault test that quietly does not run proves nothing.
    assert reason is None, f"the network fault tests cannot run here: {reason}"
    sweep_stale()
    space = Netns().create()
    try:
        yield space
    finally:
        space.destroy()


def redis_inside(space: Netns, directory: Path, *extra: str) -> tuple[str, str]:
    """A redis-server inside the namespace, listening on its veth address and on a Unix socket
    (which no partition reaches: the test's own path to it). Returns (tcp URL, unix URL)."""
    sock = directory / "redis.sock"
    space.popen([find_redis_server(), "--bind", space.inside, "--port", "6379",
                 "--unixsocket", str(sock), "--unixsocketperm", "700", "--save", "",
                 "--protected-mode", "no", "--dir", str(directory), "--daemonize", "no",
                 "--loglevel", "warning", *extra],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(0.5)
            probe.connect(str(sock))
            probe.sendall(b"PING\r\n")
            if probe.recv(16).startswith(b"+PONG"):
                return f"redis://{space.inside}:6379/0", f"unix://{sock}?db=0"
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start in the namespace")
        time.sleep(0.05)
