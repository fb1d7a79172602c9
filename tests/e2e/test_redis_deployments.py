"""Every supported Redis deployment, for real: a Unix socket, TLS (rediss://), Sentinel with a
failover, and a three-node Redis Cluster. Each serves the whole pipeline: a token, an HTTP
publish, a raw XADD, websocket readers, reach counts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
import websockets
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.crc import key_slot

from tests.conftest import TIMEOUT, free_port, make_settings, running_server
from tests.e2e.deskkit import Desk, add_user
from tests.e2e.fleet import (
    check_exact,
    publish_burst,
    start_readers,
    stop_readers,
    stream_ids,
    wait_for,
)
from tests.e2e.receiver import receiver
from ticker.process.settings import Settings
from ticker.redis.connection import connect as redis_client
from ticker.redis.connection import follow_failover
from ticker.redis.embedded import find_redis_server
from ticker.redis.keys import Keys
from ticker.redis.tokens import Tokens


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def launch(binary: str, *args: str, ping: dict[str, Any] | None = None,
           port: int = 0) -> Proc:
    """Start a redis-server (or sentinel) and wait until it answers PING."""
    process = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    client = sync_redis.Redis(**(ping or {"host": "127.0.0.1", "port": port}),
                              socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                err = process.stderr.read().decode() if process.stderr else ""
                raise AssertionError(f"{binary} {args} exited: {err}")
            with contextlib.suppress(sync_redis.RedisError, OSError):
                if client.ping():
                    return Proc(process, port)
            time.sleep(0.05)
        process.kill()
        raise AssertionError(f"{binary} did not answer")
    finally:
        client.close()


@contextlib.contextmanager
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()
            if proc.process.stderr is not None:
                proc.process.stderr.close()


async def exercise(settings: Settings, client: Redis, channels: tuple[str, ...] = ("en",)
                   ) -> None:
    """The whole pipeline on one deployment: token, HTTP publish, raw XADD, readers, reach."""
    keys = Keys.for_settings(settings)
    token = await Tokens(client, keys).create("deploy-test")
    async with running_server(settings) as server, \
            httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        for channel in channels:
            readers = await start_readers(3, lambda c, ch=channel: server.ws(ch, c))
            try:
                r = await http.post(f"/api/channels/{channel}/items",
                                    json={"text": f"Over HTTP on {channel}"},
                                    headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 201, r.text
                item = r.json()["id"]
                ids = await publish_burst(client, keys.stream(channel), 20, batch=5)
                await wait_for(lambda ids=ids, readers=readers: all(  # type: ignore[misc]
                    r.cursor == ids[-1] for r in readers), f"readers of {channel}")
                await check_exact(readers, client, keys.stream(channel))
                reach = await wait_reach(http, token, channel, item, 3)
                assert reach == 3
            finally:
                await stop_readers(readers)
    assert await Tokens(client, keys).revoke("deploy-test")  # a MULTI over two keys


async def wait_reach(http: httpx.AsyncClient, token: str, channel: str, item: str,
                     want: int) -> int:
    deadline = time.monotonic() + TIMEOUT
    while True:
        r = await http.get(f"/api/channels/{channel}/items/{item}/reach",
                           headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        if r.json()["reach"] >= want or time.monotonic() > deadline:
            return int(r.json()["reach"])
        await asyncio.sleep(0.1)


# -- a Unix socket ----------------------------------------------------------------------------


async def test_unix_socket(prefix: str) -> None:
    directory = Path(tempfile.mkdtemp(prefix="tkr"))  # short: socket paths max out at 107
    sock = directory / "redis.sock"
    with procs() as started:
        started.append(launch(find_redis_server(), "--port", "0", "--unixsocket", str(sock),
                              "--unixsocketperm", "700", "--save", "", "--dir", str(directory),
                              ping={"unix_socket_path": str(sock)}))
        settings = make_settings(f"unix://{sock}?db=0", prefix, channels="en")
        client = redis_client(settings.redis_url)
        try:
            await exercise(settings, client)
        finally:
            await client.aclose()
    shutil.rmtree(directory, ignore_errors=True)


# -- TLS ----------------------------------------------------------------------------------------


def tls_redis_server() -> str:
    """A redis-server built with TLS (Debian's is; some pip-shipped ones are not)."""
    candidates = [c for c in dict.fromkeys([shutil.which("redis-server"),
                                            "/usr/bin/redis-server"]) if c]
    for binary in candidates:
        probe = subprocess.run([binary, "--port", "0", "--tls-port", "0"], capture_output=True,
                               text=True, timeout=TIMEOUT)
        if "Bad directive" not in probe.stdout + probe.stderr:
            return binary
    raise AssertionError(f"no redis-server with TLS among {candidates}: scripts/setup.sh "
                         "installs Debian's redis-server")


def make_certs(directory: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True,
                       timeout=TIMEOUT * 3)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "2", "-subj", "/CN=ticker test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=127.0.0.1")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")


