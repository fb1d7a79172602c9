"""The contract for other services: ACL-restricted publishers, dead letters once, idempotency."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
import websockets
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from tests.conftest import TIMEOUT, Server, make_settings, recv_json, running_server
from ticker.redis import publisher
from ticker.redis.deadletters import DeadLetters
from ticker.redis.keys import Keys
from ticker.redis.tokens import Tokens


async def test_publisher_only_acl_user_can_xadd_and_nothing_else(
    server: Server, redis: Redis, redis_server: object, prefix: str, token: str
) -> None:
    keys = Keys(prefix)
    user = "pub-" + uuid.uuid4().hex[:8]
    password = uuid.uuid4().hex
    # Exactly what docs/publishing.md tells operators to run.
    await redis.execute_command("ACL", "SETUSER", user, "on", f">{password}", "resetkeys",
                                f"~{prefix}:stream:*", "resetchannels", "-@all", "+xadd",
                                "+ping")
    url = server.settings.redis_url.replace("redis://", f"redis://{user}:{password}@")
    wire = Redis.from_url(url)
    try:
        async with websockets.connect(server.ws()) as ws:
            await recv_json(ws)
            item_id = await publisher.publish(wire, "en", "Wire: quake of magnitude 6.1",
                                              source="Wire", by="wire-ingest", keys=keys)
            frame = await recv_json(ws)
            assert frame["events"][0]["item"]["id"] == item_id
        # Secrets and the audit trail are out of reach, and so is reading any stream.
        await Tokens(redis, keys).create("someone")
        await redis.xadd(f"{prefix}:audit", {"who": "x"})
        await redis.hset(f"{prefix}:user:alice", mapping={"hash": "argon2..."})
        forbidden = [
            ("HGETALL", keys.tokens), ("HGETALL", keys.token_names),
            ("XRANGE", f"{prefix}:audit", "-", "+"), ("HGETALL", f"{prefix}:user:alice"),
            ("KEYS", "*"), ("XRANGE", keys.stream("en"), "-", "+"),
            ("XREAD", "STREAMS", keys.stream("en"), "0"), ("DEL", keys.stream("en")),
            ("XADD", keys.deadletter, "*", "forged", "1"),
            ("XADD", f"{prefix}:audit", "*", "forged", "1"),
        ]
        for command in forbidden:
            with pytest.raises(NoPermissionError):
                await wire.execute_command(*command)
    finally:
        await wire.aclose()
        await redis.execute_command("ACL", "DELUSER", user)


async def test_a_bad_entry_is_dead_lettered_once_however_many_nodes_read_it(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    keys = Keys(prefix)
    async with running_server(make_settings(redis_url, prefix)) as a, \
            running_server(make_settings(redis_url, prefix)) as b:
        bad = await redis.xadd(keys.stream("en"), {"text": "two\nlines"})
        await redis.xadd(keys.stream("en"), {"op": "kill", "item": "1-0"})
        deadline = time.monotonic() + TIMEOUT
        while a.runtime.hub.counters.rejected < 2 or b.runtime.hub.counters.rejected < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        letters = await DeadLetters(redis, keys).latest()
    assert len(letters) == 2
    by_id = {f["entry_id"]: f for _, f in letters}
    assert by_id[bad.decode()]["reason"] == "text must be one line"
    assert by_id[bad.decode()]["field"] == "text"
    assert by_id[bad.decode()]["channel"] == "en"


async def test_same_idem_key_appears_once_over_http_and_redis(
    server: Server, redis: Redis, prefix: str, token: str
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    body = {"text": "Ceasefire announced", "idem": "wire-123"}
    async with websockets.connect(server.ws()) as ws:
        await recv_json(ws)
        async with httpx.AsyncClient(base_url=server.http) as http:
            first = await http.post("/api/channels/en/items", json=body, headers=auth)
            again = await http.post("/api/channels/en/items", json=body, headers=auth)
            assert first.status_code == 201
            assert again.status_code == 200 and again.json()["duplicate"] is True
            assert again.json()["id"] == first.json()["id"]
            # The same key straight into Redis, and on another channel it is independent.
            await redis.xadd(Keys(prefix).stream("en"),
                             {"text": "Ceasefire announced", "idem": "wire-123"})
            other = await http.post("/api/channels/ar/items", json=body, headers=auth)
            assert other.status_code == 201
            await redis.xadd(Keys(prefix).stream("en"), {"text": "marker"})
        texts: list[str] = []
        while "marker" not in texts:
            frame = await recv_json(ws)
            texts += [e["item"]["text"] for e in frame["events"] if e["op"] == "publish"]
    assert texts == ["Ceasefire announced", "marker"]
    assert server.runtime.hub.counters.duplicates == 1


async def test_deadletter_cli_lists_rejections(
    redis_url: str, prefix: str, redis: Redis, server: Server
) -> None:
    await redis.xadd(Keys(prefix).stream("en"), {"op": "explode"})
    deadline = time.monotonic() + TIMEOUT
    while not await DeadLetters(redis, Keys(prefix)).latest():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    proc = await asyncio.create_subprocess_exec(
        "python", "-m", "ticker", "deadletter", "list", "--redis-url", redis_url,
        "--key-prefix", prefix, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT * 3)
    assert proc.returncode == 0, err
    assert "unknown op 'explode'" in out.decode()
