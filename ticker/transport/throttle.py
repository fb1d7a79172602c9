"""Per-address HTTP request rate limit: a pure ASGI middleware over ticker.core.limits.RateLimit.

Health, readiness and metrics are exempt (probes and scrapers must always get through).
A refused request gets 429 with Retry-After and the usual JSON error body.
"""

from __future__ import annotations

import json
import math

from starlette.types import ASGIApp, Receive, Scope, Send

from ticker.core.limits import RateLimit

EXEMPT = ("/healthz", "/readyz", "/metrics")


class Throttle:
    """Refuses (429) a client address that exceeds the configured request rate."""

    def __init__(self, app: ASGIApp, rate: float, burst: int) -> None:
        self.app = app
        self.limit = RateLimit(rate, burst)
        self.retry_after = str(max(1, math.ceil(1 / rate))) if rate > 0 else "1"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit.rate <= 0 or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        # uvicorn has already put the X-Forwarded-For client in scope["client"] when the
        # peer is a trusted proxy (proxy_headers), so the peer here is the client.
        client = scope.get("client")
        address = client[0] if client else "unknown"
        if self.limit.allow(address):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "rate_limited",
                           "message": "too many requests from your address; slow down"}).encode()
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"retry-after", self.retry_after.encode()),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
