"""The desk's JSON endpoints (session cookie + X-CSRF-Token), and its live feed.

Writes are validated exactly like every other publisher's (`items.parse_entry`), carry
`by` = the editor's name, and go to the stream together with their audit entry in one
atomic step (`audit.Journal`). A write answers once this node has folded the entry (at most
`FOLD_WAIT` seconds), so the desk's next read already shows it.

| route | who |
|---|---|
| `POST /desk/api/items` | editor: now, or at `at`; contributor: waits in `pending` |
| `POST /desk/api/items/{channel}/{item}/{op}` | editor (correct hold release pin ...) |
| `POST /desk/api/translate/{edition}/dismiss` | editor: `{story}` leaves that edition's queue |
| `POST /desk/api/jobs/{job}/approve` / `reject` | editor |
| `POST /desk/api/jobs/{job}/cancel` | editor; a contributor for their own pending item |
| `GET /desk/api/state`, `GET /desk/api/events` | contributor |
| `GET /desk/api/audit` | editor |
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Final

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ticker.core.clock import now_ms
from ticker.core.contract import OP_FIELDS, PUBLISH_FIELDS, to_fields
from ticker.core.editions import check_link, needs_update, versions_of
from ticker.core.errors import HTTPError, ValidationError
from ticker.core.hub import ChannelHub
from ticker.core.items import (
    MAX_REASON,
    check_expires,
    check_text,
    check_translation_of,
    entry_fields,
    parse_entry,
    parse_stream_id,
    split_story,
)
from ticker.core.state import Item
from ticker.core.stories import story_key
from ticker.newsroom.auth import Principal
from ticker.newsroom.deskview import desk_state
from ticker.newsroom.jobs import Job, new_id
from ticker.newsroom.services import Newsroom
from ticker.newsroom.users import check_name
from ticker.node.runtime import Runtime, runtime_of
from ticker.process import ticks
from ticker.transport.http import channel_of, op_of, read_json_object

FOLD_WAIT: Final = 2.0
MAX_AHEAD_MS: Final = 30 * 24 * 3600 * 1000
PAST_TOLERANCE_MS: Final = 60 * 1000
# The live feed (`events`); what wakes it and how often: ticker.node.deskfeed.
FEED_LIFETIME: Final = 30.0  # seconds one response lives; then the browser reconnects
FEED_KEEPALIVE: Final = 15.0  # a comment after this many seconds without a message
FEED_GAP: Final = 0.25  # in a burst of changes, one look per this many seconds per desk
FEED_SESSION_CHECK: Final = 2.0  # seconds between session checks while nothing is sent
FEED_STALE: Final = b"event: stale\ndata: {}\n\n"
FEED_ENDED: Final = b"event: ended\ndata: {}\n\n"
NO_STORE: Final = {"Cache-Control": "no-store"}
NOOPS: Final = {"hold": "is already held", "release": "is not held", "pin": "is already pinned",
                "unpin": "is not pinned"}



def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def newsroom_of(request: Request) -> Newsroom:
    return runtime_of(request).newsroom


def json_response(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=NO_STORE)


def check_channels(value: Any, runtime: Runtime) -> list[str]:
    if value is None:
        raise ValidationError("choose at least one channel", field="channels")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValidationError("channels must be a list of channel names", field="channels")
    names: list[str] = []
    for name in value:
        if runtime.hub.channel(name) is None:
            raise ValidationError(f"no channel {name[:40]!r}", field="channels")
        if name not in names:
            names.append(name)
    return names


def check_at(value: Any, now: int) -> int | None:
    """The scheduled time: None (now), epoch ms or ISO 8601 with a zone; not in the past."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValidationError("at must be epoch milliseconds or an ISO 8601 time", field="at")
    try:
        at = check_expires(str(value))
    except ValidationError as exc:
        raise ValidationError(exc.message.replace("expires", "at"), field="at") from None
    if at < now - PAST_TOLERANCE_MS:
        raise ValidationError("at is in the past", field="at")
    if at > now + MAX_AHEAD_MS:
        raise ValidationError("at is more than 30 days ahead", field="at")
    return at if at > now + 1000 else None