async def test_tls_with_certificate_verification(tmp_path: Path, prefix: str) -> None:
    make_certs(tmp_path)
    port = free_port()
    ca = tmp_path / "ca.crt"
    with procs() as started:
        started.append(launch(
            tls_redis_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(tmp_path / "server.crt"), "--tls-key-file",
            str(tmp_path / "server.key"), "--tls-ca-cert-file", str(ca), "--tls-auth-clients",
            "no", "--save", "", "--dir", str(tmp_path),
            ping={"host": "127.0.0.1", "port": port, "ssl": True, "ssl_ca_certs": str(ca)}))
        settings = make_settings(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}", prefix,
                                 channels="en")
        client = redis_client(settings.redis_url)
        try:
            await exercise(settings, client)
            # A client that does not trust the CA is refused: the check is real.
            untrusting = redis_client(f"rediss://127.0.0.1:{port}/0")
            with pytest.raises(sync_redis.ConnectionError):
                await untrusting.ping()
            await untrusting.aclose()
        finally:
            await client.aclose()


# -- Sentinel ---------------------------------------------------------------------------------


@dataclass
class SentinelSetup:
    """A primary, its replica (synced) and one sentinel that sees both, on loopback."""

    master: Proc
    master_port: int
    replica_port: int
    sentinel: sync_redis.Redis
    url: str  # redis+sentinel:// for the node
    deadline: float  # TIMEOUT after the start; the tests' later waits count from it


