"""The reach endpoints of the HTTP API (bearer token): how many screens showed an item.

`GET /api/channels/{channel}/items/{item}/reach` answers one item's total, `GET
/api/channels/{channel}/reach[?ids=a,b]` several (every item on air without `ids`); totals
are summed over every node, with what this process has not flushed yet (`ticker.redis.reach`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticker.core.clock import now_ms
from ticker.core.contract import ChannelReach, ItemReach
from ticker.core.errors import HTTPError
from ticker.core.items import parse_stream_id
from ticker.redis.reach import Reach
from ticker.transport.http import bearer_name, channel_of, json_response

MAX_IDS = 100  # per bulk request


def _reach_of(request: Request) -> Reach:
    reach: Reach = request.state.ticker.reach
    return reach


async def item_reach(request: Request) -> Response:
    """GET /api/channels/{channel}/items/{item}/reach: {channel, id, reach} (bearer token)."""
    channel = channel_of(request)
    await bearer_name(request)
    item_id = request.path_params["item"]
    if parse_stream_id(item_id) is None:
        raise HTTPError(404, "not_found", "no such item", field="item")
    totals = await _reach_of(request).totals(channel.info.name, [item_id])
    return json_response(ItemReach(channel=channel.info.name, id=item_id, reach=totals[item_id]),
                         headers={"Cache-Control": "no-store"})


async def channel_reach(request: Request) -> Response:
    """GET /api/channels/{channel}/reach[?ids=a,b]: reach of the given items, or of every
    item on air now: {channel, reach: {id: total}} (bearer token)."""
    channel = channel_of(request)
    await bearer_name(request)
    raw = request.query_params.get("ids")
    if raw is None:
        ids = [it.id for it in channel.state.on_air(now_ms())]
    else:
        ids = [i.strip() for i in raw.split(",") if i.strip()]
        if len(ids) > MAX_IDS:
            raise HTTPError(422, "invalid", f"at most {MAX_IDS} ids", field="ids")
        bad = [i for i in ids if parse_stream_id(i) is None]
        if bad:
            raise HTTPError(422, "invalid", f"not an item id: {bad[0][:64]!r}", field="ids")
    totals = await _reach_of(request).totals(channel.info.name, ids)
    return json_response(ChannelReach(channel=channel.info.name, reach=totals),
                         headers={"Cache-Control": "no-store"})


routes = [
    Route("/api/channels/{channel}/items/{item}/reach", item_reach, methods=["GET"]),
    Route("/api/channels/{channel}/reach", channel_reach, methods=["GET"]),
]