async def wait_folded(channel: ChannelHub, entry_id: str) -> bool:
    """Wait (bounded) until this node's state has applied `entry_id`."""
    target = parse_stream_id(entry_id)
    deadline = time.monotonic() + FOLD_WAIT
    while target is not None:
        current = parse_stream_id(channel.state.cursor)
        if current is not None and current >= target:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return False


# -- publishing ------------------------------------------------------------------------------

async def submit(request: Request) -> Response:
    """Publish to one or more channels now, at a scheduled time, or (contributors) for
    approval. 201 `{items}` when published, 202 `{job}` when held back."""
    runtime = runtime_of(request)
    newsroom = runtime.newsroom
    who = await newsroom.auth.require(request, "contributor", csrf=True)
    body = await read_json_object(request, runtime.settings.max_body)
    now = now_ms()
    channels = check_channels(body.pop("channels", None), runtime)
    at = check_at(body.pop("at", None), now)
    if "text" not in body:
        raise ValidationError("text is missing", field="text")
    fields = to_fields(body, PUBLISH_FIELDS)
    fields["by"] = who.name
    if "translation_of" in fields:
        if len(channels) != 1:
            raise ValidationError("a translation goes to one edition", field="channels")
        fields["translation_of"] = check_link(runtime.hub.channels, channels[0],
                                              fields["translation_of"])
    entry = parse_entry(fields)
    canonical = entry_fields(entry)
    if at is not None and entry.expires is not None and entry.expires <= at:
        raise ValidationError("expires is before the scheduled time", field="expires")
    if who.user.role == "contributor" or at is not None:
        return await hold_back(newsroom, who, channels, canonical, at, now)
    return await publish_now(runtime, who, channels, canonical)


async def hold_back(newsroom: Newsroom, who: Principal, channels: list[str],
                    fields: dict[str, str], at: int | None, now: int) -> Response:
    kind = "pending" if who.user.role == "contributor" else "scheduled"
    job_id = new_id(fields.get("idem"), who.name)
    # Every job's entries carry an idempotency key: written twice, they are folded once.
    fields = {**fields, "idem": fields.get("idem") or f"job-{job_id}"}
    job = Job(id=job_id, kind=kind, channels=tuple(channels), fields=fields, by=who.name,
              created=now, at=at)
    detail = f"to {', '.join(channels)}" + (f", for {iso(at)}" if at else "")
    created = await newsroom.jobs.create(job, {
        "user": who.name, "action": "submit" if kind == "pending" else "schedule",
        "channel": ",".join(channels), "after": job.text, "detail": detail})
    return json_response({"job": job.id, "kind": kind, "at": at, "channels": channels,
                          "duplicate": not created}, 202 if created else 200)


async def publish_now(runtime: Runtime, who: Principal, channels: list[str],
                      fields: dict[str, str]) -> Response:
    idem = fields.get("idem")
    items: list[dict[str, str]] = []
    fresh: list[str] = []
    for name in channels:
        hub = runtime.hub.channel(name)
        earlier = hub.state.idem_item(idem) if hub is not None and idem else None
        if earlier is not None:
            items.append({"channel": name, "id": earlier, "duplicate": "true"})
        else:
            fresh.append(name)
    detail = f"urgency {fields.get('urgency', 'breaking')}"
    if "translation_of" in fields:
        detail += f", version of {fields['translation_of']}"
    audit: dict[str, str | None] = {
        "user": who.name, "action": "publish", "after": fields["text"], "detail": detail}
    for name in fresh:
        # One atomic step per channel (its stream and its audit share a slot); a retry with
        # the same idem after a failure half-way publishes only the missing channels.
        entry_id = await runtime.newsroom.journal.append(name, fields, audit,
                                                         item_is_entry=True)
        items.append({"channel": name, "id": entry_id})
    for item in items:
        hub = runtime.hub.channel(item["channel"])
        if hub is not None and "duplicate" not in item:
            await wait_folded(hub, item["id"])
    order = {name: n for n, name in enumerate(channels)}
    items.sort(key=lambda i: order[i["channel"]])
    return json_response({"items": items}, 201 if fresh else 200)


