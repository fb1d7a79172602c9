"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json.

Nothing here is a hand-written schema: the component schemas are msgspec's rendering of the
request and response Structs that ticker.transport.api validates and answers with
(ticker.core.contract), and the paths are built from OPERATIONS, one row per operation.
tests/test_contract.py checks that every API route (ticker.transport.api, .reach) is here
and that each request schema is exactly its Struct's; tests fuzz the API against the
document (schemathesis), so a drift shows up as a failing test, not as a surprise for an integrator.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final

import msgspec
from msgspec import Struct
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ticker.core.contract import (
    OP_REQUESTS,
    Applied,
    ChannelReach,
    Channels,
    Error,
    ItemReach,
    OnAir,
    Published,
    PublishRequest,
    Snapshot,
)
from ticker.core.items import ITEM_RULE
from ticker.transport.reach import MAX_IDS

REF: Final = "#/components/schemas/{name}"
# Every write can fail in these ways (see the Error body's `error` and `field`).
# 507: Redis out of memory or its disk full (docs/reliability.md).
WRITE_ERRORS: Final = (400, 401, 404, 409, 413, 415, 422, 503, 507)


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of the document. Path parameters follow from `path`."""

    method: str
    path: str
    operation_id: str
    summary: str
    answers: Mapping[int, tuple[type[Struct], str]]  # status -> (body, description)
    errors: tuple[int, ...] = ()  # statuses answered with an Error body (429 is added)
    request: type[Struct] | None = None
    request_required: bool = True
    secured: bool = False  # needs `Authorization: Bearer <token>`
    query: tuple[str, ...] = ()  # query parameters (spec's `parameters`)


OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation("get", "/api/channels", "channels", "The configured channels (editions)",
              {200: (Channels, "ok")}),
    Operation("get", "/api/channels/{channel}/items", "onAir", "What is on air now",
              {200: (OnAir, "ok")}, errors=(404,)),
    Operation("post", "/api/channels/{channel}/items", "publish", "Publish an item",
              {201: (Published, "published"), 200: (Published, "a duplicate of an idem key")},
              errors=WRITE_ERRORS, request=PublishRequest, secured=True),
    Operation("get", "/api/channels/{channel}/snapshot", "snapshot",
              "The snapshot message (docs/protocol.md), cacheable: the polling fallback",
              {200: (Snapshot, "ok")}, errors=(404,)),
    *(Operation("post", f"/api/channels/{{channel}}/items/{{item}}/{op}", op,
                f"{op.capitalize()} an item", {201: (Applied, "appended")},
                errors=WRITE_ERRORS, request=shape, request_required=False, secured=True)
      for op, shape in OP_REQUESTS.items()),
    Operation("get", "/api/channels/{channel}/items/{item}/reach", "itemReach",
              "How many reader connections the item was written to (ticker.transport.reach)",
              {200: (ItemReach, "ok")}, errors=(401, 404, 503), secured=True),
    Operation("get", "/api/channels/{channel}/reach", "channelReach",
              "Reach of the given items, or of every item on air without `ids`",
              {200: (ChannelReach, "ok")}, errors=(401, 404, 422, 503), secured=True,
              query=("ids",)),
)


@functools.cache
def components() -> tuple[dict[type[Struct], dict[str, Any]], dict[str, Any]]:
    """({Struct: its $ref}, the component schemas) for every Struct the document names."""
    shapes: list[type[Struct]] = [Error]
    for operation in OPERATIONS:
        for shape in (operation.request, *(body for body, _ in operation.answers.values())):
            if shape is not None and shape not in shapes:
                shapes.append(shape)
    refs, schemas = msgspec.json.schema_components(shapes, ref_template=REF)
    return dict(zip(shapes, refs, strict=True)), schemas


def spec(channels: tuple[str, ...] = ("en",)) -> dict[str, Any]:
    """The document for a server with these channels (the `channel` parameter's values)."""
    refs, schemas = components()
    parameters = {
        "channel": {"name": "channel", "in": "path", "required": True,
                    "schema": {"type": "string", "enum": list(channels)}},
        "item": {"name": "item", "in": "path", "required": True,
                 "description": "the item's id: the stream ID of its publish entry",
                 "schema": msgspec.json.schema(Annotated[str, ITEM_RULE])},
        "ids": {"name": "ids", "in": "query", "required": False,
                "description": f"comma-separated item ids, at most {MAX_IDS}",
                "schema": {"type": "string"}},
    }
    # What a client can do next with a published item's id.
    links = {op: {"operationId": op, "parameters": {"channel": "$request.path.channel",
                                                     "item": "$response.body#/id"}}
             for op in OP_REQUESTS}

    def content(shape: type[Struct]) -> dict[str, Any]:
        return {"application/json": {"schema": dict(refs[shape])}}

    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        responses: dict[str, Any] = {
            str(status): {"description": description, "content": content(shape)}
            for status, (shape, description) in op.answers.items()}
        if op.operation_id == "publish":
            responses["201"]["links"] = links
        # 429: every address is rate limited (TICKER_RATE_LIMIT).
        for status in (*op.errors, 429):
            responses[str(status)] = {"description": "error", "content": content(Error)}
        operation: dict[str, Any] = {"summary": op.summary, "operationId": op.operation_id}
        names = [name for name in parameters if f"{{{name}}}" in op.path or name in op.query]
        if names:
            operation["parameters"] = [parameters[name] for name in names]
        if op.secured:
            operation["security"] = [{"bearer": []}]
        if op.request is not None:
            operation["requestBody"] = {"required": op.request_required,
                                        "content": content(op.request)}
        operation["responses"] = responses
        paths.setdefault(op.path, {})[op.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "ticker", "version": "1",
                 "description": "Publish to and read a live breaking-news ticker."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": copy.deepcopy(schemas),
        },
    }


async def endpoint(request: Request) -> Response:
    names = request.state.ticker.settings.channel_names
    return JSONResponse(spec(names), headers={"Cache-Control": "public, max-age=300"})


routes = [Route("/api/openapi.json", endpoint, methods=["GET"])]
