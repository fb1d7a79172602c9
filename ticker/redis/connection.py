"""Connecting to Redis however it is deployed: one URL (plus a cluster switch) in, a client out.

- `redis://[[user]:password@]host:6379/0`: one Redis (or a proxy in front of one);
- `rediss://host:6380/0?ssl_ca_certs=/path/ca.pem`: the same over TLS
  (`ssl_cert_reqs=none` skips the certificate check);
- `unix:///run/redis.sock?db=0`: a Unix socket;
- `redis+sentinel://[[user]:password@]h1:26379,h2:26379/mymaster[/db]`: Sentinel; the
  client asks the sentinels for the master and follows failovers; `rediss+sentinel://`
  uses TLS to the sentinels and the master;
- `redis://node:7000` with `TICKER_REDIS_CLUSTER=1`: Redis Cluster; any node, the others
  are discovered.

Every client gets the same contract, bounded so that a Redis that stops answering (a
network partition: packets vanish, no reset) is noticed within seconds, never hangs a request
(docs/reliability.md, "Partition between a node and Redis"):

- a reply is awaited `TICKER_REDIS_TIMEOUT` (2 s) beyond the longest wait a command of ours
  asks for (`block_ms`: the reader's XREAD BLOCK, `TICKER_READ_BLOCK_MS`, 1 s; or WAIT for
  replicas, `TICKER_REDIS_WAIT_TIMEOUT`, when `TICKER_REDIS_WAIT_REPLICAS` is set): 3 s by
  default. redis-py has one socket timeout per connection, for every command, so the
  longest wait is counted in;
- a connect is given `TICKER_REDIS_TIMEOUT`;
- a command whose connection broke (a Redis restart closed a pooled one) is retried once, at
  once, on a new connection; a command that timed out is not retried: its Redis is not
  answering, and a retried XADD could be written twice. (redis-py's default of ten retries
  with backoff would hold each request for seconds.) The reader has its own backoff;
- over TCP, keepalive probes an idle connection after 5 s (1 s apart, 3 of them), and
  `TCP_USER_TIMEOUT` (the reply timeout plus 1 s) makes the kernel drop a connection whose
  data stays unacknowledged that long: a command given up on during a partition is not
  delivered when the network heals (without it the kernel retransmits it for minutes, and an
  XADD answered 503 would be published later).

For Sentinel, `password` in the URL is the master's; `?sentinel_password=` authenticates to the
sentinels. redis-py asks the sentinels for the master only when it opens a connection, so a
process would keep using the old master (still accepting writes until Sentinel demotes it,
about ten seconds later: writes Redis then drops) through its pooled connections.
`follow_failover`, called every second by the runtime, asks the sentinels; on a change the
idle connections close at once, and each busy one (the reader's blocking XREAD) as soon as
its command ends (`FollowingSentinelPool`), so every command after it goes to the new master.

A cluster client is returned typed as `Redis`: it offers every command we use, and key names
(`ticker.redis.keys.Keys`) keep multi-key commands within one slot.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as BrokenConnection
from redis.exceptions import RedisError

from ticker.core.errors import ConfigError

log = logging.getLogger("ticker.redis")

SENTINEL_PORT = 26379
FIELD = "TICKER_REDIS_URL"
SENTINEL_OPTIONS = frozenset({"sentinel_password", "sentinel_username", "ssl_ca_certs",
                              "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile"})


COMMAND_TIMEOUT = 2.0  # seconds (TICKER_REDIS_TIMEOUT): a connect, or a reply beyond the BLOCK
BLOCK_MS = 1000  # TICKER_READ_BLOCK_MS's default: the longest wait a command asks for
KEEPALIVE = (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 1), ("TCP_KEEPCNT", 3))


def reply_timeout(timeout: float = COMMAND_TIMEOUT, block_ms: int = BLOCK_MS) -> float:
    """Seconds a command's reply is awaited: the longest wait asked for, then `timeout`."""
    return timeout + block_ms / 1000


def tcp_options(reply: float) -> dict[int, int]:
    """Keepalive and TCP_USER_TIMEOUT for a TCP connection (module docstring); options the
    platform lacks are left out."""
    options = {getattr(socket, name): value for name, value in KEEPALIVE
               if hasattr(socket, name)}
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        options[socket.TCP_USER_TIMEOUT] = int((reply + 1) * 1000)
    return options


def client_options(max_connections: int, timeout: float = COMMAND_TIMEOUT,
                   block_ms: int = BLOCK_MS, tcp: bool = True) -> dict[str, Any]:
    """The connection settings every deployment shares (see the module docstring)."""
    reply = reply_timeout(timeout, block_ms)
    options: dict[str, Any] = {
        "socket_timeout": reply,
        "socket_connect_timeout": timeout,
        "health_check_interval": 15,
        "retry": Retry(NoBackoff(), 1, supported_errors=(BrokenConnection,)),
        "max_connections": max_connections,
    }
    if tcp:
        options["socket_keepalive"] = True
        options["socket_keepalive_options"] = tcp_options(reply)
    return options


