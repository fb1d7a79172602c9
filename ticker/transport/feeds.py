"""Per-channel feeds: JSON Feed 1.1, RSS 2.0 and Atom, cacheable by any CDN.

`GET /feeds/{channel}.json`, `.rss`, `.atom`. What a feed holds is a function of the folded
channel state alone, never of the clock: the newest `TICKER_FEED_ITEMS` items that are not
held (on air, expired or killed), newest first, plus any pinned item older than those. So the
strong `ETag` is the channel cursor, `Last-Modified` is the time of the last event, and a
conditional GET (`If-None-Match`, else `If-Modified-Since`) is answered 304 until the next
event. `Cache-Control: public, max-age=TICKER_FEED_MAX_AGE`; RSS's `<ttl>` says the same.

A killed item leaves the JSON Feed and RSS; in Atom it becomes an RFC 6721
`<at:deleted-entry ref=... when=...>` so readers that kept it can drop it. Held items are
left out (they may come back). Items are plain text: every feed is built with `json` or
`xml.etree`, which escape them; no markup is ever concatenated from item text. Where a format
says "this is HTML" (RSS `<description>`) the text is HTML-escaped first; Atom says
`type="text"` and JSON Feed uses `content_text`.

Entry ids are `urn:uuid:` names derived from the channel and the item id (UUID v5): stable
across nodes, hosts and formats, so one item has the same id in all three feeds.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticker.core.channels import Channel
from ticker.core.items import parse_stream_id
from ticker.core.messages import dumps
from ticker.core.state import ChannelState, Item
from ticker.node.runtime import runtime_of
from ticker.transport.cors import PUBLIC
from ticker.transport.http import channel_of

ATOM = "http://www.w3.org/2005/Atom"
TOMBSTONES = "http://purl.org/atompub/tombstones/1.0"  # RFC 6721
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
ID_NAMESPACE = uuid.UUID("6f1d3b0e-2d1c-5b0a-9a57-7469636b6572")  # fixed: ids never change
# Characters XML 1.0 cannot carry at all (items never contain them; titles come from config).
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class FeedContext:
    """What every format needs besides the items: channel, cursor, and absolute URLs."""

    info: Channel
    cursor: str
    home: str  # the site's front page
    self_url: str  # this feed's own URL
    max_age: int

    @property
    def updated_ms(self) -> int:
        return cursor_ms(self.cursor)


def cursor_ms(cursor: str) -> int:
    parsed = parse_stream_id(cursor)
    return parsed[0] if parsed else 0


def entry_id(channel: str, item_id: str) -> str:
    """The item's id in every feed (and the `ref` of its Atom tombstone)."""
    return uuid.uuid5(ID_NAMESPACE, f"{channel}/{item_id}").urn


def feed_id(channel: str) -> str:
    return uuid.uuid5(ID_NAMESPACE, f"{channel}/").urn


