"""`ticker serve --workers N`: N server processes on one port, and the supervisor that owns them.

Each worker is a whole server (uvicorn, the Starlette app, its own Runtime: hub, reader,
reach flusher) with its own listening socket bound to the same address with `SO_REUSEPORT`:
the kernel spreads new connections over the workers, with no lock and no thundering herd.
Every worker reads the streams itself, so every reader of every worker gets the same events
in the same order; a reader that lands on another worker resumes by cursor (docs/protocol.md).

The supervisor (the process you started):

- resolves the port (port 0 becomes a free one) and keeps it reserved with a bound,
  non-listening `SO_REUSEPORT` socket, so no other program takes it while a worker restarts;
- owns the embedded Redis when `TICKER_REDIS_URL` is empty, and stops it last;
- starts the workers (`spawn`: a fresh interpreter, nothing inherited by accident) in their
  own process group, so a terminal's Ctrl-C reaches the supervisor alone, which forwards it;
- restarts a worker that exits on its own (a crash, kill -9), at once if it had run for a
  while, with a growing delay (up to 10 s) if it keeps dying young;
- on SIGTERM or SIGINT forwards SIGTERM to every worker, which drains (readers closed with
  1012, reach counts flushed) within `TICKER_SHUTDOWN_TIMEOUT`; stragglers are killed after
  that plus a margin. A second Ctrl-C kills the workers at once.
- gives the workers a directory to share their metrics in (ticker.node.metrics), removed on exit.

Workers die with the supervisor (PR_SET_PDEATHSIG), even when it is killed with -9.
Only processes of the same user can join a `SO_REUSEPORT` group, so another user's program
cannot steal connections from the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from ticker.core.errors import ConfigError
from ticker.node.worker import Worker
from ticker.ops.logs import configure
from ticker.process.settings import Settings

log = logging.getLogger("ticker.ops.workers")

KILL_MARGIN = 5.0  # seconds after the shutdown timeout before a worker is killed
QUICK_DEATH = 10.0  # a worker that dies sooner than this is restarted with a delay
MAX_DELAY = 10.0
BACKLOG = 8192


def listen_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEPORT; listening unless `listen=False`
    (the supervisor's reservation; a worker's socket, which uvicorn makes listen once the
    app has started). Raises ConfigError naming the setting when it cannot."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve {host!r}: {exc}", field="TICKER_HOST") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.setblocking(False)
        if listen:
            sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}",
                          field="TICKER_PORT") from None
    return sock


def die_with_parent() -> None:
    """Ask Linux to send us SIGTERM when the supervisor dies (even by kill -9)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def memory_dir() -> str | None:
    """/dev/shm when it is there: while scraped, each worker rewrites its metrics snapshot
    every second, and on tmpfs that costs 27 µs of CPU instead of 180 µs on a journaling
    disk."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def worker_main(settings: Settings, index: int, shared_dir: str, parent: int) -> None:
    """One worker process: a whole server on the shared port. Runs until SIGTERM."""
    os.setpgrp()  # a terminal's Ctrl-C goes to the supervisor, which forwards SIGTERM
    die_with_parent()
    if os.getppid() != parent:
        return  # the supervisor died before we could ask to die with it
    configure(settings.log_level, settings.log_format, {"worker": index})
    from ticker.ops.server import uvicorn_config  # the heavy imports, child only
    from ticker.ops.uvicorn_adapter import TickerServer

    def _exit(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    # uvicorn re-raises the signal that stopped it; this turns that into a clean exit 0.
    signal.signal(signal.SIGTERM, _exit)
    # Bound now, listening only once the app has started (uvicorn calls listen): until then
    # the kernel gives new connections to the other workers, not to a queue nobody serves.
    sock = listen_socket(settings.host, settings.port, listen=False)
    server = TickerServer(uvicorn_config(settings, worker=Worker(index, Path(shared_dir))),
                          client_timeout=settings.client_timeout)
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        server.run(sockets=[sock])


@dataclass
class Slot:
    """One worker position: its current process and its recent history."""

    index: int
    process: BaseProcess | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float = 0.0


class Supervisor:
    """Starts, watches, restarts and stops the workers (see the module docstring)."""

    def __init__(self, settings: Settings, shared_dir: Path) -> None:
        self.settings = settings
        self.shared_dir = shared_dir
        self.context = multiprocessing.get_context("spawn")
        self.slots = [Slot(i) for i in range(settings.workers)]
        self.stopping = False
        self.forced = False

    # -- signals -------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping and signum == signal.SIGINT:
            self.forced = True  # Ctrl-C twice: do not wait for the drain
        self.stopping = True

    # -- workers -------------------------------------------------------------------------

    def start(self, slot: Slot) -> None:
        process = self.context.Process(
            target=worker_main, name=f"ticker-worker-{slot.index}",
            args=(self.settings, slot.index, str(self.shared_dir), os.getpid()),
        )
        process.start()
        slot.process = process
        slot.started = time.monotonic()
        log.info("worker %d started (pid %s)", slot.index, process.pid)

    def _exited(self, slot: Slot, process: BaseProcess) -> None:
        code = process.exitcode
        slot.process = None
        with contextlib.suppress(OSError):
            (self.shared_dir / f"worker-{slot.index}.json").unlink()
        if self.stopping:
            return
        lived = time.monotonic() - slot.started
        how = f"signal {-code}" if code is not None and code < 0 else f"code {code}"
        if lived < QUICK_DEATH:
            slot.quick_deaths += 1
        else:
            slot.quick_deaths = 0
        delay = 0.0 if slot.quick_deaths == 0 else min(MAX_DELAY, 0.5 * 2 ** slot.quick_deaths)
        slot.restart_at = time.monotonic() + delay
        log.warning("worker %d (pid %s) exited with %s after %.1f s; restarting in %.1f s",
                    slot.index, process.pid, how, lived, delay)

    def run(self) -> int:
        """Start the workers and supervise them until a signal; then stop them. Returns 0."""
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        # A signal writes a byte here (the handler runs between bytecodes, after `wait` is
        # interrupted): the loop sleeps until a worker exits, a signal arrives or a restart
        # is due, rather than waking five times a second to look (docs/performance.md).
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        previous_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            for slot in self.slots:
                self.start(slot)
            while not self.stopping:
                sentinels: list[int] = [s.process.sentinel for s in self.slots
                                        if s.process is not None]
                waiting = [s.restart_at for s in self.slots if s.process is None]
                timeout = (max(0.0, min(waiting) - time.monotonic()) if waiting else None)
                multiprocessing.connection.wait([*sentinels, wake_r], timeout=timeout)
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
                now = time.monotonic()
                for slot in self.slots:
                    if slot.process is not None and not slot.process.is_alive():
                        self._exited(slot, slot.process)
                    if slot.process is None and not self.stopping and now >= slot.restart_at:
                        self.start(slot)
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(wake_r)
            os.close(wake_w)
        return 0

    def stop(self) -> None:
        """SIGTERM every worker; wait for the drain; kill what is left."""
        self.stopping = True
        live = [s.process for s in self.slots if s.process is not None and s.process.is_alive()]
        for process in live:
            if process.pid is not None:  # (started processes always have one)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout + KILL_MARGIN
        for process in live:
            while process.is_alive() and time.monotonic() < deadline and not self.forced:
                process.join(0.1)
            if process.is_alive():
                log.warning("worker pid %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join(5)
        for slot in self.slots:
            slot.process = None


def supervise(settings: Settings) -> int:
    """`ticker serve --workers N`: reserve the port, own the Redis, run the supervisor."""
    from ticker.ops.server import redis_for_serving  # the heavy imports: not in workers

    reservation = listen_socket(settings.host, settings.port, listen=False)
    port = int(reservation.getsockname()[1])
    shared_dir = Path(tempfile.mkdtemp(prefix="ticker-metrics-", dir=memory_dir()))
    try:
        with redis_for_serving(settings.with_(port=port)) as ready:
            print(f"ticker: serving http://{ready.host}:{port}/ channels "
                  f"{', '.join(ready.channel_names)} with {ready.workers} workers "
                  f"(supervisor pid {os.getpid()})", file=sys.stderr, flush=True)
            return Supervisor(ready, shared_dir).run()
    finally:
        reservation.close()
        shutil.rmtree(shared_dir, ignore_errors=True)

