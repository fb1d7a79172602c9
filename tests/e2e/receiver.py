"""A real webhook receiver on loopback (uvicorn + Starlette) that checks every request with
the `standardwebhooks` package, as a subscriber's service would, and answers as told."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import TIMEOUT, free_port
from tests.e2e.loopback import Loopback, serve


@dataclass
class Hit:
    """One request as received."""

    message_id: str
    body: dict[str, Any]
    verified: bool
    at: float
    status: int  # what we answered


@dataclass
class Receiver:
    """Records every request; `answer(hit_number, message_id)` -> (status, headers)."""

    port: int
    secret: str = ""
    hits: list[Hit] = field(default_factory=list)
    answer: Callable[[int, str], tuple[int, dict[str, str]]] = lambda n, mid: (204, {})
    delay: float = 0.0
    loopback: Loopback | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def accepted(self) -> list[Hit]:
        return [h for h in self.hits if 200 <= h.status < 300]

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        verified = False
        if self.secret:
            try:
                Webhook(self.secret).verify(raw, dict(request.headers))
                verified = True
            except WebhookVerificationError:
                verified = False
        mid = request.headers.get("webhook-id", "")
        status, headers = self.answer(len(self.hits), mid)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.hits.append(Hit(mid, json.loads(raw), verified, time.monotonic(), status))
        return Response(status_code=status, headers=headers)

    async def start(self) -> None:
        app = Starlette(routes=[Route("/hook", self.handle, methods=["POST"])])
        self.loopback = await serve(app, self.port, "receiver")

    async def stop(self) -> None:
        if self.loopback is not None:
            await self.loopback.stop()
            self.loopback = None

    async def wait_for(self, count: int, timeout: float = TIMEOUT * 3) -> list[Hit]:
        """The accepted hits, once there are at least `count`."""
        deadline = time.monotonic() + timeout
        while len(self.accepted()) < count:
            assert time.monotonic() < deadline, (
                f"{len(self.accepted())} of {count} accepted; hits: "
                f"{[(h.message_id, h.status) for h in self.hits]}")
            await asyncio.sleep(0.02)
        return self.accepted()


@contextlib.asynccontextmanager
async def receiver(**kwargs: Any) -> AsyncIterator[Receiver]:
    rec = Receiver(port=free_port(), **kwargs)
    await rec.start()
    try:
        yield rec
    finally:
        await rec.stop()
