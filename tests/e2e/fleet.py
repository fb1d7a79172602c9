"""Real processes and clients for the scale-out tests: `ticker serve` processes, nginx, a TCP
relay, and a reader that behaves like the widget (keeps its cursor, reconnects with it, and
records every event it is given).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import httpx
import websockets
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, free_port
from tests.e2e.sseclient import SSEStream

ROOT = Path(__file__).resolve().parents[2]
TICKER = [sys.executable, "-m", "ticker"]


def ticker_env(**settings: object) -> dict[str, str]:
    """The environment of a ticker process: ours without TICKER_*, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKER_")}
    env.update({"TICKER_" + k.upper(): str(v) for k, v in settings.items()})
    return env


@dataclass
class Proc:
    """A `ticker serve` process (one node: one process, or a supervisor and its workers)."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, cursor: str | None = None, channel: str = "en") -> str:
        url = f"ws://127.0.0.1:{self.port}/ws/{channel}"
        return url + (f"?cursor={cursor}" if cursor else "")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = TIMEOUT * 2) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"ticker exited:\n{self.text()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.http + "/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"ticker not ready:\n{self.text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT * 2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def ticker(directory: Path, name: str, *, port: int | None = None, ready: bool = True,
           **settings: object) -> Iterator[Proc]:
    """Run `ticker serve` with `settings` as TICKER_* variables; stop it on the way out."""
    port = port or free_port()
    log = directory / f"{name}.log"
    values: dict[str, object] = {"port": port, "channels": "en", "log_level": "info",
                                 "read_block_ms": 200, "data_dir": directory / f"{name}-data"}
    values.update(settings)
    with open(log, "ab") as out:
        proc = subprocess.Popen([*TICKER, "serve"], stdout=out, stderr=subprocess.STDOUT,
                                env=ticker_env(**values), cwd=directory)
    handle = Proc(proc, port, log)
    try:
        if ready:
            handle.wait_ready()
        yield handle
    finally:
        handle.stop()


def listening_sockets(port: int) -> int:
    """How many sockets listen on `port` (Linux /proc/net/tcp*): one per ready worker."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def worker_pids(proc: Proc) -> dict[int, int]:
    """worker index -> pid of its latest process, from the supervisor's log."""
    found: dict[int, int] = {}
    for index, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", proc.text()):
        found[int(index)] = int(pid)
    return found


# -- nginx ----------------------------------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(found).exists(), "nginx is installed by scripts/setup.sh (Debian package)"
    return found


