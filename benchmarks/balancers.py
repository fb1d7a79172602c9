"""Balancers for the fan-out benchmark: nginx (the compose balancer) and HAProxy in TCP mode.

Each runs in front of one or more ticker nodes on loopback and is measured like a server:
CPU seconds and RSS summed over its processes, next to the kernel's socket memory.

- **nginx** runs ``deploy/nginx.conf`` itself, rewritten for this box only where it must be:
  upstreams and listen address, files in the run's temporary directory, and the file limit.
  One process may hold at most ``nofile`` descriptors here (a hard limit root cannot raise)
  and a proxied reader holds two (client and upstream), so the worker count is raised until
  the readers fit (``worker_processes auto`` would give one per core: 2 here, ~9,500 readers
  each). Readers' upstream connections are bound to the reader's own source address
  (``proxy_bind $remote_addr``, readers' locations only): on loopback every upstream
  connection would otherwise come from 127.0.0.1 to one port, and one (source, destination)
  pair has only ~28,000 ephemeral ports. The node then sees each reader's address, as it does
  through ``X-Forwarded-For`` in production.
- **HAProxy** in TCP mode (``mode tcp``, ``balance leastconn``): it passes bytes and never
  parses HTTP, so the node sees HAProxy's address unless HAProxy binds upstream connections
  to the client's (``source 0.0.0.0 usesrc clientip``, transparent proxying, which needs root
  and here keeps the per-address cap meaningful and the ephemeral ports spread, as above).
  One process per ``per_process`` readers, all on one port (HAProxy listens with
  ``SO_REUSEPORT``, so the kernel spreads the readers over them).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

try:
    from benchmarks import procs
except ImportError:  # run as a script
    import procs  # type: ignore[no-redef,import-not-found]

KINDS = ("nginx", "haproxy")
FD_SLACK = 500  # descriptors a balancer process needs besides its readers' two sockets


@dataclass
class Balancer:
    """A running balancer: its kind, port and processes (each the root of a process tree)."""

    kind: str
    port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.poll() is None]

    def cpu_seconds(self) -> float:
        return sum(procs.cpu_seconds(pid) for pid in self.pids())

    def rss_kib(self) -> int:
        return sum(procs.rss_kib(pid) for pid in self.pids())


def processes_for(readers: int, nofile: int) -> int:
    """Balancer processes needed for ``readers`` proxied readers (two sockets each)."""
    per_process = max(1, (nofile - FD_SLACK) // 2)
    return max(1, -(-readers * 105 // 100 // per_process))  # 5 % slack: SO_REUSEPORT hashes


def binary(kind: str) -> str:
    found = shutil.which(kind) or f"/usr/sbin/{kind}"
    if not Path(found).exists():
        raise RuntimeError(f"{kind} is not installed (scripts/setup.sh installs it with apt-get)")
    return found


def nginx_config(workdir: Path, listen: int, upstreams: Sequence[int], workers: int,
                 nofile: int) -> str:
    """deploy/nginx.conf for this box (module docstring): only what must change."""
    conf = (procs.ROOT / "deploy" / "nginx.conf").read_text()
    for kind in ("ticker", "ticker_readers"):
        block = re.search(r"upstream " + kind + r" \{\n(.*?)\n  \}", conf, re.S)
        if block is None:
            raise RuntimeError(f"deploy/nginx.conf has no upstream {kind}")
        lines = block.group(1).splitlines()
        template = next(line for line in lines if "server " in line)
        servers = [re.sub(r"server \S+", f"server 127.0.0.1:{port}", template)
                   for port in upstreams]
        rest = [line for line in lines if "server " not in line]
        conf = conf.replace(block.group(1), "\n".join(rest[:1] + servers + rest[1:]))
    conf = re.sub(r"listen \d+;", f"listen 127.0.0.1:{listen} reuseport backlog=8192;", conf)
    conf = conf.replace("access_log /dev/stdout ticker;",
                        f"access_log {workdir}/access.log ticker;")
    conf = conf.replace("worker_processes auto;", f"worker_processes {workers};")
    conf = conf.replace("worker_rlimit_nofile 65536;", f"worker_rlimit_nofile {nofile};")
    conf = re.sub(r"worker_connections \d+;", f"worker_connections {nofile - 100};", conf)
    for location in ("location /ws/ {", "location /sse/ {"):
        conf = conf.replace(location, location + "\n      proxy_bind $remote_addr;", 1)
    head = (f"daemon off;\npid {workdir}/nginx.pid;\nerror_log {workdir}/nginx-error.log warn;\n"
            + ("user root;\n" if os.geteuid() == 0 else ""))
    temp = "".join(f"  {kind}_temp_path {workdir}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return head + conf.replace("http {\n", "http {\n" + temp, 1)


def haproxy_config(workdir: Path, listen: int, upstreams: Sequence[int], maxconn: int) -> str:
    servers = "\n".join(f"  server n{i} 127.0.0.1:{port} source 0.0.0.0 usesrc clientip"
                        for i, port in enumerate(upstreams))
    return f"""global
  maxconn {maxconn}
  nbthread 1
  log stderr format short local0 warning

