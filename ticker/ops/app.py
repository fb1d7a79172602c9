"""create_app(settings) -> Starlette: the routes as a list, the lifespan owning every task."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ticker.core.errors import HTTPError, TickerError, Unavailable
from ticker.desk import pages as desk
from ticker.node import metrics
from ticker.node.metrics import SharedMetrics
from ticker.node.runtime import Runtime, runtime_of
from ticker.node.worker import Worker
from ticker.process.settings import Settings
from ticker.redis.connection import connect as redis_client
from ticker.transport import api, feeds, openapi, push, reach, requestid, sse, webhooks
from ticker.transport.assets import templates, web_dir
from ticker.transport.http import error_response, security_headers
from ticker.transport.requestid import RequestId
from ticker.transport.throttle import Throttle

log = logging.getLogger("ticker.ops.app")


class SecurityHeaders:
    """Adds the security headers to every HTTP response (pure ASGI, no buffering)."""

    def __init__(self, app: ASGIApp, frame_ancestors: str = "'self'") -> None:
        self.app = app
        self.headers = security_headers(frame_ancestors)

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


async def home(request: Request) -> Response:
    """The demo page: a front page around the ticker of one edition (`?edition=`, else the
    first configured), with a switcher to every edition and each edition's feeds advertised.
    An unknown edition gets the first one: an old link still shows a working page."""
    editions = runtime_of(request).settings.channels
    wanted = request.query_params.get("edition")
    current = next((c for c in editions if c.name == wanted), editions[0])
    return templates().TemplateResponse(
        request, "index.html",
        {"editions": [c.info() for c in editions], "current": current.info()},
        headers={"Cache-Control": "no-cache"})


async def ticker_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TickerError)
    if isinstance(exc, Unavailable):  # Redis failed under a request: counted for /metrics
        request.state.ticker.redis_errors["api"] += 1
    return error_response(exc)


async def redis_error(request: Request, exc: Exception) -> Response:
    """Redis failed under a request, wherever it was: one answer naming the cause, with
    Retry-After, and nothing written (docs/reliability.md).

    Handlers do not catch RedisError to say this themselves; only those that do something
    else (a stream that tells its reader `stale`, a loop that retries) catch it.
    """
    log.warning("Redis error on %s %s: %s", request.method, request.url.path, exc)
    problem = redis_problem(exc)
    response = await ticker_error(request, problem)
    response.headers["Retry-After"] = "5" if problem.status == 507 else "1"
    return response


def redis_problem(exc: Exception) -> TickerError:
    """What to tell a client about a Redis error: full memory and a full disk are not
    "unreachable", and whoever runs Redis must act on them."""
    text = str(exc)
    retry = "nothing was written; retry it (a publish with the same idem key is published once)"
    if isinstance(exc, OutOfMemoryError) or text.startswith("OOM") \
            or "used memory > 'maxmemory'" in text:
        return HTTPError(507, "redis_out_of_memory", "Redis is out of memory (maxmemory with "
                         f"noeviction): {retry}; the operator must free memory or raise "
                         "maxmemory")
    if text.startswith("MISCONF") or "MISCONF" in text[:40]:
        cause = text.split("MISCONF", 1)[1].strip()[:120]
        return HTTPError(507, "redis_disk", "Redis cannot write to its disk and refuses writes "
                         f"until it can ({cause}): {retry}; the operator must free disk space")
    if isinstance(exc, ReadOnlyError) or text.startswith("READONLY"):
        return Unavailable(f"Redis is a read-only replica now (a failover?): {retry}")
    return Unavailable(f"Redis is unreachable: the request was not completed; {retry[21:]}")


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
            settings.redis_url, cluster=settings.redis_cluster,
            timeout=settings.redis_timeout, block_ms=settings.redis_block_ms)
        runtime = Runtime(settings, client, worker)
        try:
            async with runtime.run():
                # With --workers N, each worker's figures go to a file the others can serve.
                shared = SharedMetrics.of(runtime.worker)
                if shared is not None:
                    runtime.spawn(shared.run(runtime), "ticker-metrics")
                try:
                    yield {"ticker": runtime}
                finally:
                    if shared is not None:
                        shared.remove(runtime.worker.index)
        finally:
            if redis is None:
                # Bounded like the tasks: a connection stuck mid-read must not hold the exit.
                try:
                    async with asyncio.timeout(3.0):
                        await client.aclose()
                except TimeoutError:
                    log.warning("Redis connections did not close within 3 s; leaving them")

    routes = [
        Route("/", home, methods=["GET", "HEAD"]),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        Route("/ws/{channel}", websocket_only, methods=["GET", "HEAD"]),
        *reach.routes,  # before api's `.../items/{item}/{op}`, which would take `.../reach`
        *api.routes,
        *webhooks.routes,
        *push.routes,
        *openapi.routes,
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
            RedisError: redis_error,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
    app.add_middleware(Throttle, rate=settings.rate_limit, burst=settings.rate_burst)
    app.add_middleware(SecurityHeaders, frame_ancestors=settings.frame_ancestors)
    app.add_middleware(RequestId)  # outermost of ours: its id is on every log line below
    return app
