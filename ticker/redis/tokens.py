"""API tokens: bearer tokens for publishers, stored as their SHA-256 only.

A token (`tkr_` + 256 random bits) is shown once when made; Redis keeps its digest -> owner
(`Keys.tokens`) and owner -> digest (`Keys.token_names`), so a Redis dump reveals no token.
An admin token (`ticker token create NAME --admin`) may also manage webhooks.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from redis.asyncio import Redis

from ticker.core.errors import ValidationError
from ticker.redis.keys import Keys


def token_digest(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough (a password needs argon2).
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Tokens:
    """Make, check, list and revoke API tokens. The client is passed in."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys


    async def create(self, name: str, *, admin: bool = False) -> str:
        """Make a token for `name` and store only its hash; the token is shown once.

        An `admin` token may also manage webhooks over HTTP (docs/webhooks.md); every
        token may publish and act on items."""
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise ValidationError("token name: 1-64 of letters, digits, '-', '_'", field="name")
        token = "tkr_" + secrets.token_urlsafe(32)
        digest = token_digest(token)
        fields: dict[str, Any] = {"name": name, "created": int(time.time())}
        if admin:
            fields["admin"] = True
        record = json.dumps(fields)
        if not await self.redis.hsetnx(self.keys.token_names, name, digest):
            raise ValidationError(f"a token named {name!r} exists; revoke it first",
                                  field="name")
        await self.redis.hset(self.keys.tokens, digest, record)
        return token

    async def verify(self, token: str) -> str | None:
        """The name of the token's owner, or None."""
        found = await self.verify_scope(token)
        return found[0] if found is not None else None

    async def verify_scope(self, token: str) -> tuple[str, bool] | None:
        """(the owner's name, whether it is an admin token), or None."""
        if not token.startswith("tkr_") or len(token) > 100:
            return None
        raw = await self.redis.hget(self.keys.tokens, token_digest(token))
        if raw is None:
            return None
        record = json.loads(raw)
        return str(record["name"]), record.get("admin") is True

    async def entries(self) -> list[dict[str, Any]]:
        rows = await self.redis.hgetall(self.keys.tokens)
        out = [json.loads(v) for v in rows.values()]
        return sorted(out, key=lambda r: r["name"])

    async def revoke(self, name: str) -> bool:
        digest = await self.redis.hget(self.keys.token_names, name)
        if digest is None:
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(self.keys.tokens, digest)
        pipe.hdel(self.keys.token_names, name)
        await pipe.execute()
        return True