@contextlib.asynccontextmanager
async def sentinel_setup(tmp_path: Path, down_after_ms: int) -> AsyncIterator[SentinelSetup]:
    """Start the three, wait until the replica is synced and the sentinel sees it; stop them
    after the test."""
    binary = find_redis_server()
    master_port, replica_port, sentinel_port = free_port(), free_port(), free_port()
    common = ("--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
    with procs() as started:
        master = launch(binary, "--port", str(master_port), "--dir", str(tmp_path), *common,
                        port=master_port)
        started.append(master)
        (tmp_path / "replica").mkdir()
        started.append(launch(binary, "--port", str(replica_port), "--replicaof", "127.0.0.1",
                              str(master_port), "--dir", str(tmp_path / "replica"), *common,
                              port=replica_port))
        replica = sync_redis.Redis(port=replica_port)
        try:
            deadline = time.monotonic() + TIMEOUT
            while replica.info("replication")["master_link_status"] != "up":
                assert time.monotonic() < deadline, "replica never synced"
                await asyncio.sleep(0.05)
            conf = tmp_path / "sentinel.conf"
            conf.write_text(f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                            f"sentinel monitor mymaster 127.0.0.1 {master_port} 1\n"
                            f"sentinel down-after-milliseconds mymaster {down_after_ms}\n"
                            "sentinel failover-timeout mymaster 10000\n")
            started.append(launch(binary, str(conf), "--sentinel", port=sentinel_port))
            sentinel = sync_redis.Redis(port=sentinel_port, decode_responses=True)
            try:
                while not sentinel.execute_command("SENTINEL", "REPLICAS", "mymaster"):
                    assert time.monotonic() < deadline + TIMEOUT, \
                        "sentinel never saw the replica"
                    await asyncio.sleep(0.05)
                yield SentinelSetup(master, master_port, replica_port, sentinel,
                                    f"redis+sentinel://127.0.0.1:{sentinel_port}/mymaster/0",
                                    deadline)
            finally:
                sentinel.close()
        finally:
            replica.close()


async def test_sentinel_follows_a_failover_and_loses_nothing(
    tmp_path: Path, prefix: str
) -> None:
    async with sentinel_setup(tmp_path, down_after_ms=2000) as setup:
        sentinel, replica_port, deadline = setup.sentinel, setup.replica_port, setup.deadline
        settings = make_settings(setup.url, prefix, channels="en")
        client = redis_client(setup.url)
        keys = Keys.for_settings(settings)
        try:
            await exercise(settings, client)
            token = await Tokens(client, keys).create("failover")
            async with running_server(settings) as server, \
                    httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
                readers = await start_readers(5, lambda c: server.ws("en", c))
                try:
                    before = await publish_burst(client, keys.stream("en"), 10, batch=5)
                    await wait_for(lambda: all(r.cursor == before[-1] for r in readers),
                                   "readers before the failover")
                    assert sentinel.execute_command("SENTINEL", "FAILOVER", "mymaster")
                    while int(sentinel.execute_command(
                            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")[1]) \
                            != replica_port:
                        assert time.monotonic() < deadline + TIMEOUT * 3, "no failover"
                        await asyncio.sleep(0.05)
                    # Sentinel demotes the old master ~10 s later; until then it takes writes
                    # that Redis later drops. The node moves its connections within a second
                    # (redisconn.follow_failover), long before that.
                    pool: Any = server.runtime.redis.connection_pool
                    await wait_for(lambda: pool.master_address == ("127.0.0.1", replica_port),
                                   "the node follows the new master")
                    old = sync_redis.Redis(port=setup.master_port, decode_responses=True)
                    assert old.info("replication")["role"] == "master"  # not demoted yet
                    old.close()
                    assert await follow_failover(client)  # the test's own client too
                    # Publishing reaches the new master (a retry may meet the old one).
                    published: list[str] = []
                    while len(published) < 5:
                        r = await http.post("/api/channels/en/items",
                                            json={"text": f"after failover {len(published)}"},
                                            headers={"Authorization": f"Bearer {token}"})
                        assert r.status_code in (201, 503), r.text
                        if r.status_code == 201:
                            published.append(r.json()["cursor"])
                        else:
                            await asyncio.sleep(0.2)
                        assert time.monotonic() < deadline + TIMEOUT * 5
                    await wait_for(lambda: all(r.cursor == published[-1] for r in readers),
                                   "readers after the failover", TIMEOUT * 2)
                    new_master = redis_client(f"redis://127.0.0.1:{replica_port}/0")
                    try:
                        await check_exact(readers, new_master, keys.stream("en"))
                    finally:
                        await new_master.aclose()
                finally:
                    await stop_readers(readers)
        finally:
            await client.aclose()


# -- Redis Cluster ------------------------------------------------------------------------------


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port + 10000)) != 0:
                    return port


@contextlib.contextmanager
def redis_cluster(directory: Path, nodes: int = 3) -> Iterator[list[int]]:
    """A real Redis Cluster of `nodes` masters on loopback, every slot covered."""
    ports = [cluster_port() for _ in range(nodes)]
    with procs() as started:
        for port in ports:
            started.append(launch(
                find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "3000", "--save", "", "--appendonly", "no",
                "--dir", str(directory), port=port))
        clients = [sync_redis.Redis(port=p, decode_responses=True) for p in ports]
        try:
            share = 16384 // nodes
            for i, client in enumerate(clients):
                last = 16383 if i == nodes - 1 else (i + 1) * share - 1
                client.execute_command("CLUSTER", "ADDSLOTS", *range(i * share, last + 1))
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
            for port in ports[1:]:
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)
            deadline = time.monotonic() + TIMEOUT * 2
            while not all("cluster_state:ok" in c.execute_command("CLUSTER", "INFO")
                          and c.cluster("info")["cluster_known_nodes"] == str(nodes)
                          for c in clients):
                assert time.monotonic() < deadline, "the cluster did not form"
                time.sleep(0.1)
            yield ports
        finally:
            for client in clients:
                client.close()


