"""The audit trail: newest first, filtered by user and channel, paged across the per-channel
and desk-wide audit streams without losing or repeating an entry, shown escaped."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.conftest import Server
from tests.e2e.deskkit import Desk, add_user
from ticker.newsroom.audit import Audit
from ticker.redis.keys import Keys


@pytest.fixture
async def desks(server: Server, redis: Redis, prefix: str) -> AsyncIterator[tuple[Desk, Desk]]:
    await add_user(redis, prefix, "alice", "editor")
    await add_user(redis, prefix, "bob", "admin")
    alice, bob = await Desk.sign_in(server, "alice"), await Desk.sign_in(server, "bob")
    yield alice, bob
    await alice.close()
    await bob.close()


def rows(html: str) -> list[tuple[str, str, str]]:
    """(user, action, channel) of each audit table row, top to bottom."""
    found = re.findall(r'<td class="who">([^<]*)</td><td class="what">([^<]*)</td>'
                       r'<td class="channel">([^<]*)</td>', html)
    return [(u, a, c) for u, a, c in found]


async def test_the_audit_page_lists_every_step_newest_first_and_filters(
    server: Server, desks: tuple[Desk, Desk]
) -> None:
    alice, bob = desks
    en, = await alice.publish("Quake of magnitude 6.1 <strong>", ["en"])
    ar, = await bob.publish("زلزال بقوة 6.1 درجات", ["ar"])
    assert (await alice.op(en, "correct", text="Quake of magnitude 5.9")).status_code == 201
    assert (await bob.op(ar, "kill", channel="ar", reason="duplicate")).status_code == 201
    page = await alice.http.get("/desk/audit")
    assert page.status_code == 200
    assert rows(page.text) == [
        ("bob", "kill", "ar"), ("alice", "correct", "en"), ("bob", "publish", "ar"),
        ("alice", "publish", "en"), ("bob", "login", ""), ("alice", "login", ""),
    ]
    assert "Quake of magnitude 6.1 &lt;strong&gt;" in page.text
    assert "<strong>" not in page.text
    assert rows((await alice.http.get("/desk/audit?user=alice")).text) == [
        ("alice", "correct", "en"), ("alice", "publish", "en"), ("alice", "login", "")]
    assert rows((await alice.http.get("/desk/audit?channel=ar")).text) == [
        ("bob", "kill", "ar"), ("bob", "publish", "ar")]
    assert rows((await alice.http.get("/desk/audit?channel=ar&user=alice")).text) == []
    # JSON for scripts: the same, with before/after/reason
    entries = (await alice.http.get("/desk/api/audit", params={"channel": "ar"})).json()
    kill = entries["entries"][0]
    assert (kill["action"], kill["before"], kill["reason"], kill["item"]) == (
        "kill", "زلزال بقوة 6.1 درجات", "duplicate", ar)


async def test_bad_filters_are_refused_next_to_their_field(
    server: Server, desks: tuple[Desk, Desk]
) -> None:
    alice, _ = desks
    for query, field in (("user=%3Cscript%3E", "user"), ("channel=fr", "channel"),
                         ("limit=0", "limit"), ("limit=lots", "limit"),
                         ("before=yesterday", "before"), ("colour=red", "colour")):
        r = await alice.http.get(f"/desk/api/audit?{query}")
        assert r.status_code == 422 and r.json()["field"] == field, query
    page = await alice.http.get("/desk/audit?channel=fr")
    assert page.status_code == 422
    shown = re.search(r'<p class="error" id="channel-error">([^<]*)</p>', page.text)
    assert shown is not None and html.unescape(shown.group(1)) == "no channel 'fr'"
    assert "'fr'" not in page.text  # escaped (the entity's spelling is Jinja's business)
    page = await alice.http.get("/desk/audit?user=%3Cscript%3E")
    assert page.status_code == 422 and "<script>" not in page.text
    r = await alice.http.get("/desk/audit?channel=fr", headers={"Accept": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "channel"


async def test_paging_merges_the_streams_without_losing_equal_ids(
    redis: Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    audit = Audit(redis, keys, ["en", "ar"])
    # The same stream IDs in all three streams (a multi-channel publish in one millisecond).
    expected = []
    for ms in range(1000, 1010):
        for number, key in enumerate((keys.audit, keys.channel_audit("en"),
                                      keys.channel_audit("ar"))):
            await redis.xadd(key, {"user": "u", "action": f"a{ms}-{number}"}, id=f"{ms}-0")
            expected.append((ms, number))
    expected.sort(key=lambda e: (-e[0], e[1]))
    seen: list[str] = []
    before = None
    for _ in range(50):
        page = await audit.query(limit=4, before=before)
        seen += [e.action for e in page.entries]
        if page.older is None:
            break
        before = page.older
    assert seen == [f"a{ms}-{n}" for ms, n in expected]
    # Filtered pages skip what does not match, and still end.
    only = await audit.query(channel="ar", limit=100)
    assert [e.action for e in only.entries] == [f"a{ms}-2" for ms in range(1009, 999, -1)]
    assert only.older is None
