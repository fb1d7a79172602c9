"""Admins' JSON endpoints for webhook subscriptions, behind the page `/desk/webhooks`
(docs/webhooks.md). All take the session cookie and the admin role, and X-CSRF-Token on a
write; every change goes through `runtime.newsroom.subscriptions`, which audits it under
the admin's name (`webhook-add`, `webhook-remove`, `webhook-test`, `webhook-retry`).

| route | body | answer |
|---|---|---|
| `GET /desk/api/webhooks` | | `{webhooks: [{id, url, ..., delivery}], now}` |
| `POST /desk/api/webhooks` | `{url, channels, urgencies?, ops?}` | 201 `{webhook, secret}` |
| `POST /desk/api/webhooks/{id}/remove` | | `{id, removed}` |
| `POST /desk/api/webhooks/{id}/test` | | 202 `{queued}`: a `webhook.test` event |
| `GET /desk/api/webhooks/{id}/dead` | | `{dead: [...]}`, newest first |
| `POST /desk/api/webhooks/{id}/dead/{dead}/retry` | | 202 `{queued}` |

The secret is in the answer that made it, once. A dead letter comes with what the page shows
of its event: its `type`, its item's id and text when the body has them.

Bodies are decoded strictly (`core.contract.WebhookRequest` through `contract.decode`, as
the HTTP API does): an unknown field, a bad URL, an unknown channel, urgency or op is a 422
naming it. An unknown subscription is a 404 naming `id`, an unknown dead letter one naming
`dead`.
"""

from __future__ import annotations

import json
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticker.core.clock import now_ms
from ticker.core.contract import EmptyRequest, WebhookRequest
from ticker.desk.admin import as_admin, body_of
from ticker.desk.api import json_response
from ticker.newsroom.subscriptions import Subscriptions
from ticker.node.runtime import runtime_of

MAX_SHOWN: Final = 2000  # characters of a dead letter's item text the page is sent


def subscriptions_of(request: Request) -> Subscriptions:
    return runtime_of(request).newsroom.subscriptions


def number(value: Any) -> int:
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def dead_letter(row: dict[str, Any]) -> dict[str, Any]:
    """A dead letter as the page shows it: when and why it was given up, and what it was
    (the event's type, its item's id and text when the body has them; data, never markup)."""
    try:
        event = json.loads(row.get("body", ""))
    except ValueError:
        event = None
    if not isinstance(event, dict):
        event = {}
    item = event.get("item")
    if not isinstance(item, dict):
        item = {}
    text = item.get("text")
    item_id = item.get("id", event.get("id"))
    return {
        "id": row["id"], "message_id": row.get("mid", ""), "channel": row.get("ch", ""),
        "type": str(event.get("type", "")),
        "item": item_id if isinstance(item_id, str) else None,
        "text": text[:MAX_SHOWN] if isinstance(text, str) else None,
        "error": row.get("error", ""), "status": number(row.get("status")),
        "attempts": number(row.get("attempts")), "queued": number(row.get("at")),
        "gave_up": number(row.get("gave_up")),
    }


async def list_webhooks(request: Request) -> Response:
    await as_admin(request, write=False)
    webhooks = await subscriptions_of(request).overview()
    return json_response({"webhooks": webhooks, "now": now_ms()})


async def add_webhook(request: Request) -> Response:
    who = await as_admin(request, write=True)
    body = await body_of(request, WebhookRequest)
    subs = subscriptions_of(request)
    sub, secret = await subs.add(body.url, body.channels, body.urgencies, body.ops, who.name)
    return json_response({"webhook": await subs.describe(sub), "secret": secret}, 201)


async def remove_webhook(request: Request) -> Response:
    who = await as_admin(request, write=True)
    await body_of(request, EmptyRequest, optional=True)
    sub = await subscriptions_of(request).remove(request.path_params["id"], who.name)
    return json_response({"id": sub.id, "removed": True})


async def send_test(request: Request) -> Response:
    who = await as_admin(request, write=True)
    await body_of(request, EmptyRequest, optional=True)
    queued = await subscriptions_of(request).test(request.path_params["id"], who.name)
    return json_response({"queued": queued}, 202)


async def dead_letters(request: Request) -> Response:
    await as_admin(request, write=False)
    rows = await subscriptions_of(request).dead(request.path_params["id"])
    return json_response({"dead": [dead_letter(row) for row in rows]})


async def retry_dead_letter(request: Request) -> Response:
    who = await as_admin(request, write=True)
    await body_of(request, EmptyRequest, optional=True)
    queued = await subscriptions_of(request).retry(request.path_params["id"],
                                                   request.path_params["dead"], who.name)
    return json_response({"queued": queued}, 202)


routes = [
    Route("/desk/api/webhooks", list_webhooks, methods=["GET"]),
    Route("/desk/api/webhooks", add_webhook, methods=["POST"]),
    Route("/desk/api/webhooks/{id}/remove", remove_webhook, methods=["POST"]),
    Route("/desk/api/webhooks/{id}/test", send_test, methods=["POST"]),
    Route("/desk/api/webhooks/{id}/dead", dead_letters, methods=["GET"]),
    Route("/desk/api/webhooks/{id}/dead/{dead}/retry", retry_dead_letter, methods=["POST"]),
]
