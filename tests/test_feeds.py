"""ticker.transport.feeds, pure: what a feed holds, and each format read back by a real parser
(feedparser for RSS and Atom, json for JSON Feed, xml.etree for the RFC 6721 tombstone)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import feedparser
import pytest
from starlette.requests import Request

from ticker.core.channels import Channel
from ticker.core.items import parse_entry
from ticker.core.state import ChannelState
from ticker.transport.feeds import (
    TOMBSTONES,
    FeedContext,
    entry_id,
    headline,
    not_modified,
    render_atom,
    render_json,
    render_rss,
    rfc3339,
    select,
)

T0 = 1_732_662_000_000
NASTY = 'Ceasefire <b>"holds"</b> & ]]> </title><script>alert(1)</script>'
EN = Channel(name="en", lang="en", dir="ltr", title="Breaking")
AR = Channel(name="ar", lang="ar", dir="rtl", title="عاجل")


def sid(offset: int) -> str:
    return f"{T0 + offset}-0"


def fold(state: ChannelState, offset: int, **fields: str) -> str:
    entry_id = sid(offset)
    state.apply(entry_id, parse_entry(fields))
    return entry_id


def context(info: Channel, state: ChannelState) -> FeedContext:
    return FeedContext(info=info, cursor=state.cursor, home="https://news.example/",
                       self_url=f"https://news.example/feeds/{info.name}.x", max_age=90)


@pytest.fixture
def newsroom() -> tuple[ChannelState, dict[str, str]]:
    """Five items: one nasty, one killed, one held, one corrected with link and tags."""
    state = ChannelState("en")
    ids = {
        "plain": fold(state, 0, text="Power restored in the north"),
        "nasty": fold(state, 1000, text=NASTY, source="Agency & Co"),
        "killed": fold(state, 2000, text="Unconfirmed report"),
        "held": fold(state, 3000, text="Held back"),
        "rich": fold(state, 4000, text="Port strike ends", link="https://news.example/a?b=1&c=2",
                     tags="trade,labour", urgency="flash"),
    }
    fold(state, 5000, op="kill", item=ids["killed"], reason="unconfirmed")
    fold(state, 6000, op="hold", item=ids["held"])
    fold(state, 7000, op="correct", item=ids["rich"], text="Port strike ends after 19 days")
    return state, ids


def test_select_is_newest_first_skips_held_and_keeps_killed_for_tombstones(
    newsroom: tuple[ChannelState, dict[str, str]]
) -> None:
    state, ids = newsroom
    chosen = [it.id for it in select(state, 50)]
    assert chosen == [ids["rich"], ids["killed"], ids["nasty"], ids["plain"]]
    assert [it.id for it in select(state, 2)] == [ids["rich"], ids["killed"]]


def test_select_is_bounded_and_adds_older_pinned_items() -> None:
    state = ChannelState("en", max_items=3)
    old = fold(state, 0, text="Pinned long ago")
    fold(state, 1, op="pin", item=old)
    newest = [fold(state, 10 + n, text=f"item {n}") for n in range(10)]
    chosen = [it.id for it in select(state, 4)]
    assert chosen == [*reversed(newest[-4:]), old]
    # Depends on the state only: the same answer at any moment (the cursor is the ETag).
    assert [it.id for it in select(state, 4)] == chosen


def test_headline_shows_the_source_once() -> None:
    state = ChannelState("en")
    a = fold(state, 0, text="Israeli media: drones toward Eilat", source="Israeli media")
    b = fold(state, 1, text="Drones toward Eilat", source="Israeli media")
    assert headline(state.items[a]) == "Israeli media: drones toward Eilat"
    assert headline(state.items[b]) == "Israeli media: Drones toward Eilat"


def test_json_feed_1_1(newsroom: tuple[ChannelState, dict[str, str]]) -> None:
    state, ids = newsroom
    feed: dict[str, Any] = json.loads(render_json(context(EN, state), select(state, 50)))
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["feed_url"] == "https://news.example/feeds/en.x"
    assert feed["home_page_url"] == "https://news.example/" and feed["language"] == "en"
    items = feed["items"]
    # The killed item is gone; the held one was never there.
    assert [it["_ticker"]["id"] for it in items] == [ids["rich"], ids["nasty"], ids["plain"]]
    rich, nasty, plain = items
    assert nasty["content_text"] == "Agency & Co: " + NASTY  # text stays text
    assert "content_html" not in nasty
    assert rich["id"] == entry_id("en", ids["rich"])
    assert rich["url"] == "https://news.example/a?b=1&c=2" and rich["tags"] == ["trade", "labour"]
    assert rich["content_text"] == "Port strike ends after 19 days"
    assert rich["date_published"] == rfc3339(T0 + 4000) == "2024-11-26T23:00:04.000Z"
    assert rich["date_modified"] == rfc3339(T0 + 7000)
    assert rich["_ticker"]["urgency"] == "flash" and rich["_ticker"]["corrected"] is True
    assert "date_modified" not in plain and "url" not in plain
    check_json_feed(feed)


def check_json_feed(feed: dict[str, Any]) -> None:
    """JSON Feed 1.1's rules (https://jsonfeed.org/version/1.1) that a feed can break."""
    assert isinstance(feed["title"], str) and isinstance(feed["items"], list)
    for key, value in feed.items():
        assert key in {"version", "title", "home_page_url", "feed_url", "description",
                       "language", "authors", "items"}, key
        assert value is not None, key
    for item in feed["items"]:
        assert isinstance(item["id"], str) and item["id"]
        assert isinstance(item.get("content_text") or item.get("content_html"), str)
        for key in item:
            assert key.startswith("_") or key in {
                "id", "url", "external_url", "title", "content_html", "content_text",
                "summary", "image", "banner_image", "date_published", "date_modified",
                "authors", "tags", "language", "attachments"}, key
        for key in ("date_published", "date_modified"):
            if key in item:
                assert item[key].endswith("Z") and "T" in item[key]


