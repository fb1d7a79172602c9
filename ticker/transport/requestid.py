"""Request ids: every HTTP request gets one, every log line it causes carries it.

`RequestId` is a pure ASGI middleware. It takes the `X-Request-ID` a proxy sent (nginx sets
one per request, deploy/nginx.conf) when it is a sane token, or makes a new one; puts it in
a context variable for the duration of the request (`ticker.ops.logs` adds it to every record);
and returns it in the response's `X-Request-ID`, so a user's report, the proxy's log and
ours line up.

It also writes the access line to the `ticker.access` logger: method, path (never the query
string: it may hold a token), status and duration. Writes and server errors at INFO; reads
at DEBUG, because polling readers would otherwise flood the log.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
VALID = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,128}$")

current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
access = logging.getLogger("ticker.access")


def new_id() -> str:
    return uuid.uuid4().hex


def incoming(scope: Scope) -> str | None:
    """The client's or proxy's X-Request-ID, if it is a sane token (else we make our own)."""
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            return value.decode("ascii") if VALID.match(value) else None
    return None


class RequestId:
    """Sets, propagates and returns X-Request-ID for HTTP requests (websockets pass through)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming(scope) or new_id()
        current.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                message["headers"] = [*headers, (HEADER, rid.encode("ascii"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            method = scope.get("method", "")
            level = logging.DEBUG if method in ("GET", "HEAD") and status < 500 else logging.INFO
            if access.isEnabledFor(level):
                access.log(level, "%s %s %d", method, scope.get("path", ""), status, extra={
                    "method": method, "path": scope.get("path", ""), "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2)})
            # Not reset: Starlette's server-error handler runs after us, outside the
            # middleware, and logs with this id. Each request runs in its own task (its own
            # context), so the id cannot leak into another request.
