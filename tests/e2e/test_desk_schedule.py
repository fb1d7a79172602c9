"""Held-back items: scheduled publish (embargo kept out of the stream, exactly once on many
nodes, finished after a node dies) and contributors' items waiting for approval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, make_settings, recv_json, recv_until, running_server
from tests.e2e.deskkit import Desk, add_user
from ticker.newsroom.jobs import LEASE_MS, Job
from ticker.redis.keys import Keys


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
async def alice(server: Server, redis: Redis, prefix: str) -> AsyncIterator[Desk]:
    await add_user(redis, prefix, "alice", "editor")
    desk = await Desk.sign_in(server, "alice")
    yield desk
    await desk.close()


async def texts_in_stream(redis: Redis, prefix: str, channel: str = "en") -> list[str]:
    return [f[b"text"].decode() for _, f in await redis.xrange(Keys(prefix).stream(channel))
            if b"text" in f]


async def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_a_scheduled_line_stays_out_of_the_stream_until_its_time(
    server: Server, alice: Desk, redis: Redis, prefix: str
) -> None:
    at = now_ms() + 1500
    r = await alice.post("/desk/api/items", {"text": "Embargoed: rates cut by 0.5 points",
                                             "channels": ["en", "ar"], "at": at,
                                             "urgency": "flash"})
    assert r.status_code == 202 and r.json()["kind"] == "scheduled", r.text
    job = r.json()["job"]
    async with websockets.connect(server.ws("en")) as ws:
        assert (await recv_json(ws))["items"] == []
        state = await alice.state()
        assert [(j["id"], j["text"], j["at"]) for j in state["scheduled"]] == [
            (job, "Embargoed: rates cut by 0.5 points", at)]
        assert await texts_in_stream(redis, prefix) == []  # the embargo is not in the log
        frames = await recv_until(ws, lambda f: f["type"] == "events", timeout=TIMEOUT)
        published = frames[-1]["events"][0]
        arrived = now_ms()
        assert published["op"] == "publish"
        assert published["item"]["text"] == "Embargoed: rates cut by 0.5 points"
        # On time: the node that took the job sleeps until its time, not until a poll.
        assert at <= published["item"]["ts"] <= at + 500
        assert arrived - at < 1500
    for channel in ("en", "ar"):
        assert await texts_in_stream(redis, prefix, channel) == [
            "Embargoed: rates cut by 0.5 points"]
    assert (await alice.state())["scheduled"] == []
    r = await alice.http.get("/desk/api/audit")
    actions = [(e["action"], e["user"], e["channel"]) for e in r.json()["entries"]][:3]
    assert sorted(actions[:2]) == [("publish", "alice", "ar"), ("publish", "alice", "en")]
    assert actions[2] == ("schedule", "alice", "en,ar")


async def test_cancelled_schedules_never_publish(
    server: Server, alice: Desk, redis: Redis, prefix: str
) -> None:
    at = now_ms() + 1500
    r = await alice.post("/desk/api/items", {"text": "Never mind", "channels": ["en"],
                                             "at": at})
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    # A later line shows when the scheduler has gone past the cancelled one's time.
    r = await alice.post("/desk/api/items", {"text": "Later line", "channels": ["en"],
                                             "at": at + 300})
    assert r.status_code == 202
    r = await alice.post(f"/desk/api/jobs/{job}/cancel", {"reason": "story pulled"})
    assert r.status_code == 200

    async def later_out() -> bool:
        return bool(await texts_in_stream(redis, prefix))
    await wait_for(later_out, "the later line")
    assert await texts_in_stream(redis, prefix) == ["Later line"]
    r = await alice.post(f"/desk/api/jobs/{job}/cancel")
    assert r.status_code == 404 and r.json()["field"] == "job"
    entries = (await alice.http.get("/desk/api/audit")).json()["entries"]
    assert any(e["action"] == "cancel" and e["reason"] == "story pulled" for e in entries)


async def test_many_nodes_publish_each_scheduled_line_exactly_once(
    alice: Desk, redis: Redis, prefix: str, redis_url: str
) -> None:
    at = now_ms() + 3000  # far enough ahead that all twenty are scheduled, not published
    for n in range(20):
        r = await alice.post("/desk/api/items", {"text": f"Scheduled {n}", "channels": ["en"],
                                                 "at": at})
        assert r.status_code == 202
    settings = make_settings(redis_url, prefix)
    async with running_server(settings), running_server(settings), running_server(settings):
        async def all_out() -> bool:
            return await redis.zcard(Keys(prefix).scheduled) == 0
        await wait_for(all_out, "the scheduled lines")
        await asyncio.sleep(0.5)  # let any double publisher show itself
    texts = await texts_in_stream(redis, prefix)
    assert sorted(texts) == sorted(f"Scheduled {n}" for n in range(20))
    assert await redis.hlen(Keys(prefix).job_claims) == 0


async def test_a_job_claimed_by_a_node_that_died_is_finished_once(
    server: Server, alice: Desk, redis: Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    jobs = server.runtime.newsroom.jobs
    texts = ("Claimed, never written", "Written, claim left behind")
    created = []
    for text in texts:
        r = await alice.post("/desk/api/items", {"text": text, "channels": ["en", "ar"],
                                                 "at": now_ms() + 3600_000})
        created.append(r.json()["job"])
    # Two crashed nodes: each claimed a job (lease already over); the second one had also
    # written its entries to `en` (not `ar`) before dying.
    for n, job_id in enumerate(created):
        found = await jobs.get(job_id)
        assert found is not None
        job, raw = found
        assert await jobs._claim(keys=[keys.jobs, keys.scheduled, keys.pending,
                                       keys.job_claims, keys.desk_version],
                                 args=[job.id, raw, now_ms() - LEASE_MS])
        if n == 1:
            await jobs.journal.append("en", job.fields, {"user": "alice", "action": "publish"},
                                      item_is_entry=True)

    async def finished() -> bool:
        return await redis.hlen(keys.job_claims) == 0
    await wait_for(finished, "the recovery")  # every node checks every 5 s
    await asyncio.sleep(0.3)
    for channel in ("en", "ar"):
        shown = [it.text for it in server.runtime.hub.channels[channel].state.on_air(now_ms())]
        assert sorted(shown) == sorted(texts), channel
    assert sorted(await texts_in_stream(redis, prefix, "ar")) == sorted(texts)
    # en has the second line once: the recovery saw it folded and skipped that channel.
    assert sorted(await texts_in_stream(redis, prefix, "en")) == sorted(texts)


async def test_a_contributors_line_waits_for_an_editor(
    server: Server, alice: Desk, redis: Redis, prefix: str
) -> None:
    await add_user(redis, prefix, "carol", "contributor")
    carol = await Desk.sign_in(server, "carol")
    try:
        r = await carol.post("/desk/api/items", {"text": "Ferry service resumes",
                                                 "channels": ["en"], "source": "Port office"})
        assert r.status_code == 202 and r.json()["kind"] == "pending"
        first = r.json()["job"]
        r = await carol.post("/desk/api/items", {"text": "Bridge closed", "channels": ["en"]})
        second = r.json()["job"]
        assert await texts_in_stream(redis, prefix) == []
        pending = (await alice.state())["pending"]
        assert [(p["id"], p["by"]) for p in pending] == [(first, "carol"), (second, "carol")]

        async with websockets.connect(server.ws("en")) as ws:
            await recv_json(ws)
            r = await alice.post(f"/desk/api/jobs/{first}/approve")
            assert r.status_code == 201, r.text
            item_id = r.json()["items"][0]["id"]
            frames = await recv_until(ws, lambda f: f["type"] == "events")
            assert frames[-1]["events"][0]["item"]["text"] == "Ferry service resumes"
        item = await alice.item(item_id)
        assert item is not None and item["by"] == "carol" and item["source"] == "Port office"
        r = await alice.post(f"/desk/api/jobs/{first}/approve")
        assert r.status_code == 404  # once

        r = await alice.post(f"/desk/api/jobs/{second}/reject", {"reason": "unconfirmed"})
        assert r.status_code == 200
        assert (await alice.state())["pending"] == []
        assert await texts_in_stream(redis, prefix) == ["Ferry service resumes"]
        entries = (await alice.http.get("/desk/api/audit")).json()["entries"]
        summary = [(e["action"], e["user"], e["reason"]) for e in entries
                   if e["action"] in ("submit", "approve", "reject")]
        assert summary == [("reject", "alice", "unconfirmed"), ("approve", "alice", ""),
                           ("submit", "carol", ""), ("submit", "carol", "")]
        # An approved line with a time in the future becomes a scheduled one.
        r = await carol.post("/desk/api/items", {"text": "Results at noon", "channels": ["en"],
                                                 "at": now_ms() + 3600_000})
        assert r.status_code == 202 and r.json()["kind"] == "pending"
        r = await alice.post(f"/desk/api/jobs/{r.json()['job']}/approve")
        assert r.status_code == 202
        state = await alice.state()
        assert [j["text"] for j in state["scheduled"]] == ["Results at noon"]
        assert state["pending"] == []
    finally:
        await carol.close()


async def test_a_retried_submission_is_stored_once(
    server: Server, alice: Desk, redis: Redis, prefix: str
) -> None:
    body = {"text": "Once only", "channels": ["en"], "at": now_ms() + 3600_000,
            "idem": "desk-retry-1"}
    first = await alice.post("/desk/api/items", body)
    again = await alice.post("/desk/api/items", body)
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["job"] == again.json()["job"] and again.json()["duplicate"]
    assert await redis.hlen(Keys(prefix).jobs) == 1
    raw = await redis.hget(Keys(prefix).jobs, first.json()["job"])
    assert raw is not None and Job.decode(raw).fields["idem"] == "desk-retry-1"