async def test_redis_cluster_channels_hash_tagged_one_slot_each(
    tmp_path: Path, prefix: str
) -> None:
    with redis_cluster(tmp_path) as ports:
        url = f"redis://127.0.0.1:{ports[0]}/0"
        settings = make_settings(url, prefix, channels="en,ar", redis_cluster=True,
                                 read_block_ms=1000, webhook_allow="127.0.0.1")
        keys = Keys.for_settings(settings)
        # Each channel's keys share the channel's slot; the channels sit on different nodes.
        assert keys.stream("en") == f"{prefix}:stream:{{en}}"
        assert key_slot(keys.stream("en").encode()) == key_slot(b"en") \
            == key_slot(keys.reach("en").encode())
        assert key_slot(keys.stream("ar").encode()) == key_slot(b"ar")
        assert keys.tokens == f"{{{prefix}}}:tokens"  # global keys: one slot together
        assert key_slot(keys.tokens.encode()) == key_slot(keys.token_names.encode())
        client = redis_client(url, cluster=True)
        try:
            await exercise(settings, client, channels=("en", "ar"))
            async with running_server(settings) as server:
                assert len(server.runtime.reader.groups) == 2  # one XREAD loop per slot
                readers = await start_readers(2, lambda c: server.ws("en", c))
                try:
                    # `ar`'s loop sits in a 1 s BLOCK; `en`'s events must not wait for it.
                    started = time.monotonic()
                    [item] = await publish_burst(client, keys.stream("en"), 1, batch=1)
                    await wait_for(lambda: all(r.cursor == item for r in readers), "en item")
                    assert time.monotonic() - started < 0.5
                finally:
                    await stop_readers(readers)
                # Webhooks: their keys share the prefix's slot, so the fan-out transaction
                # and the leases work on a cluster too.
                async with receiver() as rec:
                    subs = server.runtime.newsroom.subscriptions
                    _, rec.secret = await subs.add(rec.url, ["ar"], [], [], "test")
                    await asyncio.sleep(1.5)
                    [item] = await publish_burst(client, keys.stream("ar"), 1, batch=1)
                    (hit,) = await rec.wait_for(1)
                    assert hit.verified and hit.body["item"]["id"] == item
        finally:
            await client.aclose()