# -- lifecycle ops ---------------------------------------------------------------------------

async def act(request: Request) -> Response:
    """One op on one item. `version` (optional): refuse (409) if the item changed since."""
    runtime = runtime_of(request)
    who = await runtime.newsroom.auth.require(request, "editor", csrf=True)
    channel = channel_of(request)
    op = op_of(request)
    item_id = request.path_params["item"]
    body = await read_json_object(request, runtime.settings.max_body, optional=True)
    version = body.pop("version", None)
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise ValidationError("version must be a whole number", field="version")
    item = channel.state.items.get(item_id) if parse_stream_id(item_id) else None
    if item is None:
        raise HTTPError(404, "not_found", f"no item {item_id[:40]} in {channel.info.name}",
                        field="item")
    if item.killed:
        raise HTTPError(409, "conflict", "this item was killed", field="item")
    if version is not None and version != item.version:
        raise HTTPError(409, "conflict", f"changed by someone else since version {version} "
                        f"(now {item.version}); look again", field="version")
    if op == "kill" and not str(body.get("reason") or "").strip():
        raise ValidationError("say why it is killed", field="reason")
    all_versions = body.get("all_versions", False)
    if op == "kill" and not isinstance(all_versions, bool):
        raise ValidationError("all_versions must be true or false", field="all_versions")
    noop = {"hold": item.held, "release": not item.held, "pin": item.pinned,
            "unpin": not item.pinned}.get(op)
    if noop:
        raise HTTPError(409, "conflict", f"this item {NOOPS[op]}", field="op")
    fields = to_fields(body, OP_FIELDS[op])
    fields.update(op=op, item=item_id, by=who.name)
    entry = parse_entry(fields)
    if op == "kill" and all_versions:
        return await kill_versions(runtime, who, channel, item, entry.reason or "")
    audit: dict[str, str | None] = {"user": who.name, "action": op, "item": item_id,
                                    "before": item.text, "reason": entry.reason}
    if op == "confirm":
        other = needs_update(channel.peers, item)
        audit["detail"] = "no change needed" + (
            f" after the {other} correction" if other else "")
    if op == "correct":
        audit["after"] = entry.text or ""
        audit["detail"] = f"version {item.version} -> {item.version + 1}"
    elif op == "extend":
        new = entry.expires if entry.expires is not None else now_ms() + (entry.ttl or 0) * 1000
        audit["detail"] = f"expires {iso(item.expires)} -> about {iso(new)}"
    entry_id = await runtime.newsroom.journal.append(
        channel.info.name, entry_fields(entry), audit, item_is_entry=False)
    applied = await wait_folded(channel, entry_id)
    return json_response({"id": item_id, "cursor": entry_id, "op": op,
                          "channel": channel.info.name, "applied": applied}, 201)


async def kill_versions(runtime: Runtime, who: Principal, channel: ChannelHub, item: Item,
                        reason: str) -> Response:
    """Kill `item` and every standing version of its story, each with its own stream entry
    and audit entry (one per item), this edition first."""
    done: list[dict[str, Any]] = []
    targets = versions_of(channel.peers, channel.info.name, item)
    for name, target in targets:
        fields = entry_fields(parse_entry({"op": "kill", "item": target.id, "by": who.name,
                                           "reason": reason}))
        audit: dict[str, str | None] = {
            "user": who.name, "action": "kill", "item": target.id, "before": target.text,
            "reason": reason,
            "detail": f"with every version ({', '.join(n for n, _ in targets)})"}
        entry_id = await runtime.newsroom.journal.append(name, fields, audit,
                                                         item_is_entry=False)
        done.append({"id": target.id, "cursor": entry_id, "op": "kill", "channel": name})
    for row in done:
        row["applied"] = await wait_folded(channel.peers[row["channel"]], row["cursor"])
    first = done[0]
    return json_response({**first, "versions": done[1:]}, 201)


