"""Redis URLs for every deployment, the cluster key layout, and the settings that choose them.
(The deployments themselves run for real in tests/e2e/test_redis_deployments.py.)"""

from __future__ import annotations

import socket

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ticker.core.errors import ConfigError
from ticker.process.settings import Settings
from ticker.redis.connection import (
    FollowingSentinelPool,
    SentinelRedis,
    connect,
    follow_failover,
    parse_sentinel_url,
)
from ticker.redis.keys import Keys


def test_sentinel_url_parts() -> None:
    spec = parse_sentinel_url(
        "redis+sentinel://app:s%40cret@s1:26379,s2,[::1]:26380/news-master/2"
        "?sentinel_password=sp")
    assert spec["hosts"] == [("s1", 26379), ("s2", 26379), ("::1", 26380)]
    assert spec["service"] == "news-master" and spec["db"] == 2
    assert (spec["username"], spec["password"]) == ("app", "s@cret")
    assert spec["tls"] is False and spec["options"] == {"sentinel_password": "sp"}
    assert parse_sentinel_url("rediss+sentinel://:pw@h/m")["tls"] is True
    bare = parse_sentinel_url("redis+sentinel://h:1/m")
    assert (bare["db"], bare["username"], bare["password"]) == (0, None, None)


@pytest.mark.parametrize(("url", "says"), [
    ("redis+sentinel:///mymaster", "at least one sentinel"),
    ("redis+sentinel://h:port/m", "port is not a number"),
    ("redis+sentinel://h:70000/m", "is not host:port"),
    ("redis+sentinel://h", "/<master name>"),
    ("redis+sentinel://h/m/db", "not a number"),
    ("redis+sentinel://h/m/0/extra", "/<master name>"),
    ("redis+sentinel://h/m?ssl=1&bogus=2", "bogus"),
])
def test_bad_sentinel_urls_are_named(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_sentinel_url(url)
    assert says in info.value.message and info.value.field == "TICKER_REDIS_URL"


async def test_clients_by_deployment() -> None:
    plain = connect("redis://127.0.0.1:1/0")
    assert type(plain) is Redis
    kwargs = plain.connection_pool.connection_kwargs
    # A reply 2 s beyond the 1 s BLOCK, a connect within 2 s; retried once if the connection
    # broke, never after a timeout (docs/reliability.md, partitions).
    assert kwargs["socket_timeout"] == 3.0 and kwargs["socket_connect_timeout"] == 2.0
    assert kwargs["retry"].get_retries() == 1
    retried = kwargs["retry"]._supported_errors
    assert RedisConnectionError in retried and RedisTimeoutError not in retried
    assert kwargs["socket_keepalive"] is True
    assert kwargs["socket_keepalive_options"][socket.TCP_USER_TIMEOUT] == 4000
    assert kwargs["socket_keepalive_options"][socket.TCP_KEEPIDLE] == 5
    slow = connect("redis://127.0.0.1:1/0", timeout=5.0, block_ms=200)
    assert slow.connection_pool.connection_kwargs["socket_timeout"] == 5.2
    unix = connect("unix:///tmp/nowhere.sock?db=3")
    assert unix.connection_pool.connection_kwargs["path"] == "/tmp/nowhere.sock"
    assert "socket_keepalive" not in unix.connection_pool.connection_kwargs  # TCP only
    sentinel = connect("redis+sentinel://127.0.0.1:1/m")
    assert isinstance(sentinel, SentinelRedis)
    assert isinstance(sentinel.connection_pool, FollowingSentinelPool)
    assert not await follow_failover(sentinel)  # no sentinel answers: not an error here
    assert not await follow_failover(plain)  # not Sentinel: nothing to do
    cluster = connect("redis://127.0.0.1:1/0", cluster=True)
    assert isinstance(cluster, RedisCluster)
    for client in (plain, slow, unix, sentinel, cluster):
        await client.aclose()
    with pytest.raises(ConfigError):
        connect("unix:///tmp/x.sock", cluster=True)
    with pytest.raises(ConfigError):
        connect("redis+sentinel://h/m", cluster=True)


def test_key_layout_single_redis_is_unchanged() -> None:
    keys = Keys("ticker")
    assert keys.stream("en") == "ticker:stream:en"
    assert keys.reach("en") == "ticker:reach:en"
    assert keys.tokens == "ticker:tokens" and keys.deadletter == "ticker:deadletter"


def test_key_layout_in_a_cluster() -> None:
    keys = Keys("ticker", cluster=True)
    assert keys == Keys("{ticker}", cluster=True)  # the tag is added once
    assert keys.stream("en") == "ticker:stream:{en}"
    assert keys.reach("ar") == "ticker:reach:{ar}"
    assert keys.tokens == "{ticker}:tokens"
    # A channel's keys share its slot; every global key shares one slot.
    assert key_slot(keys.stream("en").encode()) == key_slot(keys.reach("en").encode()) \
        == key_slot(b"en")
    globals_ = [keys.tokens, keys.token_names, keys.deadletter, keys.dead_mark("en", "1-0")]
    assert len({key_slot(k.encode()) for k in globals_}) == 1
    settings = Settings.load({"TICKER_REDIS_URL": "redis://n1:7000",
                              "TICKER_REDIS_CLUSTER": "1", "TICKER_KEY_PREFIX": "news"})
    assert Keys.for_settings(settings).stream("en") == "news:stream:{en}"


# -- the settings -------------------------------------------------------------------------------


def test_scale_out_settings() -> None:
    s = Settings.load({"TICKER_WORKERS": "4", "TICKER_LOG_FORMAT": "json",
                       "TICKER_SHUTDOWN_TIMEOUT": "2.5", "TICKER_REDIS_CLUSTER": "yes",
                       "TICKER_REDIS_URL": "rediss://n1:7000"})
    assert (s.workers, s.log_format, s.shutdown_timeout, s.redis_cluster) == \
        (4, "json", 2.5, True)
    d = Settings.load({})
    assert (d.workers, d.log_format, d.shutdown_timeout, d.redis_cluster) == \
        (1, "text", 10.0, False)
    for word in ("0", "false", "No", "off", ""):
        assert Settings.load({"TICKER_REDIS_CLUSTER": word}).redis_cluster is False
    url = "redis+sentinel://a:26379,b:26379/mymaster/0"
    assert Settings.load({"TICKER_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(("env", "var"), [
    ({"TICKER_WORKERS": "0"}, "TICKER_WORKERS"),
    ({"TICKER_WORKERS": "257"}, "TICKER_WORKERS"),
    ({"TICKER_WORKERS": "two"}, "TICKER_WORKERS"),
    ({"TICKER_LOG_FORMAT": "xml"}, "TICKER_LOG_FORMAT"),
    ({"TICKER_SHUTDOWN_TIMEOUT": "0"}, "TICKER_SHUTDOWN_TIMEOUT"),
    ({"TICKER_SHUTDOWN_TIMEOUT": "soon"}, "TICKER_SHUTDOWN_TIMEOUT"),
    ({"TICKER_REDIS_CLUSTER": "maybe"}, "TICKER_REDIS_CLUSTER"),
    ({"TICKER_REDIS_CLUSTER": "1"}, "TICKER_REDIS_CLUSTER"),  # no URL: nothing to cluster
    ({"TICKER_REDIS_CLUSTER": "1", "TICKER_REDIS_URL": "unix:///r.sock"},
     "TICKER_REDIS_CLUSTER"),
    ({"TICKER_REDIS_URL": "sentinel://h/m"}, "TICKER_REDIS_URL"),
])
def test_scale_out_settings_that_cannot_work_are_named(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(env)
    assert info.value.field == var and var in info.value.message


def test_flags_override() -> None:
    s = Settings.load({"TICKER_WORKERS": "2"}, {"workers": "3", "redis_cluster": None})
    assert s.workers == 3 and s.redis_cluster is False
