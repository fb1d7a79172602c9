"""create_app(settings) -> Starlette: the routes as a list, the lifespan owning every task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticker import api, desk, feeds, metrics, openapi, reach, requestid, sse
from ticker.errors import TickerError, Unavailable
from ticker.httpio import error_response
from ticker.requestid import RequestId
from ticker.runtime import Runtime
from ticker.settings import Settings
from ticker.store import redis_client
from ticker.throttle import Throttle
from ticker.worker import Worker

log = logging.getLogger("ticker.app")


def web_dir() -> Path:
    """The widget and pages: `web/` in a checkout, `ticker/web` in an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "web", here / "web"):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"web assets not found beside {here}")


def content_security_policy(frame_ancestors: str) -> str:
    """No inline script or style anywhere: every page and the widget load theirs from /static
    (the widget styles its Shadow DOM with a constructed stylesheet)."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self' ws: wss:; object-src 'none'; "
        f"base-uri 'none'; form-action 'self'; frame-ancestors {frame_ancestors}"
    )


class SecurityHeaders:
    """Adds the security headers to every HTTP response (pure ASGI, no buffering)."""

    def __init__(self, app: ASGIApp, frame_ancestors: str = "'self'") -> None:
        self.app = app
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
            (b"content-security-policy", content_security_policy(frame_ancestors).encode()),
        ]
        # The legacy header can only say "same origin" or "nobody"; CSP says the rest.
        legacy = {"'self'": b"SAMEORIGIN", "'none'": b"DENY"}.get(frame_ancestors.strip())
        if legacy is not None:
            self.headers.append((b"x-frame-options", legacy))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + self.headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def healthz(request: Request) -> Response:
    """Alive: the process answers. Says nothing about Redis (that is /readyz)."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready: Redis reachable and the reader caught up with every stream."""
    runtime: Runtime = request.state.ticker
    reader = runtime.reader
    body = {
        "ready": runtime.ready,
        "draining": runtime.draining,
        "redis": "up" if reader.connected else "down",
        "bootstrapped": reader.bootstrapped,
        "caught_up": reader.caught_up,
        "lag_ms": reader.lag_ms,
        "seconds_since_read": round(time.monotonic() - reader.last_ok, 3)
        if reader.last_ok else None,
        "last_error": reader.last_error or None,
        "connections": runtime.hub.connections(),
    }
    return JSONResponse(body, status_code=200 if runtime.ready else 503,
                        headers={"Cache-Control": "no-store"})


async def websocket_only(request: Request) -> Response:
    """`/ws/{channel}` without a websocket upgrade: RFC 6455 4.2.1's answer, and a hint.

    An upgrade never gets here (the websocket endpoint takes it before the app does); a
    browser or `curl` that opens the URL, or a proxy that dropped `Upgrade`, does.
    """
    return JSONResponse(
        {"error": "upgrade_required",
         "message": "this is a websocket endpoint: connect with a websocket client, or "
                    "read the same feed as Server-Sent Events at /sse/{channel}"},
        status_code=426, headers={"Upgrade": "websocket", "Cache-Control": "no-store"})


def page(name: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return FileResponse(web_dir() / name, headers={"Cache-Control": "no-cache"})
    return endpoint


async def ticker_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TickerError)
    if isinstance(exc, Unavailable):  # Redis failed under a request: counted for /metrics
        request.state.ticker.redis_errors["api"] += 1
    return error_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    return JSONResponse({"error": code, "message": exc.detail}, status_code=exc.status_code,
                        headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    # This handler runs outside the middleware, so it adds the request id itself.
    rid = requestid.current.get()
    return JSONResponse({"error": "internal", "message": "internal error; it was logged"},
                        status_code=500, headers={"X-Request-ID": rid} if rid else None)


def create_app(settings: Settings, redis: Redis | None = None,
               worker: Worker | None = None) -> Starlette:
    """The whole HTTP surface. `redis` defaults to a client for `settings.redis_url`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        client = redis if redis is not None else redis_client(
            settings.redis_url, cluster=settings.redis_cluster)
        runtime = Runtime(settings, client, worker)
        try:
            async with runtime.run():
                yield {"ticker": runtime}
        finally:
            if redis is None:
                # Bounded like the tasks: a connection stuck mid-read must not hold the exit.
                try:
                    async with asyncio.timeout(3.0):
                        await client.aclose()
                except TimeoutError:
                    log.warning("Redis connections did not close within 3 s; leaving them")

    routes = [
        Route("/", page("index.html"), methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        Route("/ws/{channel}", websocket_only, methods=["GET", "HEAD"]),
        *api.routes,
        *openapi.routes,
        *reach.routes,
        *desk.routes,
        *sse.routes,
        *feeds.routes,
        Mount("/static", app=StaticFiles(directory=web_dir()), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            TickerError: ticker_error,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
    app.add_middleware(Throttle, rate=settings.rate_limit, burst=settings.rate_burst)
    app.add_middleware(SecurityHeaders, frame_ancestors=settings.frame_ancestors)
    app.add_middleware(RequestId)  # outermost of ours: its id is on every log line below
    return app