async def dismiss(request: Request) -> Response:
    """Take a story off one edition's translation queue (audited)."""
    runtime = runtime_of(request)
    who = await runtime.newsroom.auth.require(request, "editor", csrf=True)
    edition = request.path_params["edition"]
    if runtime.hub.channel(edition) is None:
        raise HTTPError(404, "not_found", f"no edition {edition[:40]!r}", field="edition")
    body = await read_json_object(request, runtime.settings.max_body)
    unknown = set(body) - {"story"}
    if unknown:
        name = sorted(unknown)[0][:40]
        raise ValidationError(f"unknown field {name!r}", field=name)
    raw = body.get("story")
    if not isinstance(raw, str):
        raise ValidationError("story is missing", field="story")
    try:
        channel_name, item_id = split_story(check_translation_of(raw))
    except ValidationError:
        raise ValidationError("story must be <channel>:<item id>", field="story") from None
    hub = runtime.hub.channel(channel_name)
    item = hub.state.items.get(item_id) if hub is not None else None
    if item is None or item.story != story_key(channel_name, item_id):
        raise HTTPError(404, "not_found", f"no original {raw[:80]} on this desk",
                        field="story")
    if channel_name == edition:
        raise ValidationError("an edition does not translate its own items", field="story")
    fresh = await runtime.newsroom.dismissals.dismiss(edition, item.story, who.name,
                                                      item.text)
    runtime.desk_feed.touch()
    return json_response({"edition": edition, "story": item.story, "dismissed": True,
                          "duplicate": not fresh}, 201 if fresh else 200)


# -- held-back jobs --------------------------------------------------------------------------

async def job_action(request: Request) -> Response:
    runtime = runtime_of(request)
    newsroom = runtime.newsroom
    action = request.path_params["action"]
    if action not in ("approve", "reject", "cancel"):
        raise HTTPError(404, "not_found", "no such action; approve, reject or cancel",
                        field="action")
    who = await newsroom.auth.require(request, "contributor", csrf=True)
    body = await read_json_object(request, runtime.settings.max_body, optional=True)
    unknown = set(body) - {"reason"}
    if unknown:
        name = sorted(unknown)[0]
        raise ValidationError(f"unknown field {name[:40]!r}", field=name[:40])
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValidationError("reason has the wrong type", field="reason")
    if reason is not None and reason.strip():
        reason = check_text(reason, "reason", MAX_REASON)
    else:
        reason = None
    found = await newsroom.jobs.get(request.path_params["job"][:64])
    if found is None:
        raise HTTPError(404, "not_found", "no such scheduled or pending item", field="job")
    job, raw = found
    own_pending = job.kind == "pending" and job.by == who.name and action == "cancel"
    if not who.user.can("editor") and not own_pending:
        raise HTTPError(403, "forbidden", f"this needs the editor role; you are "
                        f"{who.user.role}")
    if action == "approve":
        if job.kind != "pending":
            raise HTTPError(409, "conflict", "only pending items are approved", field="job")
        return await approve(runtime, who, job, raw)
    base = {"user": who.name, "action": action, "channel": ",".join(job.channels),
            "before": job.text, "reason": reason,
            "detail": f"{job.kind} item by {job.by}"}
    if action == "reject" and job.kind != "pending":
        raise HTTPError(409, "conflict", "only pending items are rejected; cancel it",
                        field="job")
    if not await newsroom.jobs.change(job, raw, None, base):
        raise HTTPError(409, "conflict", "it changed meanwhile (published or cancelled)",
                        field="job")
    return json_response({"job": job.id, "action": action})


