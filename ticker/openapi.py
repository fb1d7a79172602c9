"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json.

Kept beside the handlers it describes (ticker.api); tests fuzz the API against it, so a
drift between the two shows up as a failing test, not as a surprise for an integrator.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ticker.items import (
    LINK,
    MAX_LINK,
    MAX_REASON,
    MAX_SOURCE,
    MAX_TAGS,
    MAX_TEXT,
    MAX_TTL,
    TAGS_PATTERN,
)

ERROR = {"$ref": "#/components/schemas/Error"}
ITEM_ID = {"name": "item", "in": "path", "required": True,
           "schema": {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"}}


def _errors(*codes: int) -> dict[str, Any]:
    # 429: every address is rate limited (TICKER_RATE_LIMIT).
    return {str(c): {"description": "error", "content": {"application/json": {"schema": ERROR}}}
            for c in (*codes, 429)}


def _json(schema: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT,
        "description": "one line of plain text, 1-280 characters after NFC normalisation"}
FIELDS: dict[str, Any] = {
    "text": TEXT,
    "source": {"type": "string", "maxLength": MAX_SOURCE},
    "urgency": {"enum": ["flash", "urgent", "breaking", 1, 3, 5]},
    "link": {"type": "string", "maxLength": MAX_LINK, "pattern": "^" + LINK.pattern + "$"},
    "tags": {"anyOf": [
        {"type": "array", "maxItems": MAX_TAGS,
         "items": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"}},
        {"type": "string", "description": "comma separated",
         "pattern": f"^{TAGS_PATTERN}$"}]},
    "ttl": {"type": "integer", "minimum": 1, "maximum": MAX_TTL},
    "expires": {"anyOf": [{"type": "integer", "minimum": 1},
                          {"type": "string", "format": "date-time"}],
                "description": "epoch milliseconds, or an ISO 8601 time with a zone"},
    "idem": {"type": "string", "minLength": 1, "maxLength": 128},
    "reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON},
}


def _optional(schema: dict[str, Any]) -> dict[str, Any]:
    # An optional field may be null or a blank string: both mean "not given".
    return {"anyOf": [schema, {"type": "null"}, {"type": "string", "pattern": r"^\s*$"}]}


def _object(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False,
            "properties": {n: FIELDS[n] if n in required else _optional(FIELDS[n])
                           for n in names},
            "required": list(required)}


def spec(channels: tuple[str, ...] = ("en",)) -> dict[str, Any]:
    """The document for a server with these channels (the `channel` parameter's values)."""
    channel = {"name": "channel", "in": "path", "required": True,
               "schema": {"type": "string", "enum": list(channels)}}
    item = {"type": "object", "required": ["id", "text", "urgency", "ts", "expires"],
            "properties": {
                "id": {"type": "string"}, "text": {"type": "string"},
                "source": {"type": ["string", "null"]}, "urgency": {"type": "string"},
                "link": {"type": ["string", "null"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "ts": {"type": "integer"}, "expires": {"type": "integer"},
                "version": {"type": "integer"}, "corrected": {"type": "boolean"},
                "pinned": {"type": "boolean"}}}
    created = {"type": "object", "required": ["id", "cursor", "channel"],
               "properties": {"id": {"type": "string"}, "cursor": {"type": "string"},
                              "channel": {"type": "string"}, "op": {"type": "string"},
                              "duplicate": {"type": "boolean"}}}
    op_bodies = {
        "correct": _object("text", "source", "urgency", "link", "tags", "reason",
                           required=("text",)),
        "kill": _object("reason"), "hold": _object("reason"), "release": _object(),
        "pin": _object(), "unpin": _object(), "extend": _object("ttl", "expires"),
    }
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    # What a client can do next with a published item's id.
    links = {op: {"operationId": op, "parameters": {"channel": "$request.path.channel",
                                                     "item": "$response.body#/id"}}
             for op in op_bodies}
    paths: dict[str, Any] = {
        "/api/channels": {"get": {
            "summary": "The configured channels (editions)",
            "responses": {"200": _json({"type": "object"}), **_errors()}}},
        "/api/channels/{channel}/items": {
            "get": {"summary": "What is on air now", "parameters": [channel],
                    "responses": {"200": _json({"type": "object", "properties": {
                        "items": {"type": "array", "items": item}}}), **_errors(404)}},
            "post": {"summary": "Publish an item", "operationId": "publish",
                     "parameters": [channel],
                     "security": secured,
                     "requestBody": _body(_object("text", "source", "urgency", "link", "tags",
                                                  "ttl", "expires", "idem",
                                                  required=("text",))),
                     "responses": {"201": {**_json(created, "published"), "links": links},
                                   "200": _json(created, "a duplicate of an idem key"),
                                   **_errors(400, 401, 404, 409, 413, 415, 422, 503)}}},
        "/api/channels/{channel}/snapshot": {"get": {
            "summary": "The snapshot message (docs/protocol.md), cacheable: the polling fallback",
            "parameters": [channel],
            "responses": {"200": _json({"type": "object"}), **_errors(404)}}},
    }
    for op, body in op_bodies.items():
        paths[f"/api/channels/{{channel}}/items/{{item}}/{op}"] = {"post": {
            "summary": f"{op.capitalize()} an item", "operationId": op,
            "parameters": [channel, ITEM_ID],
            "security": secured, "requestBody": _body(body, required=False),
            "responses": {"201": _json(created, "appended"),
                          **_errors(400, 401, 404, 409, 413, 415, 422, 503)}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ticker", "version": "1",
                 "description": "Publish to and read a live breaking-news ticker."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {
                "type": "object", "required": ["error", "message"],
                "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                               "field": {"type": "string"}}}},
        },
    }


async def endpoint(request: Request) -> Response:
    names = request.state.ticker.settings.channel_names
    return JSONResponse(spec(names), headers={"Cache-Control": "public, max-age=300"})


routes = [Route("/api/openapi.json", endpoint, methods=["GET"])]
