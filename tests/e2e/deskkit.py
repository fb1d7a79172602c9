"""Helpers for the desk's end-to-end tests: users in Redis, a signed-in HTTP client."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server
from ticker.newsroom.users import Users
from ticker.redis.keys import Keys

PASSWORD = "correct horse battery staple"
NONCE = re.compile(r'name="csrf" value="([^"]+)"')


async def add_user(redis: Redis, prefix: str, name: str, role: str = "editor",
                   password: str = PASSWORD) -> None:
    await Users(redis, Keys(prefix)).add(name, role, password)


async def login_form(http: httpx.AsyncClient) -> str:
    """GET /login: sets the sign-in cookie; returns the form's CSRF nonce."""
    r = await http.get("/login")
    assert r.status_code == 200, r.text
    m = NONCE.search(r.text)
    assert m is not None
    return m.group(1)


async def post_login(http: httpx.AsyncClient, name: str, password: str,
                     **headers: str) -> httpx.Response:
    """Sign in as a fresh browser would (any earlier session cookie is dropped first)."""
    http.cookies.clear()
    nonce = await login_form(http)
    return await http.post("/login", data={"username": name, "password": password,
                                           "csrf": nonce},
                           headers={"Accept": "application/json", **headers})


@dataclass
class Desk:
    """An httpx client with a desk session; `post` sends the CSRF header."""

    http: httpx.AsyncClient
    csrf: str
    name: str

    @classmethod
    async def sign_in(cls, server: Server, name: str, password: str = PASSWORD,
                      **headers: str) -> Desk:
        http = httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT)
        r = await post_login(http, name, password, **headers)
        assert r.status_code == 200, r.text
        return cls(http, r.json()["csrf"], name)

    async def close(self) -> None:
        await self.http.aclose()

    async def post(self, path: str, body: dict[str, Any] | None = None,
                   csrf: str | None = None) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf if csrf is None else csrf}
        if body is None:
            return await self.http.post(path, headers=headers)
        return await self.http.post(path, json=body, headers=headers)

    async def publish(self, text: str, channels: list[str] | None = None,
                      **extra: Any) -> list[str]:
        r = await self.post("/desk/api/items",
                            {"text": text, "channels": channels or ["en"], **extra})
        assert r.status_code == 201, r.text
        return [i["id"] for i in r.json()["items"]]

    async def op(self, item: str, op: str, channel: str = "en", **body: Any
                 ) -> httpx.Response:
        return await self.post(f"/desk/api/items/{channel}/{item}/{op}", body)

    async def state(self) -> dict[str, Any]:
        r = await self.http.get("/desk/api/state")
        assert r.status_code == 200, r.text
        value: dict[str, Any] = r.json()
        return value

    async def item(self, item: str, channel: str = "en") -> dict[str, Any] | None:
        for ch in (await self.state())["channels"]:
            if ch["name"] == channel:
                for it in ch["items"]:
                    if it["id"] == item:
                        return dict(it)
        return None