async def approve(runtime: Runtime, who: Principal, job: Job, raw: bytes) -> Response:
    now = now_ms()
    if job.at is not None and job.at > now + 1000:
        later = Job(id=job.id, kind="scheduled", channels=job.channels, fields=job.fields,
                    by=job.by, created=job.created, at=job.at)
        ok = await runtime.newsroom.jobs.change(job, raw, later, {
            "user": who.name, "action": "approve", "channel": ",".join(job.channels),
            "after": job.text,
            "detail": f"by {job.by}, scheduled for {iso(job.at)}"})
        if not ok:
            raise HTTPError(409, "conflict", "it changed meanwhile", field="job")
        return json_response({"job": job.id, "action": "approve", "at": job.at}, 202)
    ids = await runtime.newsroom.jobs.release(job, raw, {
        "user": who.name, "action": "approve", "after": job.text,
        "detail": f"submitted by {job.by}"})
    if ids is None:
        raise HTTPError(409, "conflict", "it changed meanwhile (approved or withdrawn)",
                        field="job")
    items = []
    for name, entry_id in zip(job.channels, ids, strict=True):
        items.append({"channel": name, "id": entry_id})
        hub = runtime.hub.channel(name)
        if hub is not None:
            await wait_folded(hub, entry_id)
    return json_response({"job": job.id, "action": "approve", "items": items}, 201)


# -- reading -----------------------------------------------------------------------------

def me_of(who: Principal) -> dict[str, Any]:
    """Who is looking, as the desk view says it: name, role, language, default editions."""
    return {"name": who.name, "role": who.user.role, "lang": who.user.lang,
            "editions": list(who.user.editions)}


async def build_state(runtime: Runtime, who: Principal) -> dict[str, Any]:
    jobs = runtime.newsroom.jobs
    scheduled, pending = await jobs.held("scheduled"), await jobs.held("pending")
    dismissed = await runtime.newsroom.dismissals.load()
    view = desk_state(list(runtime.hub.channels.values()), now_ms(),
                      me_of(who), scheduled, pending,
                      dismissed)
    # Reach: how many screens each item was written to, summed over every node.
    for channel in view["channels"]:
        totals = await runtime.reach.totals(channel["name"], [i["id"] for i in channel["items"]])
        for item in channel["items"]:
            item["reach"] = totals.get(item["id"], 0)
    return view


async def state(request: Request) -> Response:
    runtime = runtime_of(request)
    who = await runtime.newsroom.auth.require(request, "contributor", csrf=False)
    return json_response(await build_state(runtime, who))


async def feed_view(runtime: Runtime, who: Principal) -> tuple[dict[str, Any], str]:
    """The desk view for the live feed, built once per change for every open desk of this
    process (`DeskFeed.shared`), and its key: the view without `now` and `me`, which each
    desk sets for itself when it sends the view (`who` is the first desk that asked; nothing
    else in the view depends on who looks). A desk sends a view whose key differs from the
    last one it sent."""
    view = await build_state(runtime, who)
    return view, json.dumps({**view, "now": 0, "me": None}, ensure_ascii=False)