async def test_a_killed_primary_during_a_burst_loses_no_publish_a_replica_acknowledged(
    tmp_path: Path, prefix: str
) -> None:
    """TICKER_REDIS_WAIT_REPLICAS=1: each publish waits (at most 500 ms) for the replica.
    The primary is killed with -9 mid-burst and Sentinel promotes the replica: every publish
    answered 201 with `replicas: 1` is on the new primary and reached every reader, once,
    in order."""
    async with sentinel_setup(tmp_path, down_after_ms=1000) as setup:
        master, replica_port, deadline = setup.master, setup.replica_port, setup.deadline
        settings = make_settings(setup.url, prefix, channels="en", redis_wait_replicas=1)
        client = redis_client(setup.url)
        keys = Keys.for_settings(settings)
        durable: list[str] = []
        outcomes: list[str] = []
        try:
            token = await Tokens(client, keys).create("failover-kill")
            async with running_server(settings) as server, \
                    httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
                readers = await start_readers(3, lambda c: server.ws("en", c))
                killed_at: float | None = None
                after_failover = 0
                n = 0
                try:
                    while after_failover < 10:
                        assert time.monotonic() < deadline + TIMEOUT * 6, outcomes[-20:]
                        n += 1
                        try:
                            r = await http.post(
                                "/api/channels/en/items", json={"text": f"burst {n}"},
                                headers={"Authorization": f"Bearer {token}"})
                        except httpx.HTTPError as exc:  # never: the node answers 503
                            raise AssertionError(f"publish {n} hung or failed: {exc}") from exc
                        assert r.status_code in (201, 503), r.text
                        if r.status_code == 201:
                            body = r.json()
                            outcomes.append(f"201/{body['replicas']}")
                            if body["replicas"] >= 1:
                                durable.append(body["id"])
                            if killed_at is not None:
                                after_failover += 1
                        else:
                            outcomes.append("503")
                            await asyncio.sleep(0.1)
                        if n == 30:  # mid-burst: the primary dies, no goodbye
                            os.kill(master.process.pid, signal.SIGKILL)
                            master.process.wait()
                            killed_at = time.monotonic()
                    last = (await client.xrevrange(keys.stream("en"), count=1))
                    assert last, "nothing on the new primary"
                    new_master = redis_client(f"redis://127.0.0.1:{replica_port}/0")
                    try:
                        on_new = set(await stream_ids(new_master, keys.stream("en"), None))
                        missing = [i for i in durable if i not in on_new]
                        assert not missing, f"acknowledged by a replica, then lost: {missing}"
                        final = max(on_new, key=lambda i: tuple(map(int, i.split("-"))))
                        await wait_for(lambda: all(r.cursor == final for r in readers),
                                       "readers on the new primary", TIMEOUT * 2)
                        for reader in readers:
                            assert len(reader.cursors) == len(set(reader.cursors))
                            got = [c for c in reader.cursors if c in set(durable)]
                            assert got == durable  # every acknowledged one, once, in order
                    finally:
                        await new_master.aclose()
                finally:
                    await stop_readers(readers)
            print(f"\nfailover during a burst: {len(durable)} acknowledged by the replica, "
                  f"outcomes {' '.join(outcomes)}")
        finally:
            await client.aclose()


async def test_writes_no_replica_had_in_time_stand_and_are_counted_and_logged(
    redis_url: str, redis: Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """TICKER_REDIS_WAIT_REPLICAS=1 where no replica answers (none configured, or all of
    them down): each write waits the whole TICKER_REDIS_WAIT_TIMEOUT, is not undone (readers
    have it) and is answered: the API with `replicas: 0`. Every such write, the API's and
    the desk's alike, is counted in ticker_unreplicated_writes_total and logged."""
    timeout_ms = 200
    settings = make_settings(redis_url, prefix, channels="en", redis_wait_replicas=1,
                             redis_wait_timeout=timeout_ms)
    await add_user(redis, prefix, "maria")
    token = await Tokens(redis, Keys(prefix)).create("wire")
    async with running_server(settings) as server, \
            httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        started = time.monotonic()
        r = await http.post("/api/channels/en/items", json={"text": "from the wire"},
                            headers={"Authorization": f"Bearer {token}"})
        waited = time.monotonic() - started
        assert r.status_code == 201 and r.json()["replicas"] == 0, r.text
        assert waited >= timeout_ms / 1000  # WAIT gave the replicas its whole timeout
        desk = await Desk.sign_in(server, "maria")
        try:
            (desk_item,) = await desk.publish("from the desk")
            (killed,) = await desk.publish("killed at the desk")
            assert (await desk.op(killed, "kill", reason="test")).status_code == 201
        finally:
            await desk.close()
        families = {s.name: s.value for f in text_string_to_metric_families(
            (await http.get("/metrics")).text) for s in f.samples}
        assert families["ticker_unreplicated_writes_total"] == 4  # 1 API, 3 desk
        warned = [rec.getMessage() for rec in caplog.records
                  if rec.name == "ticker.redis.store" and rec.levelname == "WARNING"]
        assert len(warned) == 4 and all("0 of 1 replicas" in m for m in warned), warned
        async with websockets.connect(server.ws("en")) as ws:  # the writes stand
            snapshot = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert [i["text"] for i in snapshot["items"]] == ["from the desk", "from the wire"]
        assert desk_item in {i["id"] for i in snapshot["items"]}