def connect(url: str, *, cluster: bool = False, max_connections: int = 64,
            timeout: float = COMMAND_TIMEOUT, block_ms: int = BLOCK_MS) -> Redis:
    """A client for `url` (module docstring): `timeout` is TICKER_REDIS_TIMEOUT, `block_ms`
    the longest wait its commands ask for (`Settings.redis_block_ms`). Nothing is contacted
    until the first command."""
    scheme = url.split("://", 1)[0].lower()
    options = client_options(max_connections, timeout, block_ms, tcp=scheme != "unix")
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        if cluster:
            raise ConfigError("a Sentinel URL cannot be a cluster", field="TICKER_REDIS_CLUSTER")
        return sentinel_client(url, options)
    if cluster:
        if scheme not in ("redis", "rediss"):
            raise ConfigError("a cluster needs a redis:// or rediss:// node URL", field=FIELD)
        options.pop("health_check_interval")
        # RedisCluster offers the command API we use; Keys keeps multi-key commands in a slot.
        return cast(Redis, RedisCluster.from_url(url, **options))
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"unsupported Redis URL scheme {scheme!r}", field=FIELD)
    return Redis.from_url(url, **options)


class FollowingSentinelPool(SentinelConnectionPool):
    """A connection to a former master is closed when it comes back to the pool, so the
    command after it reconnects to the current one (redis-py's async pool keeps it)."""

    async def release(self, connection: Any) -> None:
        address = (getattr(connection, "host", None), getattr(connection, "port", None))
        if self.master_address is not None and address != tuple(self.master_address):
            await connection.disconnect()
        await super().release(connection)


class SentinelRedis(Redis):
    """The master's client; closing it also closes its connections to the sentinels."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel_manager is not None:
            for node in self.sentinel_manager.sentinels:
                await node.aclose()


def parse_sentinel_url(url: str) -> dict[str, Any]:
    """`redis+sentinel://[[user]:password@]h1:p1,h2:p2/service[/db][?options]` -> parts.

    Returns hosts [(host, port)], service, db, username, password, tls, options.
    """
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    hosts: list[tuple[str, int]] = []
    for raw in hostlist.split(","):
        raw = raw.strip()
        if not raw:
            continue
        if raw.startswith("["):  # [v6]:port
            host, _, rest = raw[1:].partition("]")
            port_text = rest.lstrip(":")
        else:
            host, _, port_text = raw.partition(":")
        try:
            port = int(port_text) if port_text else SENTINEL_PORT
        except ValueError:
            raise ConfigError(f"sentinel {raw!r}: the port is not a number", field=FIELD) from None
        if not host or not 0 < port < 65536:
            raise ConfigError(f"sentinel {raw!r} is not host:port", field=FIELD)
        hosts.append((host, port))
    if not hosts:
        raise ConfigError("a Sentinel URL names at least one sentinel host:port", field=FIELD)
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ConfigError("a Sentinel URL ends in /<master name>[/<db>]", field=FIELD)
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise ConfigError(f"database {path[1]!r} is not a number", field=FIELD)
        db = int(path[1])
    username, password = None, None
    if userinfo:
        user, sep, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    options = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(options) - SENTINEL_OPTIONS
    if unknown:
        raise ConfigError(f"unknown Sentinel URL option(s): {', '.join(sorted(unknown))}",
                          field=FIELD)
    return {
        "hosts": hosts, "service": unquote(path[0]), "db": db, "username": username,
        "password": password, "tls": parts.scheme.lower().startswith("rediss"),
        "options": options,
    }


def sentinel_client(url: str, options: dict[str, Any]) -> Redis:
    spec = parse_sentinel_url(url)
    extra = dict(spec["options"])
    tls: dict[str, Any] = {}
    if spec["tls"]:
        tls = {"ssl": True, **{k: v for k, v in extra.items() if k.startswith("ssl_")}}
    # One quick try per sentinel: there are several, and they are asked every second.
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": 1, "socket_connect_timeout": 1, "retry": Retry(NoBackoff(), 0), **tls,
    }
    if extra.get("sentinel_password"):
        sentinel_kwargs["password"] = extra["sentinel_password"]
    if extra.get("sentinel_username"):
        sentinel_kwargs["username"] = extra["sentinel_username"]
    sentinel = Sentinel(spec["hosts"], sentinel_kwargs=sentinel_kwargs)
    master_kwargs: dict[str, Any] = {**options, **tls, "db": spec["db"]}
    if spec["password"] is not None:
        master_kwargs["password"] = spec["password"]
    if spec["username"] is not None:
        master_kwargs["username"] = spec["username"]
    client = sentinel.master_for(spec["service"], redis_class=SentinelRedis,
                                 connection_pool_class=FollowingSentinelPool, **master_kwargs)
    client.sentinel_manager = sentinel
    return cast(Redis, client)


async def follow_failover(client: Redis) -> bool:
    """Sentinel only: ask the sentinels for the master; True when it changed (idle
    connections are closed then, busy ones when their command ends: see the module
    docstring). Unreachable sentinels are not an error here (the next command says so)."""
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return False
    before = pool.master_address
    try:
        async with asyncio.timeout(1.0):  # the caller runs every second
            # (It closes the idle connections itself on a change.)
            now = await pool.get_master_address()  # type: ignore[no-untyped-call]
    except (RedisError, OSError, TimeoutError) as exc:
        log.debug("sentinels not answering (%s)", exc)
        return False
    if before is None or now == before:
        return False
    log.warning("Sentinel failover: the master is now %s:%s (was %s:%s); reconnecting",
                *now, *before)
    return True