def rfc3339(ms: int) -> str:
    """`2024-11-26T23:00:01.123Z` (Atom, JSON Feed)."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def http_date(ms: int) -> str:
    """`Tue, 26 Nov 2024 23:00:01 GMT` (RSS, Last-Modified)."""
    return format_datetime(datetime.fromtimestamp(ms // 1000, UTC), usegmt=True)


def headline(item: Item) -> str:
    """What readers see: `source: text`, unless the editor already wrote the source first."""
    if item.source and not item.text.casefold().startswith(item.source.casefold()):
        return f"{item.source}: {item.text}"
    return item.text


def select(state: ChannelState, limit: int) -> list[Item]:
    """The feed's items, newest first: the newest `limit` not held, then older pinned ones.

    Depends on the folded state only (never on the clock), so it is the same for one cursor
    on every node and at every moment: that is what makes the cursor a valid ETag.
    """
    chosen: list[Item] = []
    older_pinned: list[Item] = []
    for item in reversed(state.items.values()):  # stream order reversed: newest first
        if item.held:
            continue
        if len(chosen) < limit:
            chosen.append(item)
        elif item.pinned and not item.killed and len(older_pinned) < state.max_items:
            older_pinned.append(item)
    return chosen + older_pinned


def _x(text: str) -> str:
    return NOT_XML.sub("\ufffd", text)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: _x(v) for k, v in attrs.items()})
    if text is not None:
        element.text = _x(text)
    return element


def _xml(root: ET.Element) -> bytes:
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def feed_title(info: Channel) -> str:
    return f"{info.title} ({info.name})"


# -- formats ------------------------------------------------------------------------------


def render_json(ctx: FeedContext, items: Iterable[Item]) -> bytes:
    """JSON Feed 1.1; our item fields (urgency, expiry...) in the `_ticker` extension."""
    entries: list[dict[str, Any]] = []
    for item in items:
        if item.killed:
            continue
        entry: dict[str, Any] = {
            "id": entry_id(ctx.info.name, item.id),
            "content_text": headline(item),
            "date_published": rfc3339(item.ts),
        }
        if item.link:
            entry["url"] = item.link
        if item.updated > item.ts:
            entry["date_modified"] = rfc3339(item.updated)
        if item.tags:
            entry["tags"] = list(item.tags)
        entry["language"] = ctx.info.lang
        entry["_ticker"] = {
            "id": item.id,
            "text": item.text,
            "source": item.source,
            "urgency": item.urgency,
            "expires": rfc3339(item.expires),
            "version": item.version,
            "corrected": item.corrected,
            "pinned": item.pinned,
            "story": item.story,
            "versions": dict(item.story_ref.versions()) if item.story_ref else {},
        }
        entries.append(entry)
    return dumps({
        "version": JSON_FEED_VERSION,
        "title": feed_title(ctx.info),
        "home_page_url": ctx.home,
        "feed_url": ctx.self_url,
        "description": f"Breaking news, live: {ctx.info.title}",
        "language": ctx.info.lang,
        "authors": [{"name": ctx.info.title}],
        "items": entries,
    })


def render_rss(ctx: FeedContext, items: Iterable[Item]) -> bytes:
    """RSS 2.0 with `<ttl>` (minutes) and an `atom:link rel="self"`."""
    # Prefixed names are written as they are (ET's global namespace registry stays untouched).
    rss = ET.Element("rss", {"version": "2.0", "xmlns:atom": ATOM})
    channel = _sub(rss, "channel")
    _sub(channel, "title", feed_title(ctx.info))
    _sub(channel, "link", ctx.home)
    _sub(channel, "description", f"Breaking news, live: {ctx.info.title}")
    _sub(channel, "language", ctx.info.lang)
    _sub(channel, "ttl", str(max(1, math.ceil(ctx.max_age / 60))))
    _sub(channel, "lastBuildDate", http_date(ctx.updated_ms))
    _sub(channel, "generator", "ticker")
    _sub(channel, "atom:link", href=ctx.self_url, rel="self", type="application/rss+xml")
    for item in items:
        if item.killed:
            continue
        node = _sub(channel, "item")
        _sub(node, "title", headline(item))
        if item.link:
            _sub(node, "link", item.link)
        # RSS descriptions are HTML by definition: escape, so readers show the text as typed.
        _sub(node, "description", html.escape(headline(item), quote=False))
        _sub(node, "guid", entry_id(ctx.info.name, item.id), isPermaLink="false")
        _sub(node, "pubDate", http_date(item.ts))
        for tag in item.tags:
            _sub(node, "category", tag)
    return _xml(rss)


def render_atom(ctx: FeedContext, items: Iterable[Item]) -> bytes:
    """Atom 1.0; a killed item is an RFC 6721 `at:deleted-entry` tombstone."""
    feed = ET.Element("feed", {"xmlns": ATOM, "xmlns:at": TOMBSTONES,
                               "xml:lang": _x(ctx.info.lang)})
    _sub(feed, "id", feed_id(ctx.info.name))
    _sub(feed, "title", feed_title(ctx.info), type="text")
    _sub(feed, "subtitle", f"Breaking news, live: {ctx.info.title}", type="text")
    _sub(feed, "updated", rfc3339(ctx.updated_ms))
    author = _sub(feed, "author")
    _sub(author, "name", ctx.info.title)
    _sub(feed, "link", rel="self", type="application/atom+xml", href=ctx.self_url)
    _sub(feed, "link", rel="alternate", type="text/html", href=ctx.home)
    _sub(feed, "generator", "ticker")
    for item in items:
        ref = entry_id(ctx.info.name, item.id)
        if item.killed:
            when = item.killed_at if item.killed_at is not None else item.updated
            _sub(feed, "at:deleted-entry", ref=ref, when=rfc3339(when))
            continue
        entry = _sub(feed, "entry")
        _sub(entry, "id", ref)
        _sub(entry, "title", headline(item), type="text")
        _sub(entry, "published", rfc3339(item.ts))
        _sub(entry, "updated", rfc3339(max(item.updated, item.ts)))
        _sub(entry, "content", headline(item), type="text")
        if item.link:
            _sub(entry, "link", rel="alternate", href=item.link)
        for tag in item.tags:
            _sub(entry, "category", term=tag)
    return _xml(feed)


@dataclass(frozen=True, slots=True)
class Format:
    media_type: str
    render: Callable[[FeedContext, Iterable[Item]], bytes]


FORMATS: dict[str, Format] = {
    "json": Format("application/feed+json", render_json),
    "rss": Format("application/rss+xml; charset=utf-8", render_rss),
    "atom": Format("application/atom+xml; charset=utf-8", render_atom),
}


# -- HTTP ---------------------------------------------------------------------------------


def etag_of(cursor: str, items: Iterable[Item] = ()) -> str:
    """The cursor, and when any item has versions in other editions a digest of them: a
    translation linked elsewhere changes the feed without moving this channel's cursor.
    Both come from the fold alone, so every node gives the same tag."""
    linked = [(it.id, sorted(it.story_ref.versions().items())) for it in items
              if it.story_ref is not None and len(it.story_ref.members) > 1]
    if not linked:
        return f'"{cursor}"'
    digest = hashlib.blake2s(repr(linked).encode(), digest_size=6).hexdigest()
    return f'"{cursor}.{digest}"'


def not_modified(request: Request, etag: str, modified_ms: int) -> bool:
    """RFC 9110 §13.1: If-None-Match (weak comparison) wins; else If-Modified-Since."""
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = [t.strip() for t in inm.split(",")]
        return any(t == "*" or t.removeprefix("W/") == etag for t in tags)
    ims = request.headers.get("if-modified-since")
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims)
    except (TypeError, ValueError, IndexError):
        return False  # an unparseable date is ignored (RFC 9110 §13.1.3)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return modified_ms // 1000 <= int(since.timestamp())


def endpoint(fmt: str) -> Callable[[Request], Any]:
    spec = FORMATS[fmt]

    async def feed(request: Request) -> Response:
        runtime = runtime_of(request)
        channel = channel_of(request)
        settings = runtime.settings
        cursor = channel.state.cursor
        modified = cursor_ms(cursor)
        items = select(channel.state, settings.feed_items)
        headers = {
            "ETag": etag_of(cursor, items),
            "Last-Modified": http_date(modified),
            "Cache-Control": f"public, max-age={settings.feed_max_age}",
            **PUBLIC,
        }
        if not_modified(request, headers["ETag"], modified):
            return Response(status_code=304, headers=headers)
        base = str(request.base_url).rstrip("/")
        ctx = FeedContext(info=channel.info, cursor=cursor, home=base + "/",
                          self_url=f"{base}/feeds/{channel.info.name}.{fmt}",
                          max_age=settings.feed_max_age)
        body = spec.render(ctx, items)
        return Response(body, media_type=spec.media_type, headers=headers)

    return feed


routes = [Route(f"/feeds/{{channel}}.{fmt}", endpoint(fmt), methods=["GET"]) for fmt in FORMATS]
