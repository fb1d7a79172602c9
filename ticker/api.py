"""The JSON API: publish and act on items (bearer token), read what is on air.

Writes validate exactly as the reader does (`items.parse_entry`), then XADD; the reader
fans the entry out like any other publisher's, so HTTP and raw Redis behave the same.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ticker.cors import reader_headers
from ticker.errors import Unavailable, ValidationError
from ticker.httpio import HTTPError, read_json_object
from ticker.hub import ChannelHub
from ticker.items import MAX_TAGS, OPS, TAGS_PATTERN, entry_fields, parse_entry, parse_stream_id
from ticker.runtime import Runtime

IDEM_TTL = 24 * 3600
PUBLISH_FIELDS = {"text", "source", "urgency", "link", "tags", "ttl", "expires", "idem"}
OP_FIELDS: dict[str, set[str]] = {
    "correct": {"text", "source", "urgency", "link", "tags", "reason"},
    "kill": {"reason"},
    "hold": {"reason"},
    "release": set(),
    "pin": set(),
    "unpin": set(),
    "extend": {"ttl", "expires"},
}


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.state.ticker
    return runtime


def channel_of(request: Request) -> ChannelHub:
    name = request.path_params["channel"]
    channel = runtime_of(request).hub.channel(name)
    if channel is None:
        raise HTTPError(404, "not_found", f"no channel {name!r}", field="channel")
    return channel


async def bearer_name(request: Request) -> str:
    """The token owner's name; 401 without a valid `Authorization: Bearer` token."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPError(401, "unauthorized", "send Authorization: Bearer <token>",
                        headers={"WWW-Authenticate": 'Bearer realm="ticker"'})
    try:
        name = await runtime_of(request).store.verify_token(token.strip())
    except RedisError:
        raise Unavailable("Redis is unreachable; try again") from None
    if name is None:
        raise HTTPError(401, "unauthorized", "unknown or revoked token",
                        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return name


URGENCY_VALUES = ("flash", "urgent", "breaking", 1, 3, 5)
TAGS_STRING = re.compile(TAGS_PATTERN)


def to_fields(body: dict[str, Any], allowed: set[str]) -> dict[str, str]:
    """JSON values -> stream field strings, refusing unknown fields and wrong types.

    JSON is typed, so types are strict here (the OpenAPI description says the same): tags
    is a list (or the stream's comma-separated string), ttl an integer, expires an integer
    (epoch ms) or an ISO 8601 string, urgency a name or an IPTC number. null means "not
    given".
    """
    fields: dict[str, str] = {}
    for key, value in body.items():
        if key not in allowed:
            raise ValidationError(f"unknown field {key!r}", field=key)
        if value is None:
            continue
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if key == "tags" and isinstance(value, str):
            # "a,b": the stream's own form; strict here, as the OpenAPI pattern says.
            if value.strip() and not TAGS_STRING.fullmatch(value):
                raise ValidationError(f"tags: up to {MAX_TAGS} comma-separated tags of "
                                      "a-z, 0-9, '-', '_'", field="tags")
            fields[key] = value
        elif key == "tags":
            # A list names each tag: none may be blank or hide a second one behind a comma.
            if not isinstance(value, list) or not all(
                    isinstance(t, str) and t.strip() and "," not in t for t in value):
                raise ValidationError("tags must be a list of non-empty strings without "
                                      "commas, or one comma-separated string", field="tags")
            if len(value) > MAX_TAGS:
                raise ValidationError(f"at most {MAX_TAGS} tags", field="tags")
            fields[key] = ",".join(value)
        elif key == "urgency":
            if value not in URGENCY_VALUES or isinstance(value, bool):
                raise ValidationError("urgency must be flash, urgent or breaking (or 1, 3, 5)",
                                      field="urgency")
            fields[key] = str(value)
        elif key == "ttl":
            if not is_int:
                raise ValidationError("ttl must be a whole number of seconds", field="ttl")
            fields[key] = str(value)
        elif key == "expires":
            if not (is_int or isinstance(value, str)):
                raise ValidationError("expires must be epoch milliseconds or an ISO 8601 "
                                      "string", field="expires")
            fields[key] = str(value)
        elif isinstance(value, str):
            fields[key] = value
        else:
            raise ValidationError(f"{key} must be a string", field=key)
    return fields


async def append(request: Request, channel: ChannelHub, fields: dict[str, str]) -> str:
    entry = parse_entry(fields)
    try:
        return await runtime_of(request).store.append(channel.info.name, entry_fields(entry))
    except RedisError:
        raise Unavailable(
            "Redis is unreachable: the item was not published; retry (with an idem key)"
        ) from None


async def publish(request: Request) -> Response:
    by = await bearer_name(request)  # who asks comes first: no token, no other answer
    channel = channel_of(request)
    body = await read_json_object(request, runtime_of(request).settings.max_body)
    if "text" not in body:
        raise ValidationError("text is missing", field="text")
    fields = to_fields(body, PUBLISH_FIELDS)
    fields["by"] = by
    idem = fields.get("idem", "").strip()
    if idem:
        return await publish_once(request, channel, fields, idem)
    entry_id = await append(request, channel, fields)
    return created(request, channel, entry_id)


def created(request: Request, channel: ChannelHub, entry_id: str) -> Response:
    return JSONResponse({"id": entry_id, "cursor": entry_id, "channel": channel.info.name},
                        status_code=201, headers={"Location": request.url.path + "/" + entry_id})


def duplicate(channel: ChannelHub, item_id: str) -> Response:
    return JSONResponse({"id": item_id, "cursor": item_id, "channel": channel.info.name,
                         "duplicate": True}, status_code=200)


async def publish_once(request: Request, channel: ChannelHub, fields: dict[str, str],
                       idem: str) -> Response:
    """Publish with an idempotency key: a retry within 24 h answers the first item's id.

    The key is claimed in Redis (SET NX) before the XADD, so two nodes cannot both publish
    it; the fold (ChannelState) also drops a repeated `idem`, which covers publishers that
    XADD straight into Redis.
    """
    parse_entry(fields)  # validate before claiming the key
    earlier = channel.state.idem_item(idem)
    if earlier is not None:
        return duplicate(channel, earlier)
    runtime = runtime_of(request)
    key = runtime.keys.idem(channel.info.name, idem)
    redis = runtime.store.redis
    try:
        if not await redis.set(key, b"pending", nx=True, ex=IDEM_TTL):
            raw = await redis.get(key)
            existing = raw.decode() if isinstance(raw, bytes) else raw
            if existing is None or existing == "pending":
                raise HTTPError(409, "conflict", "a publish with this idem key is in progress; "
                                "retry in a moment", field="idem")
            return duplicate(channel, existing)
    except RedisError:
        raise Unavailable("Redis is unreachable; retry with the same idem key") from None
    try:
        entry_id = await append(request, channel, fields)
    except Unavailable:
        with contextlib.suppress(RedisError):
            await redis.delete(key)
        raise
    with contextlib.suppress(RedisError):
        await redis.set(key, entry_id.encode(), ex=IDEM_TTL)
    return created(request, channel, entry_id)


async def act(request: Request) -> Response:
    by = await bearer_name(request)
    channel = channel_of(request)
    op = request.path_params["op"]
    item_id = request.path_params["item"]
    if op not in OP_FIELDS:
        raise HTTPError(404, "not_found", f"no op {op!r}; one of {', '.join(OPS[1:])}",
                        field="op")
    if parse_stream_id(item_id) is None:
        raise HTTPError(404, "not_found", "no such item", field="item")
    body = await read_json_object(request, runtime_of(request).settings.max_body,
                                  optional=True)
    item = channel.state.items.get(item_id)
    if item is None:
        raise HTTPError(404, "not_found", f"no item {item_id} in {channel.info.name}",
                        field="item")
    if item.killed:
        raise HTTPError(409, "conflict", f"item {item_id} was killed", field="item")
    fields = to_fields(body, OP_FIELDS[op])
    fields.update(op=op, item=item_id, by=by)
    entry_id = await append(request, channel, fields)
    return JSONResponse({"id": item_id, "cursor": entry_id, "op": op,
                         "channel": channel.info.name}, status_code=201)


async def on_air(request: Request) -> Response:
    channel = channel_of(request)
    now = int(time.time() * 1000)
    items = [it.public() for it in channel.state.on_air(now)]
    return JSONResponse({"channel": channel.info.name, "cursor": channel.state.cursor,
                         "now": now, "items": items},
                        headers={"Cache-Control": "public, max-age=2"})


async def snapshot(request: Request) -> Response:
    """The snapshot frame as plain JSON: the polling fallback, cacheable for a few seconds."""
    channel = channel_of(request)
    payload = channel.snapshot_payload(int(time.time() * 1000))
    # Readable by the widget on allowed other origins (polling fallback), like /sse.
    headers = {"Cache-Control": "public, max-age=2",
               **reader_headers(request, runtime_of(request))}
    return Response(payload, media_type="application/json", headers=headers)


async def channels(request: Request) -> Response:
    runtime = runtime_of(request)
    return JSONResponse({"channels": [c.info() for c in runtime.settings.channels]})


async def items(request: Request) -> Response:
    """One route for the collection, so a 405 lists every method it has (Allow)."""
    return await (publish(request) if request.method == "POST" else on_air(request))


routes = [
    Route("/api/channels", channels, methods=["GET"]),
    Route("/api/channels/{channel}/items", items, methods=["GET", "POST"]),
    Route("/api/channels/{channel}/snapshot", snapshot, methods=["GET"]),
    Route("/api/channels/{channel}/items/{item}/{op}", act, methods=["POST"]),
]
