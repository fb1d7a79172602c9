"""Everything that talks to Redis besides the reader: publishing, tokens, dead letters.

Key layout (the prefix is `TICKER_KEY_PREFIX`, default `ticker`):

| key | type | what |
|---|---|---|
| `{prefix}:stream:{channel}` | stream | the channel's log of events (DESIGN §2) |
| `{prefix}:deadletter` | stream | entries that failed validation, once each |
| `{prefix}:dl:{channel}:{id}` | string | marker: that entry's dead letter is written (7 days) |
| `{prefix}:tokens` | hash | sha256(token) -> JSON {name, created} |
| `{prefix}:token-names` | hash | token name -> sha256(token) |
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from ticker.errors import ValidationError
from ticker.hub import Rejection

DEAD_LETTER_MAXLEN = 100_000
DEAD_LETTER_MARK_TTL = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key name, in one place."""

    prefix: str

    def stream(self, channel: str) -> str:
        return f"{self.prefix}:stream:{channel}"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}:deadletter"

    def dead_mark(self, channel: str, entry_id: str) -> str:
        return f"{self.prefix}:dl:{channel}:{entry_id}"

    @property
    def tokens(self) -> str:
        return f"{self.prefix}:tokens"

    @property
    def token_names(self) -> str:
        return f"{self.prefix}:token-names"


def token_digest(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough (a password needs argon2).
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def redis_client(url: str, *, max_connections: int = 64) -> Redis:
    """A client whose socket timeout outlasts any XREAD BLOCK we issue (redis-py 8 uses 5 s)."""
    return Redis.from_url(
        url,
        socket_timeout=10,
        socket_connect_timeout=3,
        health_check_interval=15,
        max_connections=max_connections,
        retry_on_timeout=False,
    )


class Store:
    """Redis operations of the HTTP API and the CLI. The client is passed in."""

    def __init__(self, redis: Redis, keys: Keys, stream_maxlen: int = 10000) -> None:
        self.redis = redis
        self.keys = keys
        self.stream_maxlen = stream_maxlen

    async def append(self, channel: str, fields: Mapping[str, str]) -> str:
        """XADD one validated entry; returns its stream ID (the item id for a publish)."""
        entry_id = await self.redis.xadd(
            self.keys.stream(channel),
            dict(fields),  # type: ignore[arg-type]
            maxlen=self.stream_maxlen,
            approximate=True,
        )
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    # -- API tokens ------------------------------------------------------------------------

    async def create_token(self, name: str) -> str:
        """Make a token for `name` and store only its hash; the token is shown once."""
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise ValidationError("token name: 1-64 of letters, digits, '-', '_'", field="name")
        token = "tkr_" + secrets.token_urlsafe(32)
        digest = token_digest(token)
        record = json.dumps({"name": name, "created": int(time.time())})
        if not await self.redis.hsetnx(self.keys.token_names, name, digest):
            raise ValidationError(f"a token named {name!r} exists; revoke it first",
                                  field="name")
        await self.redis.hset(self.keys.tokens, digest, record)
        return token

    async def verify_token(self, token: str) -> str | None:
        """The name of the token's owner, or None."""
        if not token.startswith("tkr_") or len(token) > 100:
            return None
        raw = await self.redis.hget(self.keys.tokens, token_digest(token))
        if raw is None:
            return None
        name = json.loads(raw)["name"]
        return str(name)

    async def list_tokens(self) -> list[dict[str, Any]]:
        rows = await self.redis.hgetall(self.keys.tokens)
        out = [json.loads(v) for v in rows.values()]
        return sorted(out, key=lambda r: r["name"])

    async def revoke_token(self, name: str) -> bool:
        digest = await self.redis.hget(self.keys.token_names, name)
        if digest is None:
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.hdel(self.keys.tokens, digest)
        pipe.hdel(self.keys.token_names, name)
        await pipe.execute()
        return True

    # -- dead letters -----------------------------------------------------------------------

    async def dead_letter(self, rejection: Rejection) -> bool:
        """Record a rejected entry once, however many nodes rejected it. True if we wrote it."""
        mark = self.keys.dead_mark(rejection.channel, rejection.entry_id)
        if not await self.redis.set(mark, b"1", nx=True, ex=DEAD_LETTER_MARK_TTL):
            return False
        entry = {
            k.decode("utf-8", "replace")[:64]: v.decode("utf-8", "replace")[:512]
            for k, v in list(rejection.fields.items())[:32]
        }
        await self.redis.xadd(
            self.keys.deadletter,
            {
                "channel": rejection.channel,
                "entry_id": rejection.entry_id,
                "reason": rejection.error.message,
                "field": rejection.error.field or "",
                "entry": json.dumps(entry, ensure_ascii=False)[:4096],
                "at": str(int(time.time() * 1000)),
            },
            maxlen=DEAD_LETTER_MAXLEN,
            approximate=True,
        )
        return True

    async def dead_letters(self, count: int = 50) -> list[tuple[str, dict[str, str]]]:
        rows: Any = await self.redis.xrevrange(self.keys.deadletter, count=count)
        return [
            (i.decode(), {k.decode(): v.decode("utf-8", "replace") for k, v in f.items()})
            for i, f in rows
        ]
