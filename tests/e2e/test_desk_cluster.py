"""The desk on a real Redis Cluster: every script and transaction stays within one hash slot
(a channel's stream with its audit stream; the desk-wide keys under the `{prefix}` tag)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.conftest import TIMEOUT, make_settings, running_server
from tests.e2e.deskkit import PASSWORD, Desk
from tests.e2e.test_redis_deployments import redis_cluster
from ticker.newsroom.users import Users
from ticker.redis.connection import connect as redis_client
from ticker.redis.keys import Keys


async def test_the_desk_works_on_a_redis_cluster(tmp_path: Path, prefix: str) -> None:
    with redis_cluster(tmp_path) as ports:
        url = f"redis://127.0.0.1:{ports[0]}/0"
        settings = make_settings(url, prefix, channels="en,ar", redis_cluster=True,
                                 read_block_ms=1000)
        client = redis_client(url, cluster=True)
        keys = Keys.for_settings(settings)
        try:
            await Users(client, keys).add("alice", "editor", PASSWORD)
            await Users(client, keys).add("carol", "contributor", PASSWORD)
            async with running_server(settings) as server:
                alice = await Desk.sign_in(server, "alice")
                carol = await Desk.sign_in(server, "carol")
                try:
                    en, ar = await alice.publish("On a cluster", ["en", "ar"])
                    r = await alice.op(en, "correct", text="On a cluster, corrected")
                    assert r.status_code == 201
                    r = await alice.op(ar, "kill", channel="ar", reason="test")
                    assert r.status_code == 201
                    r = await alice.post("/desk/api/items", {
                        "text": "Scheduled on a cluster", "channels": ["en", "ar"],
                        "at": int(time.time() * 1000) + 1500})
                    assert r.status_code == 202
                    r = await carol.post("/desk/api/items", {"text": "Pending on a cluster",
                                                             "channels": ["ar"]})
                    job = r.json()["job"]
                    assert (await alice.post(f"/desk/api/jobs/{job}/approve")).status_code \
                        == 201
                    deadline = time.monotonic() + TIMEOUT
                    while (await alice.state())["scheduled"]:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.1)
                    await asyncio.sleep(0.3)
                    state = await alice.state()
                    texts = {ch["name"]: sorted(i["text"] for i in ch["items"])
                             for ch in state["channels"]}
                    assert texts == {
                        "en": ["On a cluster, corrected", "Scheduled on a cluster"],
                        "ar": ["Pending on a cluster", "Scheduled on a cluster"],
                    }
                    entries = (await alice.http.get("/desk/api/audit")).json()["entries"]
                    actions = sorted((e["action"], e["channel"]) for e in entries
                                     if e["action"] not in ("login",))
                    assert actions == sorted([
                        ("publish", "en"), ("publish", "ar"), ("correct", "en"),
                        ("kill", "ar"), ("schedule", "en,ar"), ("publish", "en"),
                        ("publish", "ar"), ("submit", "ar"), ("approve", "ar")])
                    users = Users(client, keys)
                    await users.set_password("carol", "a brand new passphrase")
                    assert (await carol.http.get("/desk/api/state")).status_code == 401
                finally:
                    await alice.close()
                    await carol.close()
        finally:
            await client.aclose()