def nginx_config(directory: Path, listen: int, upstreams: Sequence[int]) -> Path:
    """deploy/nginx.conf made to run here: upstreams and listen on loopback, files in tmp."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    names = sorted(set(re.findall(r"server (ticker-\d+):8000", conf)))
    assert len(names) == len(upstreams), names
    for name, port in zip(names, upstreams, strict=True):
        conf = conf.replace(f"server {name}:8000", f"server 127.0.0.1:{port}")
    conf = re.sub(r"listen \d+;", f"listen 127.0.0.1:{listen};", conf)
    conf = conf.replace("access_log /dev/stdout", f"access_log {directory}/access.log")
    # Small for a test: one worker, few connections, no rlimit change.
    conf = conf.replace("worker_processes auto;", "worker_processes 1;")
    conf = conf.replace("worker_rlimit_nofile 65536;", "")
    conf = conf.replace("worker_connections 16384;", "worker_connections 1024;")
    head = f"daemon off;\npid {directory}/nginx.pid;\nerror_log {directory}/error.log warn;\n"
    if os.geteuid() == 0:
        head += "user root;\n"  # so its workers may use the temp dirs below, in our tmp
    temp = "".join(f"  {kind}_temp_path {directory}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = head + conf.replace("http {\n", "http {\n" + temp, 1)
    path = directory / "nginx.conf"
    path.write_text(conf)
    return path


@contextlib.contextmanager
def nginx(directory: Path, upstreams: Sequence[int]) -> Iterator[int]:
    """A real nginx on a free loopback port in front of `upstreams`; yields its port."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = nginx_config(directory, port, upstreams)
    proc = subprocess.Popen([nginx_binary(), "-p", str(directory), "-c", str(conf),
                             "-e", str(directory / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert proc.poll() is None, (proc.stderr.read() if proc.stderr else b"").decode()
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
        yield port
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


# -- a pausable TCP relay -------------------------------------------------------------------


class Relay:
    """A real TCP relay between a client and a server; `hold()` stops server->client bytes
    (what a node sees when its Redis replies are late), `release()` lets them through."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.Server | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Relay:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def hold(self) -> None:
        self.flowing.clear()

    def release(self) -> None:
        self.flowing.set()

    async def _chunks(self, reader: asyncio.StreamReader, gated: bool) -> AsyncIterator[bytes]:
        while data := await reader.read(65536):
            if gated:
                await self.flowing.wait()
            yield data

    @staticmethod
    async def _send(chunks: AsyncIterator[bytes], writer: asyncio.StreamWriter) -> None:
        try:
            async for data in chunks:
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    gated: bool) -> None:
        await self._send(self._chunks(reader, gated), writer)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        for task in (asyncio.create_task(self._pipe(reader, up_writer, False)),
                     asyncio.create_task(self._pipe(up_reader, writer, True))):
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class SlowLink(Relay):
    """A TCP relay that stands for a slow, lossy network between a node and Redis, in user space
    (this kernel has no `tc netem`): every chunk read from one side is written to the other
    `delay` seconds later, in each direction; a `loss` fraction of the chunks is held back a
    further `stall` seconds, as a lost segment waits for its retransmission, and, as in TCP,
    the bytes behind a held chunk wait behind it: order is never changed, nothing is dropped."""

    def __init__(self, target_port: int, *, delay: float = 0.3, loss: float = 0.05,
                 stall: tuple[float, float] = (0.2, 0.4), seed: int = 18) -> None:
        super().__init__(target_port)
        self.delay, self.loss, self.stall = delay, loss, stall
        self.random = random.Random(seed)  # the same losses on every run
        self.chunks = 0
        self.stalled = 0

    async def _read(self, source: asyncio.StreamReader,
                    queue: asyncio.Queue[tuple[float, bytes]]) -> None:
        loop = asyncio.get_running_loop()
        due = 0.0
        try:
            while data := await source.read(65536):
                self.chunks += 1
                extra = 0.0
                if self.random.random() < self.loss:
                    self.stalled += 1
                    extra = self.random.uniform(*self.stall)
                # Nothing overtakes a held chunk (TCP delivers bytes in order).
                due = max(due, loop.time() + self.delay + extra)
                queue.put_nowait((due, data))
        except (ConnectionError, OSError):
            pass
        finally:
            queue.put_nowait((due, b""))  # the end, after everything before it

    async def _due(self, queue: asyncio.Queue[tuple[float, bytes]]) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await queue.get()
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            if not data:
                return
            yield data

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    gated: bool) -> None:
        """One direction: chunks read at once, each written when due (never gated)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        await asyncio.gather(self._read(reader, queue), self._send(self._due(queue), writer))


# -- a reader like the widget ----------------------------------------------------------------


@dataclass
class Reader:
    """Holds a websocket like ticker.js does: keeps the cursor of the last event, reconnects
    with `?cursor=` after any close, and records every event cursor it is given."""

    url: Callable[[str | None], str]
    origin: str | None = None
    cursors: list[str] = field(default_factory=list)  # every event, in the order received
    first_cursor: str | None = None  # the cursor of the first snapshot
    cursor: str | None = None
    resets: int = 0  # snapshots after the first: a resume that lost continuity
    missed: list[int] = field(default_factory=list)
    stale: list[bool] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)
    connections: int = 0
    frames_broken: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    # A connected socket to speak over (one made in another network namespace), else the URL's.
    sock: Callable[[], Awaitable[socket.socket]] | None = None

    def start(self) -> Reader:
        self.task = asyncio.create_task(self.run())
        return self

    def take(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "snapshot":
            if self.first_cursor is None:
                self.first_cursor = msg["cursor"]
            else:
                self.resets += 1
            self.cursor = msg["cursor"]
        elif kind == "events":
            events = msg["events"]
            if events and events[-1]["cursor"] != msg["cursor"]:
                self.frames_broken.append(json.dumps(msg)[:200])
            self.cursors += [e["cursor"] for e in events]
            if "missed" in msg:
                self.missed.append(msg["missed"])
            self.cursor = msg["cursor"]
        elif kind == "status":
            self.stale.append(bool(msg["stale"]))

    async def run(self) -> None:
        headers = {"Origin": self.origin} if self.origin else None
        while True:
            code: int | None = None
            try:
                sock = await self.sock() if self.sock is not None else None
                async with websockets.connect(self.url(self.cursor), open_timeout=TIMEOUT,
                                              additional_headers=headers, sock=sock,
                                              ping_interval=None) as ws:
                    self.connections += 1
                    async for raw in ws:
                        self.take(json.loads(raw))
                    code = ws.close_code
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
            except (OSError, websockets.InvalidHandshake, TimeoutError):
                code = -1  # could not connect (the node is gone): try again, like the widget
            self.closes.append(code)
            await asyncio.sleep(random.uniform(0.02, 0.1))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


@dataclass
class SSEReader(Reader):
    """The same record over Server-Sent Events, reconnecting as `EventSource` does: after any
    end of the stream, with `Last-Event-ID` (the cursor it has). `url(None)` is the stream."""

    async def run(self) -> None:
        headers = {"Origin": self.origin} if self.origin else {}
        transport = SocketTransport(self.sock) if self.sock is not None else None
        async with httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT, read=None),
                                     transport=transport) as http:
            while True:
                code: int | None = None
                resume = {"Last-Event-ID": self.cursor} if self.cursor else {}
                try:
                    async with http.stream("GET", self.url(None),
                                           headers={**headers, **resume}) as response:
                        code = response.status_code
                        if code == 200:
                            self.connections += 1
                            stream = SSEStream(response)
                            while True:
                                self.take((await stream.message(timeout=3600))[1])
                except EOFError:
                    pass  # the server ended the stream: reconnect
                except (httpx.HTTPError, OSError, TimeoutError):
                    code = -1
                self.closes.append(code)
                await asyncio.sleep(random.uniform(0.02, 0.1))


class SocketTransport(httpx.AsyncBaseTransport):
    """httpx over connected sockets made elsewhere (in another network namespace): httpcore's
    connection pool with a network backend of our own (its public extension point)."""

    def __init__(self, sock: Callable[[], Awaitable[socket.socket]]) -> None:
        self.pool = httpcore.AsyncConnectionPool(network_backend=SocketBackend(sock))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        answer = await self.pool.handle_async_request(httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw, content=request.stream,
            extensions=request.extensions))
        return httpx.Response(status_code=answer.status, headers=answer.headers,
                              stream=AnswerStream(answer), extensions=answer.extensions)

    async def aclose(self) -> None:
        await self.pool.aclose()