def test_rss_2_with_ttl_read_by_feedparser(newsroom: tuple[ChannelState, dict[str, str]]) -> None:
    state, ids = newsroom
    body = render_rss(context(EN, state), select(state, 50))
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "rss20"
    assert parsed.feed.title == "Breaking (en)" and parsed.feed.language == "en"
    assert parsed.feed.ttl == "2"  # 90 s of max-age, in whole minutes
    assert [e.id for e in parsed.entries] == [entry_id("en", ids[k])
                                              for k in ("rich", "nasty", "plain")]
    rich, nasty, _ = parsed.entries
    assert nasty.title == "Agency & Co: " + NASTY
    assert rich.link == "https://news.example/a?b=1&c=2"
    assert [t.term for t in rich.tags] == ["trade", "labour"]
    assert rich.published_parsed[:6] == (2024, 11, 26, 23, 0, 4)
    root = ET.fromstring(body)
    assert root.find("channel/item/title") is not None
    assert root.find("channel/{http://www.w3.org/2005/Atom}link").get("rel") == "self"
    assert not root.findall(".//script")  # the text was escaped, never parsed as markup


def test_atom_with_an_rfc_6721_tombstone_for_the_killed_item(
    newsroom: tuple[ChannelState, dict[str, str]]
) -> None:
    state, ids = newsroom
    body = render_atom(context(EN, state), select(state, 50))
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.updated == rfc3339(T0 + 7000)
    assert [e.id for e in parsed.entries] == [entry_id("en", ids[k])
                                              for k in ("rich", "nasty", "plain")]
    rich, nasty, _ = parsed.entries
    assert nasty.title == "Agency & Co: " + NASTY and nasty.title_detail.type == "text/plain"
    assert nasty.content[0].value == "Agency & Co: " + NASTY
    assert rich.link == "https://news.example/a?b=1&c=2"
    assert rich.updated == rfc3339(T0 + 7000) and rich.published == rfc3339(T0 + 4000)

    root = ET.fromstring(body)
    tombstones = root.findall(f"{{{TOMBSTONES}}}deleted-entry")
    assert [(t.get("ref"), t.get("when")) for t in tombstones] == [
        (entry_id("en", ids["killed"]), rfc3339(T0 + 5000))
    ]
    atom = "{http://www.w3.org/2005/Atom}"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    refs = {e.findtext(atom + "id") for e in root.findall(atom + "entry")}
    assert entry_id("en", ids["killed"]) not in refs
    assert not root.findall(".//script")


def test_right_to_left_channel_and_stable_ids() -> None:
    state = ChannelState("ar")
    item = fold(state, 0, text="عاجل: انقطاع الكهرباء في Gaza City", source="الجزيرة")
    parsed = feedparser.parse(render_atom(context(AR, state), select(state, 50)))
    assert parsed.feed.title == "عاجل (ar)" and parsed.feed.language == "ar"
    assert parsed.entries[0].title == "الجزيرة: عاجل: انقطاع الكهرباء في Gaza City"
    assert entry_id("ar", item) == entry_id("ar", item) != entry_id("en", item)
    assert entry_id("ar", item).startswith("urn:uuid:")


def request(**headers: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/feeds/en.rss",
                    "headers": [(k.lower().replace("_", "-").encode(), v.encode())
                                for k, v in headers.items()]})


def test_conditional_get_rules() -> None:
    etag, modified = '"1732662000000-0"', T0
    assert not_modified(request(If_None_Match=etag), etag, modified)
    assert not_modified(request(If_None_Match=f'"x", W/{etag}'), etag, modified)
    assert not_modified(request(If_None_Match="*"), etag, modified)
    assert not not_modified(request(If_None_Match='"1732662000000-1"'), etag, modified)
    # If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    assert not not_modified(request(If_None_Match='"old"',
                                    If_Modified_Since="Tue, 26 Nov 2024 23:00:00 GMT"),
                            etag, modified)
    assert not_modified(request(If_Modified_Since="Tue, 26 Nov 2024 23:00:00 GMT"), etag,
                        modified)
    assert not not_modified(request(If_Modified_Since="Tue, 26 Nov 2024 22:59:59 GMT"), etag,
                            modified)
    assert not not_modified(request(If_Modified_Since="not a date"), etag, modified)
    assert not not_modified(request(), etag, modified)
