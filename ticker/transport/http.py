"""HTTP input helpers shared by the edges: bounded body reading and JSON errors."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ticker.core.errors import HTTPError, TickerError


def error_response(exc: TickerError) -> JSONResponse:
    headers = getattr(exc, "headers", None)
    return JSONResponse(exc.as_dict(), status_code=exc.status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPError(400, "bad_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise HTTPError(413, "too_large", f"body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPError(413, "too_large", f"body is larger than {limit} bytes")
    return bytes(body)


async def read_json_object(request: Request, limit: int, *, optional: bool = False
                           ) -> dict[str, Any]:
    """A JSON object body (Content-Type application/json), bounded; clear 4xx otherwise."""
    body = await read_body(request, limit)
    if optional and not body.strip():
        return {}
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise HTTPError(415, "unsupported_media_type", "send Content-Type: application/json")
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPError(400, "bad_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise HTTPError(422, "invalid", "body must be a JSON object", field="body")
    return value
