"""The webhook subscriptions over HTTP, for admin tokens (docs/webhooks.md).

| route | answer |
|---|---|
| `GET /api/webhooks` | every subscription, with how its delivery goes |
| `POST /api/webhooks` `{url, channels, urgencies?, ops?}` | 201, with its secret (once) |
| `GET /api/webhooks/{id}` | one subscription |
| `DELETE /api/webhooks/{id}` | it, and everything it had waiting, is gone |
| `POST /api/webhooks/{id}/test` | 202: a `webhook.test` event is queued |
| `GET /api/webhooks/{id}/dead` | what was given up on, newest first |
| `POST /api/webhooks/{id}/dead/{dead}/retry` | 202: queued again |

Every change is audited under the token's name.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ticker.core.contract import WebhookRequest, decode
from ticker.newsroom.subscriptions import Subscriptions
from ticker.node.runtime import runtime_of
from ticker.transport.http import bearer_name, read_json_object

NO_STORE = {"Cache-Control": "no-store"}


def json_response(body: dict[str, Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


def subscriptions_of(request: Request) -> Subscriptions:
    return runtime_of(request).newsroom.subscriptions


async def collection(request: Request) -> Response:
    who = await bearer_name(request, admin=True)
    subs = subscriptions_of(request)
    if request.method == "GET":
        return json_response({"webhooks": await subs.overview()}, headers=NO_STORE)
    body = decode(await read_json_object(request, runtime_of(request).settings.max_body),
                  WebhookRequest)
    sub, secret = await subs.add(body.url, body.channels, body.urgencies, body.ops, who)
    return json_response({"webhook": sub.public(), "secret": secret}, 201,
                         {**NO_STORE, "Location": f"/api/webhooks/{sub.id}"})


async def one(request: Request) -> Response:
    who = await bearer_name(request, admin=True)
    subs = subscriptions_of(request)
    if request.method == "DELETE":
        sub = await subs.remove(request.path_params["id"], who)
        return json_response({"id": sub.id, "removed": True}, headers=NO_STORE)
    sub = await subs.require(request.path_params["id"])
    return json_response(await subs.describe(sub), headers=NO_STORE)


async def test(request: Request) -> Response:
    who = await bearer_name(request, admin=True)
    await read_json_object(request, runtime_of(request).settings.max_body, optional=True)
    mid = await subscriptions_of(request).test(request.path_params["id"], who)
    return json_response({"queued": mid}, 202, NO_STORE)


async def dead(request: Request) -> Response:
    await bearer_name(request, admin=True)
    rows = await subscriptions_of(request).dead(request.path_params["id"])
    return json_response({"dead": rows}, headers=NO_STORE)


async def retry(request: Request) -> Response:
    who = await bearer_name(request, admin=True)
    entry = await subscriptions_of(request).retry(request.path_params["id"],
                                                  request.path_params["dead"], who)
    return json_response({"queued": entry}, 202, NO_STORE)


routes = [
    Route("/api/webhooks", collection, methods=["GET", "POST"]),
    Route("/api/webhooks/{id}", one, methods=["GET", "DELETE"]),
    Route("/api/webhooks/{id}/test", test, methods=["POST"]),
    Route("/api/webhooks/{id}/dead", dead, methods=["GET"]),
    Route("/api/webhooks/{id}/dead/{dead}/retry", retry, methods=["POST"]),
]