class AnswerStream(httpx.AsyncByteStream):
    def __init__(self, answer: httpcore.Response) -> None:
        self.answer = answer

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self.answer.aiter_stream():
            yield part

    async def aclose(self) -> None:
        await self.answer.aclose()


class SocketBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, sock: Callable[[], Awaitable[socket.socket]]) -> None:
        self.sock = sock

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        reader, writer = await asyncio.open_connection(sock=await self.sock())
        return SocketStream(reader, writer)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("SocketBackend speaks TCP only")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SocketStream(httpcore.AsyncNetworkStream):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self.reader.read(max_bytes)
        except TimeoutError:
            raise httpcore.ReadTimeout("no bytes within the read timeout") from None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.writer.write(buffer)
        try:
            async with asyncio.timeout(timeout):
                await self.writer.drain()
        except TimeoutError:
            raise httpcore.WriteTimeout("the write did not drain in time") from None

    async def aclose(self) -> None:
        self.writer.close()

    def get_extra_info(self, info: str) -> Any:
        return self.writer.get_extra_info(info)


async def start_readers(n: int, url: Callable[[str | None], str],
                        origin: str | None = None, kind: type[Reader] = Reader) -> list[Reader]:
    readers = [kind(url, origin).start() for _ in range(n)]
    await wait_for(lambda: all(r.first_cursor is not None for r in readers), "first snapshots")
    return readers


async def stop_readers(readers: Sequence[Reader]) -> None:
    for reader in readers:
        await reader.stop()


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll `predicate` until it holds, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def stream_ids(redis: Redis, key: str, after: str | None) -> list[str]:
    """Every entry ID of the stream after `after` (exclusive), oldest first."""
    start = f"({after}" if after and after != "0-0" else "-"
    rows: Any = await redis.xrange(key, start, "+")
    return [i.decode() if isinstance(i, bytes) else str(i) for i, _ in rows]


def first_difference(got: Sequence[str], want: Sequence[str]) -> int:
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return i
    return min(len(got), len(want))


async def check_exact(readers: Sequence[Reader], redis: Redis, key: str) -> None:
    """Every reader got exactly the stream after its first snapshot: no gap, no duplicate,
    no reordering, no reset, and every frame's cursor is its last event's."""
    for n, reader in enumerate(readers):
        expected = await stream_ids(redis, key, reader.first_cursor)
        assert reader.frames_broken == [], reader.frames_broken
        assert reader.resets == 0, f"reader {n} got a reset snapshot"
        assert len(reader.cursors) == len(set(reader.cursors)), f"reader {n}: duplicates"
        assert reader.cursors == expected, (
            f"reader {n}: {len(reader.cursors)} events, expected {len(expected)}; first "
            f"difference at {first_difference(reader.cursors, expected)}")


async def publish_burst(redis: Redis, key: str, count: int, *, batch: int = 10,
                        pause: float = 0.01, label: str = "burst",
                        during: Callable[[int], Any] | None = None) -> list[str]:
    """XADD `count` items (as a newsroom service would), `batch` per pipeline; `during(sent)`
    runs after each batch (awaited if it returns a coroutine). Returns the IDs."""
    ids: list[str] = []
    for start in range(0, count, batch):
        pipe = redis.pipeline(transaction=False)
        for n in range(start, min(count, start + batch)):
            pipe.xadd(key, {"text": f"{label} item {n}", "by": "wire"})
        ids += [i.decode() if isinstance(i, bytes) else str(i) for i in await pipe.execute()]
        if during is not None:
            result = during(min(count, start + batch))
            if asyncio.iscoroutine(result):
                await result
        await asyncio.sleep(pause)
    return ids
