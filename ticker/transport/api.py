"""The JSON API: publish and act on items (bearer token), read what is on air.

Every request body is decoded into its request Struct (`ticker.core.contract`: the types and
constraints /api/openapi.json states), then validated exactly as the reader validates any
entry (`items.parse_entry`: one line, no control characters, ...), then XADDed; the reader
fans the entry out like any other publisher's, so HTTP and raw Redis behave the same.
Answers are built from the response Structs of the same module (the snapshot is the hub's
cached message, whose shape `contract.Snapshot` describes; tests check it).
"""

from __future__ import annotations

import contextlib

import msgspec
from msgspec import UNSET, UnsetType
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticker.core.clock import now_ms
from ticker.core.contract import (
    OP_REQUESTS,
    Applied,
    ChannelInfo,
    Channels,
    Item,
    KillRequest,
    OnAir,
    Published,
    PublishRequest,
    decode,
    stream_fields,
)
from ticker.core.editions import check_link, versions_of
from ticker.core.errors import HTTPError
from ticker.core.hub import ChannelHub
from ticker.core.items import entry_fields, parse_entry, parse_stream_id
from ticker.node.runtime import runtime_of
from ticker.transport.cors import reader_headers
from ticker.transport.http import (
    bearer_name,
    channel_of,
    json_response,
    op_of,
    read_json_object,
)

IDEM_TTL = 24 * 3600
async def append(request: Request, channel: ChannelHub, fields: dict[str, str]
                 ) -> tuple[str, int | UnsetType]:
    """Validate and XADD; (the entry's id, how many replicas had it, when configured)."""
    entry = parse_entry(fields)
    entry_id, replicas = await runtime_of(request).store.append(
        channel.info.name, entry_fields(entry))
    return entry_id, UNSET if replicas is None else replicas


async def publish(request: Request) -> Response:
    by = await bearer_name(request)  # who asks comes first: no token, no other answer
    channel = channel_of(request)
    body = await read_json_object(request, runtime_of(request).settings.max_body)
    fields = stream_fields(decode(body, PublishRequest))
    fields["by"] = by
    if "translation_of" in fields:
        fields["translation_of"] = check_link(channel.peers, channel.info.name,
                                              fields["translation_of"])
    idem = fields.get("idem", "").strip()
    if idem:
        return await publish_once(request, channel, fields, idem)
    entry_id, replicas = await append(request, channel, fields)
    return created(request, channel, entry_id, replicas)


def created(request: Request, channel: ChannelHub, entry_id: str,
            replicas: int | UnsetType = UNSET) -> Response:
    return json_response(Published(id=entry_id, cursor=entry_id, channel=channel.info.name,
                                   replicas=replicas),
                         201, {"Location": request.url.path + "/" + entry_id})


def duplicate(channel: ChannelHub, item_id: str) -> Response:
    return json_response(Published(id=item_id, cursor=item_id, channel=channel.info.name,
                                   duplicate=True))


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
    if not await redis.set(key, b"pending", nx=True, ex=IDEM_TTL):
        raw = await redis.get(key)
        existing = raw.decode() if isinstance(raw, bytes) else raw
        if existing is None or existing == "pending":
            raise HTTPError(409, "conflict", "a publish with this idem key is in progress; "
                            "retry in a moment", field="idem")
        return duplicate(channel, existing)
    try:
        entry_id, replicas = await append(request, channel, fields)
    except Exception:  # not written (Redis failed, or the entry was refused): free the key
        with contextlib.suppress(RedisError):
            await redis.delete(key)
        raise
    with contextlib.suppress(RedisError):
        await redis.set(key, entry_id.encode(), ex=IDEM_TTL)
    return created(request, channel, entry_id, replicas)


async def act(request: Request) -> Response:
    by = await bearer_name(request)
    channel = channel_of(request)
    op = op_of(request)
    item_id = request.path_params["item"]
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
    decoded = decode(body, OP_REQUESTS[op])
    fields = stream_fields(decoded)
    fields.update(op=op, item=item_id, by=by)
    targets = [(channel.info.name, item)]
    if isinstance(decoded, KillRequest) and decoded.all_versions:
        targets = versions_of(channel.peers, channel.info.name, item)
    done: list[Applied] = []
    for name, target in targets:  # this edition first: its kill is the one asked for
        entry_id, replicas = await append(request, channel.peers[name],
                                          {**fields, "item": target.id})
        done.append(Applied(id=target.id, cursor=entry_id, op=op, channel=name,
                            replicas=replicas))
    first = done[0]
    if len(targets) > 1:
        first.versions = done[1:]
    return json_response(first, 201)


async def on_air(request: Request) -> Response:
    channel = channel_of(request)
    now = now_ms()
    items = [Item(**it.public()) for it in channel.state.on_air(now)]
    return json_response(OnAir(channel=channel.info.name, cursor=channel.state.cursor, now=now,
                               items=items), headers={"Cache-Control": "public, max-age=2"})


async def snapshot(request: Request) -> Response:
    """The snapshot frame as plain JSON: the polling fallback, cacheable for a few seconds."""
    channel = channel_of(request)
    payload = channel.snapshot_payload(now_ms())
    # Readable by the widget on allowed other origins (polling fallback), like /sse.
    headers = {"Cache-Control": "public, max-age=2",
               **reader_headers(request, runtime_of(request))}
    return Response(payload, media_type="application/json", headers=headers)


async def channels(request: Request) -> Response:
    runtime = runtime_of(request)
    infos = [msgspec.convert(c.info(), ChannelInfo) for c in runtime.settings.channels]
    return json_response(Channels(channels=infos))


async def items(request: Request) -> Response:
    """One route for the collection, so a 405 lists every method it has (Allow)."""
    return await (publish(request) if request.method == "POST" else on_air(request))


routes = [
    Route("/api/channels", channels, methods=["GET"]),
    Route("/api/channels/{channel}/items", items, methods=["GET", "POST"]),
    Route("/api/channels/{channel}/snapshot", snapshot, methods=["GET"]),
    Route("/api/channels/{channel}/items/{item}/{op}", act, methods=["POST"]),
]
