"""A push service on loopback, standing in for FCM or Mozilla's (none is reachable here): it
checks what RFC 8030/8292 ask of a push (the VAPID JWT: signature, audience, expiry, subject;
TTL, Urgency, Topic) and decrypts each payload (RFC 8291, aes128gcm) with the subscription's
private key, as a browser would, using `http_ece` and `cryptography` directly."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import TIMEOUT, free_port
from tests.e2e.loopback import Loopback, serve


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """One browser's push subscription: what it gives the page, and what it keeps."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    def subscription(self) -> dict[str, Any]:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)}}


@dataclass
class Delivery:
    token: str
    payload: dict[str, Any]
    headers: dict[str, str]
    claims: dict[str, Any]
    status: int


@dataclass
class PushService:
    port: int
    browsers: dict[str, Browser] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    answer: Callable[[str, int], tuple[int, dict[str, str]]] = lambda token, n: (201, {})
    loopback: Loopback | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def browser(self) -> Browser:
        token = secrets.token_urlsafe(12)
        b = Browser(token, f"{self.origin}/push/{token}", ec.generate_private_key(ec.SECP256R1()),
                    secrets.token_bytes(16))
        self.browsers[token] = b
        return b

    def accepted(self, token: str | None = None) -> list[Delivery]:
        return [d for d in self.deliveries if 200 <= d.status < 300
                and (token is None or d.token == token)]

    def check_vapid(self, header: str) -> dict[str, Any]:
        """The JWT's claims, once its ES256 signature (by the key `k`) checks out."""
        scheme, _, params = header.partition(" ")
        assert scheme.lower() == "vapid", header
        parts = dict(p.split("=", 1) for p in params.split(","))
        token, key = parts["t"], parts["k"]
        head, claims, signature = token.split(".")
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
        raw = unb64url(signature)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                   int.from_bytes(raw[32:], "big"))
        public.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
        assert json.loads(unb64url(head)) == {"typ": "JWT", "alg": "ES256"}
        decoded: dict[str, Any] = json.loads(unb64url(claims))
        return decoded

    async def handle(self, request: Request) -> Response:
        token = request.path_params["token"]
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        browser = self.browsers.get(token)
        if browser is None:
            return Response(status_code=404)
        try:
            claims = self.check_vapid(headers["authorization"])
            assert claims["aud"] == self.origin, claims
            assert time.time() < claims["exp"] <= time.time() + 24 * 3600, claims
            assert claims["sub"].startswith(("mailto:", "https://")), claims
            assert headers["content-encoding"] == "aes128gcm"
            assert int(headers["ttl"]) > 0 and headers["urgency"] == "high"
            assert len(headers["topic"]) <= 32
            plain = http_ece.decrypt(body, private_key=browser.private_key,
                                     auth_secret=browser.auth, version="aes128gcm")
            payload = json.loads(plain)
        except (AssertionError, KeyError, ValueError, InvalidSignature) as exc:
            self.problems.append(f"{type(exc).__name__}: {exc}")
            return Response(status_code=400)
        status, extra = self.answer(token, len([d for d in self.deliveries
                                                if d.token == token]))
        self.deliveries.append(Delivery(token, payload, headers, claims, status))
        return Response(status_code=status, headers=extra)

    async def start(self) -> None:
        app = Starlette(routes=[Route("/push/{token}", self.handle, methods=["POST"])])
        self.loopback = await serve(app, self.port, "push service")

    async def stop(self) -> None:
        if self.loopback is not None:
            await self.loopback.stop()
            self.loopback = None

    async def wait_for(self, count: int, token: str | None = None,
                       timeout: float = TIMEOUT * 2) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while len(self.accepted(token)) < count:
            assert not self.problems, self.problems
            assert time.monotonic() < deadline, (len(self.accepted(token)), count,
                                                 [d.status for d in self.deliveries])
            await asyncio.sleep(0.02)
        assert not self.problems, self.problems
        return self.accepted(token)


@contextlib.asynccontextmanager
async def push_service() -> AsyncIterator[PushService]:
    service = PushService(port=free_port())
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
