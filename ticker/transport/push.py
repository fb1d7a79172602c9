"""Web Push over HTTP, for the widget (docs/push.md).

| route | what |
|---|---|
| `GET /push/key` | `{publicKey, editions}`: what a browser subscribes with; 404 when push is off |
| `POST /push/subscriptions` | `{edition, subscription: {endpoint, keys: {p256dh, auth}}, page?}` |
| `DELETE /push/subscriptions` | `{edition, endpoint}`: that edition's notifications stop |
| `GET /ticker-sw.js` | the service worker that shows the notifications (`web/ticker-sw.js`) |

Readers are anonymous: the page's origin must be ours or one of TICKER_ALLOWED_ORIGINS
(a browser's preflight is answered for those), subscriptions per address are capped per
hour (TICKER_PUSH_RATE), and the endpoint must be https (public addresses only, checked
again at each push).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from ticker.core.addresses import parse_allowed
from ticker.core.clock import now_ms
from ticker.core.errors import HTTPError, ValidationError
from ticker.core.push import PushSubscription, check_endpoint, check_keys, check_page
from ticker.node.runtime import Runtime, runtime_of
from ticker.transport.assets import web_dir
from ticker.transport.cors import origin_refused, reader_headers
from ticker.transport.http import read_json_object

NO_STORE = {"Cache-Control": "no-store"}
MAX_BODY = 4096


def answer(request: Request, body: dict[str, Any], status: int = 200) -> Response:
    runtime = runtime_of(request)
    return JSONResponse(body, status_code=status,
                        headers={**NO_STORE, **reader_headers(request, runtime)})


def enabled(request: Request) -> Runtime:
    runtime = runtime_of(request)
    if origin_refused(request, runtime):
        raise HTTPError(403, "forbidden", "this origin may not use the ticker's push")
    if runtime.push.public_key is None:
        raise HTTPError(404, "not_found", "web push is not set up on this server "
                        "(ticker push keys)")
    return runtime


async def key(request: Request) -> Response:
    runtime = enabled(request)
    return answer(request, {"publicKey": runtime.push.public_key,
                            "editions": list(runtime.settings.channel_names)})


def edition_of(runtime: Runtime, value: Any) -> str:
    if not isinstance(value, str) or runtime.hub.channel(value) is None:
        raise ValidationError("edition must be one of "
                              f"{', '.join(runtime.settings.channel_names)}", field="edition")
    return value


async def subscriptions(request: Request) -> Response:
    runtime = enabled(request)
    body = await read_json_object(request, MAX_BODY)
    allowed = parse_allowed(runtime.settings.push_allow, "TICKER_PUSH_ALLOW")
    if request.method == "DELETE":
        unknown = set(body) - {"edition", "endpoint"}
        if unknown:
            name = sorted(unknown)[0][:40]
            raise ValidationError(f"unknown field {name!r}", field=name)
        edition = edition_of(runtime, body.get("edition"))
        endpoint = check_endpoint(body.get("endpoint"), allowed)
        removed = await runtime.push.store.remove(edition, PushSubscription(
            edition, endpoint, "", "").id)
        if not removed:
            raise HTTPError(404, "not_found", "no such subscription", field="endpoint")
        return answer(request, {"edition": edition, "removed": True})
    unknown = set(body) - {"edition", "subscription", "page"}
    if unknown:
        name = sorted(unknown)[0][:40]
        raise ValidationError(f"unknown field {name!r}", field=name)
    edition = edition_of(runtime, body.get("edition"))
    raw = body.get("subscription")
    if not isinstance(raw, dict):
        raise ValidationError("subscription must be the browser's PushSubscription as JSON",
                              field="subscription")
    endpoint = check_endpoint(raw.get("endpoint"), allowed)
    p256dh, auth = check_keys(raw.get("keys"))
    page = check_page(body.get("page"))
    try:
        await runtime.push.sender.addresses(*host_port(endpoint))
    except ValidationError as exc:
        raise ValidationError(exc.message, field="endpoint") from None
    except OSError:
        raise ValidationError("the endpoint's host does not resolve",
                              field="endpoint") from None
    address = request.client.host if request.client else "unknown"
    if not await runtime.push.store.allow(address, runtime.settings.push_rate):
        raise HTTPError(429, "rate_limited", "too many subscriptions from this address; "
                        "try again later", headers={"Retry-After": "3600"})
    sub = PushSubscription(edition, endpoint, p256dh, auth, page, now_ms())
    fresh = await runtime.push.store.add(sub)
    return answer(request, {"edition": edition, "subscribed": True}, 201 if fresh else 200)


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


async def preflight(request: Request) -> Response:
    """A browser asking whether another page may POST or DELETE JSON here."""
    runtime = runtime_of(request)
    headers = {"Vary": "Origin"}
    origin = request.headers.get("origin")
    if origin is not None and not origin_refused(request, runtime):
        headers.update({"Access-Control-Allow-Origin": origin,
                        "Access-Control-Allow-Methods": "POST, DELETE",
                        "Access-Control-Allow-Headers": "Content-Type",
                        "Access-Control-Max-Age": "600"})
    return Response(status_code=204, headers=headers)


async def service_worker(request: Request) -> Response:
    """The service worker, served from the page's origin (as browsers require) and never
    cached for long, so a fixed one reaches readers."""
    return FileResponse(web_dir() / "ticker-sw.js", media_type="text/javascript",
                        headers={"Cache-Control": "no-cache",
                                 "Service-Worker-Allowed": "/"})


routes = [
    Route("/push/key", key, methods=["GET"]),
    Route("/push/subscriptions", subscriptions, methods=["POST", "DELETE"]),
    Route("/push/subscriptions", preflight, methods=["OPTIONS"]),
    Route("/ticker-sw.js", service_worker, methods=["GET"]),
]
