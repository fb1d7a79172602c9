"""What every HTTP endpoint shares: bounded bodies, JSON answers and errors, the channel
named in the path, and the owner of a bearer token."""

from __future__ import annotations

import json
from typing import Any

from msgspec import Struct
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ticker.core.contract import encode
from ticker.core.errors import HTTPError, TickerError
from ticker.core.hub import ChannelHub
from ticker.core.items import OPS
from ticker.node.runtime import runtime_of


def content_security_policy(frame_ancestors: str) -> str:
    """No inline script or style anywhere: every page and the widget load theirs from /static
    (the widget styles its Shadow DOM with a constructed stylesheet)."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; "
        f"base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors}"
    )


def security_headers(frame_ancestors: str) -> list[tuple[bytes, bytes]]:
    """The headers every HTTP response carries (ticker.ops.app.SecurityHeaders adds them to
    the app's; the SSE stream writes its own)."""
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
        (b"content-security-policy", content_security_policy(frame_ancestors).encode()),
    ]
    # The legacy header can only say "same origin" or "nobody"; CSP says the rest.
    legacy = {"'self'": b"SAMEORIGIN", "'none'": b"DENY"}.get(frame_ancestors.strip())
    if legacy is not None:
        headers.append((b"x-frame-options", legacy))
    return headers


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


def json_response(value: Struct, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return Response(encode(value), status_code=status, headers=headers,
                    media_type="application/json")


def channel_of(request: Request) -> ChannelHub:
    name = request.path_params["channel"]
    channel = runtime_of(request).hub.channel(name)
    if channel is None:
        raise HTTPError(404, "not_found", f"no channel {name!r}", field="channel")
    return channel


def op_of(request: Request) -> str:
    """The item op named in the path (`.../{item}/{op}`); 404 naming the ops otherwise."""
    op: str = request.path_params["op"]
    if op not in OPS[1:]:
        raise HTTPError(404, "not_found", f"no op {op!r}; one of {', '.join(OPS[1:])}",
                        field="op")
    return op


async def bearer_name(request: Request, *, admin: bool = False) -> str:
    """The token owner's name; 401 without a valid `Authorization: Bearer` token, 403 when
    `admin` is asked and the token is not an admin token."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPError(401, "unauthorized", "send Authorization: Bearer <token>",
                        headers={"WWW-Authenticate": 'Bearer realm="ticker"'})
    found = await runtime_of(request).tokens.verify_scope(token.strip())
    if found is None:
        raise HTTPError(401, "unauthorized", "unknown or revoked token",
                        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    name, is_admin = found
    if admin and not is_admin:
        raise HTTPError(403, "forbidden", "this needs an admin token (ticker token create "
                        "NAME --admin)")
    return name