async def events(request: Request) -> Response:
    """Server-Sent Events: `state` (the whole desk view) whenever it changes.

    The stream waits on the process's `DeskFeed` (ticker.node.deskfeed) and looks again only when
    it moved: an entry folded, a job changed on any node, or the once-a-second refresh
    (expiries, reach). The view is built once per change for all desks; this desk sends it
    only when it differs from what it last sent, and in a burst of changes looks at most once
    per FEED_GAP. `stale`: Redis is unreachable (the next `state` means it is back).
    `ended`: the session ended; it is checked before every `state` and every
    FEED_SESSION_CHECK seconds while nothing is sent, so an ended session is never sent
    another state. A keepalive comment after FEED_KEEPALIVE seconds without a message.

    Each response lives FEED_LIFETIME seconds, then ends and the browser reconnects (so a
    restarting node is never held up by desks, and an ended session stops getting state).
    """
    runtime = runtime_of(request)
    newsroom = runtime.newsroom
    desks = runtime.desk_feed
    who = await newsroom.auth.require(request, "contributor", csrf=False)
    me = me_of(who)

    async def build() -> tuple[dict[str, Any], str]:
        return await feed_view(runtime, who)

    async def feed() -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        clock = time.monotonic
        started = last_sent = checked = looked = clock()
        seen: int | None = None  # the feed version this desk last looked at
        last_key: str | None = None  # the key of the view last sent (None: send the next)
        told_stale = False
        with desks.watching():
            while clock() - started < FEED_LIFETIME:
                if seen == desks.version:
                    wake = min(started + FEED_LIFETIME, last_sent + FEED_KEEPALIVE,
                               checked + FEED_SESSION_CHECK)
                    await desks.wait(seen, wake - clock())
                    if seen != desks.version and clock() - looked < FEED_GAP:
                        # A burst: one look per gap, on a tick every desk shares (so one
                        # build serves them all).
                        await ticks.tick(FEED_GAP)
                moment = clock()
                stale = False
                try:
                    if seen != desks.version:
                        first, seen, looked = seen is None, desks.version, moment
                        stale = desks.stale and not first  # the watcher cannot reach Redis
                        if not stale:
                            view, key = await desks.shared(build)
                            if key != last_key:
                                checked = moment
                                if await newsroom.auth.current(request) is None:
                                    yield FEED_ENDED
                                    return
                                last_key, last_sent, told_stale = key, moment, False
                                data = json.dumps({**view, "now": now_ms(), "me": me},
                                                  ensure_ascii=False, separators=(",", ":"))
                                yield b"event: state\ndata: " + data.encode("utf-8") + b"\n\n"
                    if not stale and moment - checked >= FEED_SESSION_CHECK:
                        checked = moment
                        if await newsroom.auth.current(request) is None:
                            yield FEED_ENDED
                            return
                except RedisError:
                    stale = True
                if stale:
                    last_key = None  # the next view is sent, even unchanged: Redis is back
                    if not told_stale:
                        told_stale, last_sent = True, moment
                        yield FEED_STALE
                if moment - last_sent >= FEED_KEEPALIVE:
                    last_sent = moment
                    yield b": keepalive\n\n"

    return StreamingResponse(feed(), media_type="text/event-stream",
                             headers={**NO_STORE, "X-Accel-Buffering": "no"})


async def audit_json(request: Request) -> Response:
    runtime = runtime_of(request)
    await runtime.newsroom.auth.require(request, "editor", csrf=False)
    query = audit_query(request, runtime)
    page = await runtime.newsroom.audit.query(**query)
    return json_response({"entries": [e.public() for e in page.entries], "older": page.older})


def audit_query(request: Request, runtime: Runtime) -> dict[str, Any]:
    """The audit filters from the query string: user, channel, before, limit (validated)."""
    params = request.query_params
    unknown = set(params.keys()) - {"user", "channel", "before", "limit"}
    if unknown:
        name = sorted(unknown)[0][:40]
        raise ValidationError(f"unknown parameter {name!r}", field=name)
    user = params.get("user", "").strip() or None
    if user is not None:
        try:
            user = check_name(user)
        except ValidationError as exc:
            raise ValidationError(exc.message, field="user") from None
    channel = params.get("channel", "").strip() or None
    if channel is not None and runtime.hub.channel(channel) is None:
        raise ValidationError(f"no channel {channel[:40]!r}", field="channel")
    before = params.get("before", "").strip() or None
    if before is not None and parse_stream_id(before) is None:
        raise ValidationError("before must be an audit entry id", field="before")
    raw_limit = params.get("limit", "100").strip()
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise ValidationError("limit must be 1..1000", field="limit")
    return {"user": user, "channel": channel, "before": before, "limit": int(raw_limit)}


routes = [
    Route("/desk/api/items", submit, methods=["POST"]),
    Route("/desk/api/items/{channel}/{item}/{op}", act, methods=["POST"]),
    Route("/desk/api/translate/{edition}/dismiss", dismiss, methods=["POST"]),
    Route("/desk/api/jobs/{job}/{action}", job_action, methods=["POST"]),
    Route("/desk/api/state", state, methods=["GET"]),
    Route("/desk/api/events", events, methods=["GET"]),
    Route("/desk/api/audit", audit_json, methods=["GET"]),
]
