"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json.

Kept beside the handlers it describes (ticker.api); tests fuzz the API against it, so a
drift between the two shows up as a failing test, not as a surprise for an integrator.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ticker.items import MAX_LINK, MAX_REASON, MAX_SOURCE, MAX_TAGS, MAX_TEXT, MAX_TTL

ERROR = {"$ref": "#/components/schemas/Error"}
CHANNEL = {"name": "channel", "in": "path", "required": True,
           "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"}}
ITEM_ID = {"name": "item", "in": "path", "required": True,
           "schema": {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "error", "content": {"application/json": {"schema": ERROR}}}
            for c in codes}


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
    "link": {"type": "string", "maxLength": MAX_LINK, "pattern": "^https://"},
    "tags": {"type": "array", "maxItems": MAX_TAGS,
             "items": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"}},
    "ttl": {"type": "integer", "minimum": 1, "maximum": MAX_TTL},
    "expires": {"type": "integer", "minimum": 1,
                "description": "epoch milliseconds (or an ISO 8601 string with a zone)"},
    "idem": {"type": "string", "minLength": 1, "maxLength": 128},
    "reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON},
}


def _object(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False,
            "properties": {n: FIELDS[n] for n in names}, "required": list(required)}


def spec() -> dict[str, Any]:
    """The document. Stable: built from constants only."""
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
    paths: dict[str, Any] = {
        "/api/channels": {"get": {
            "summary": "The configured channels (editions)",
            "responses": {"200": _json({"type": "object"})}}},
        "/api/channels/{channel}/items": {
            "get": {"summary": "What is on air now", "parameters": [CHANNEL],
                    "responses": {"200": _json({"type": "object", "properties": {
                        "items": {"type": "array", "items": item}}}), **_errors(404)}},
            "post": {"summary": "Publish an item", "parameters": [CHANNEL],
                     "security": secured,
                     "requestBody": _body(_object("text", "source", "urgency", "link", "tags",
                                                  "ttl", "expires", "idem",
                                                  required=("text",))),
                     "responses": {"201": _json(created, "published"),
                                   "200": _json(created, "a duplicate of an idem key"),
                                   **_errors(400, 401, 404, 409, 413, 415, 422, 503)}}},
        "/api/channels/{channel}/snapshot": {"get": {
            "summary": "The snapshot message (docs/protocol.md), cacheable: the polling fallback",
            "parameters": [CHANNEL],
            "responses": {"200": _json({"type": "object"}), **_errors(404)}}},
    }
    for op, body in op_bodies.items():
        paths[f"/api/channels/{{channel}}/items/{{item}}/{op}"] = {"post": {
            "summary": f"{op.capitalize()} an item", "parameters": [CHANNEL, ITEM_ID],
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
    return JSONResponse(spec(), headers={"Cache-Control": "public, max-age=300"})


routes = [Route("/api/openapi.json", endpoint, methods=["GET"])]