defaults
  mode tcp
  log global
  option dontlognull
  timeout connect 1s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h

frontend readers
  bind 127.0.0.1:{listen}
  default_backend ticker

backend ticker
  balance leastconn
{servers}
"""


def wait_listening(port: int, processes: Sequence[subprocess.Popen[bytes]], log: Path,
                   within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        for p in processes:
            if p.poll() is not None:
                raise RuntimeError(f"balancer exited with {p.returncode}: {log.read_text()[-800:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"balancer not listening after {within:.0f} s")
        time.sleep(0.05)


@contextlib.contextmanager
def balancer(kind: str, workdir: Path, upstreams: Sequence[int], readers: int,
             nofile: int) -> Iterator[Balancer]:
    """A running ``kind`` balancer on a free loopback port in front of ``upstreams``."""
    if kind not in KINDS:
        raise ValueError(f"unknown balancer {kind!r}")
    directory = workdir / f"{kind}-{time.monotonic_ns()}"
    directory.mkdir(parents=True)
    port = procs.free_port()
    count = processes_for(readers, nofile)
    log = directory / "balancer.log"
    started = Balancer(kind, port)
    with log.open("wb") as out:
        if kind == "nginx":
            conf = directory / "nginx.conf"
            conf.write_text(nginx_config(directory, port, upstreams, count, nofile))
            started.processes.append(subprocess.Popen(
                [binary("nginx"), "-p", str(directory), "-c", str(conf),
                 "-e", str(directory / "nginx-error.log")],
                stdout=out, stderr=subprocess.STDOUT, process_group=0))
        else:
            conf = directory / "haproxy.cfg"
            conf.write_text(haproxy_config(directory, port, upstreams,
                                           (nofile - FD_SLACK) // 2))
            for _ in range(count):
                started.processes.append(subprocess.Popen(
                    [binary("haproxy"), "-db", "-f", str(conf)],
                    stdout=out, stderr=subprocess.STDOUT, process_group=0))
    try:
        wait_listening(port, started.processes, log)
        yield started
    finally:
        for p in started.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in started.processes:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def socket_memory() -> dict[str, int]:
    """The kernel's TCP sockets now, machine-wide (on loopback both ends of each connection):
    how many are in use and their buffer memory in KiB (``/proc/net/sockstat``), and the
    kernel's unreclaimable slab in KiB (``/proc/meminfo`` ``SUnreclaim``), where the socket,
    file and epoll structures of an idle connection live: an idle socket has no buffers."""
    out = {"inuse": 0, "mem_kib": 0, "slab_kib": 0}
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            out["inuse"] = int(fields[fields.index("inuse") + 1])
            out["mem_kib"] = (int(fields[fields.index("mem") + 1])
                              * os.sysconf("SC_PAGE_SIZE") // 1024)
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("SUnreclaim:"):
            out["slab_kib"] = int(line.split()[1])
    return out


def skmem_kib(port: int) -> int:
    """Buffer memory of the established sockets with local port ``port`` (``ss -m``: receive
    allocated + send queued + forward-allocated): the kernel's side of those connections."""
    out = subprocess.run(["ss", "-tnmH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=False).stdout
    total = 0
    for match in re.finditer(r"skmem:\(r(\d+),rb\d+,t\d+,tb\d+,f(\d+),w(\d+)", out):
        total += sum(int(x) for x in match.groups())
    return total // 1024
