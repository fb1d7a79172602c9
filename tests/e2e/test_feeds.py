"""Feeds over HTTP from a real server: every format parsed by a real parser, the killed item's
Atom tombstone, and the caching contract (ETag, Last-Modified, Cache-Control, 304, CORS)."""

from __future__ import annotations

import asyncio
import html
import json
import time
import xml.etree.ElementTree as ET
from email.utils import format_datetime, parsedate_to_datetime

import feedparser
import httpx
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, make_settings, running_server
from ticker.redis.keys import Keys
from ticker.transport.feeds import TOMBSTONES, entry_id, rfc3339

NASTY = '<img src=x onerror=alert(1)> "Fire" & smoke at the <b>port</b>'


async def caught_up(server: Server, channel: str, cursor: str) -> None:
    state = server.runtime.hub.channels[channel].state
    deadline = time.monotonic() + TIMEOUT
    while state.cursor != cursor:
        assert time.monotonic() < deadline, "the node did not read the entry"
        await asyncio.sleep(0.01)


async def test_three_formats_parse_and_a_kill_becomes_a_tombstone(
    server: Server, token: str
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        async def publish(**body: object) -> str:
            r = await http.post("/api/channels/en/items", headers=auth, json=body)
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        a = await publish(text="Power restored in the north")
        b = await publish(text=NASTY, source="Fire service", tags=["port"])
        c = await publish(text="Unconfirmed: minister resigns", urgency="flash",
                          link="https://news.example/story?id=1&x=2")
        r = await http.post(f"/api/channels/en/items/{c}/kill", headers=auth,
                            json={"reason": "unconfirmed"})
        kill_cursor = r.json()["cursor"]
        await caught_up(server, "en", kill_cursor)

        r = await http.get("/feeds/en.json")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/feed+json"
        feed = json.loads(r.content)
        assert feed["version"] == "https://jsonfeed.org/version/1.1"
        assert feed["feed_url"] == server.http + "/feeds/en.json"
        assert [it["_ticker"]["id"] for it in feed["items"]] == [b, a]
        assert feed["items"][0]["content_text"] == "Fire service: " + NASTY

        r = await http.get("/feeds/en.rss")
        assert r.headers["content-type"] == "application/rss+xml; charset=utf-8"
        rss = feedparser.parse(r.content)
        assert not rss.bozo and rss.version == "rss20"
        assert rss.feed.ttl == "1"
        assert [e.id for e in rss.entries] == [entry_id("en", b), entry_id("en", a)]
        # On the wire the title is the text, escaped once; the description (HTML, in RSS)
        # escaped for HTML too, so a reader that renders it shows the text as typed.
        channel = ET.fromstring(r.content).find("channel")
        assert channel is not None
        assert channel.findtext("item/title") == "Fire service: " + NASTY
        assert html.unescape(channel.findtext("item/description") or "") == \
            "Fire service: " + NASTY
        assert html.unescape(rss.entries[0].summary) == "Fire service: " + NASTY
        assert "onerror" not in rss.entries[0].title  # what a reader makes of it is inert

        r = await http.get("/feeds/en.atom")
        assert r.headers["content-type"] == "application/atom+xml; charset=utf-8"
        atom = feedparser.parse(r.content)
        assert not atom.bozo and atom.version == "atom10"
        assert [e.id for e in atom.entries] == [entry_id("en", b), entry_id("en", a)]
        assert atom.entries[0].title == "Fire service: " + NASTY
        assert [t.term for t in atom.entries[0].tags] == ["port"]
        root = ET.fromstring(r.content)
        (tombstone,) = root.findall(f"{{{TOMBSTONES}}}deleted-entry")
        assert tombstone.get("ref") == entry_id("en", c)
        assert tombstone.get("when") == rfc3339(int(kill_cursor.split("-")[0]))

        r = await http.get("/feeds/nope.atom")
        assert r.status_code == 404 and r.json()["field"] == "channel"
        r = await http.get("/feeds/en.html")
        assert r.status_code == 404


async def test_conditional_get_and_cache_headers_for_a_cdn(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    async with running_server(make_settings(redis_url, prefix, feed_max_age=120)) as server, \
            httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        key = Keys(prefix).stream("ar")
        first = (await redis.xadd(key, {"text": "انقطاع الكهرباء في Gaza City"})).decode()
        await caught_up(server, "ar", first)
        for fmt in ("json", "rss", "atom"):
            url = f"/feeds/ar.{fmt}"
            r = await http.get(url, headers={"Origin": "https://elsewhere.example"})
            assert r.status_code == 200
            etag = r.headers["etag"]
            assert etag == f'"{first}"'  # strong, from the channel cursor
            modified = r.headers["last-modified"]
            assert parsedate_to_datetime(modified).timestamp() == int(first.split("-")[0]) // 1000
            assert r.headers["cache-control"] == "public, max-age=120"
            assert r.headers["access-control-allow-origin"] == "*"

            r = await http.get(url, headers={"If-None-Match": etag})
            assert r.status_code == 304 and r.content == b""
            assert r.headers["etag"] == etag and r.headers["cache-control"] == "public, max-age=120"
            r = await http.get(url, headers={"If-Modified-Since": modified})
            assert r.status_code == 304
            r = await http.head(url)
            assert r.status_code == 200 and r.headers["etag"] == etag

        # The next event changes the ETag; the old validator now gets the new feed.
        second = (await redis.xadd(key, {"text": "Second item"})).decode()
        await caught_up(server, "ar", second)
        r = await http.get("/feeds/ar.atom", headers={"If-None-Match": f'"{first}"'})
        assert r.status_code == 200 and r.headers["etag"] == f'"{second}"'
        parsed = feedparser.parse(r.content)
        assert [e.title for e in parsed.entries] == ["Second item", "انقطاع الكهرباء في Gaza City"]
        assert parsed.feed.language == "ar"
        later = format_datetime(parsedate_to_datetime(r.headers["last-modified"]), usegmt=True)
        r = await http.get("/feeds/ar.rss", headers={"If-Modified-Since": later})
        assert r.status_code == 304
