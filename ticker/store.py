"""Everything that talks to Redis besides the reader: publishing, tokens, dead letters.

Key layout (the prefix is `TICKER_KEY_PREFIX`, default `ticker`):

| key | type | what |
|---|---|---|
| `{prefix}:stream:{channel}` | stream | the channel's log of events (DESIGN §2) |
| `{prefix}:deadletter` | stream | entries that failed validation, once each |
| `{prefix}:dl:{channel}:{id}` | string | marker: that entry's dead letter is written (7 days) |
| `{prefix}:tokens` | hash | sha256(token) -> JSON {name, created} |
| `{prefix}:token-names` | hash | token name -> sha256(token) |
| `{prefix}:users` | set | every user name (the desk's accounts, `ticker.users`) |
| `{prefix}:user:{name}` | hash | role, argon2id hash, disabled, session version |
| `{prefix}:session:{sid}` | hash | one desk sign-in: user, session version, CSRF token |
| `{prefix}:user-sessions:{name}` | set | that user's session ids (ended together) |
| `{prefix}:secret-key` | string | the cookie-signing key when TICKER_SECRET_KEY is empty |
| `{prefix}:rl:login:{kind}:{key}` | string | failed sign-ins in the window (account / ip) |
| `{prefix}:audit` | stream | the desk's audit trail: actions not tied to one channel's stream |
| `{prefix}:audit:{channel}` | stream | audit of the channel's stream entries (written with them) |
| `{prefix}:jobs` | hash | items held back from the stream (scheduled, pending approval) |
| `{prefix}:scheduled` | zset | job id -> publish time (epoch ms) |
| `{prefix}:pending` | zset | job id -> submission time, waiting for an editor |
| `{prefix}:job-claims` | hash | job id -> lease deadline and job, while a node publishes it |
| `{prefix}:desk-version` | string | bumped on every job change (the desk's live feed) |
| `{prefix}:reach:{channel}` | hash | item id -> connections written to, summed over nodes |

Redis Cluster (`TICKER_REDIS_CLUSTER=1`): `prefix` becomes the hash tag `{ticker}`, so every
key above that is built from `prefix` lives in one slot (multi-key transactions keep working),
while each channel's own keys (`ticker:stream:{en}`, `ticker:reach:{en}`) are tagged with the
channel: a channel lives in one slot, and channels spread over the shards. Without cluster
mode the layout is exactly the table (e.g. `ticker:stream:en`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from ticker import redisconn
from ticker.errors import ValidationError
from ticker.hub import Rejection

if TYPE_CHECKING:
    from ticker.settings import Settings

DEAD_LETTER_MAXLEN = 100_000
DEAD_LETTER_MARK_TTL = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Keys:
    """Every Redis key name, in one place. `cluster=True` hash-tags them (module docstring)."""

    prefix: str
    cluster: bool = False

    def __post_init__(self) -> None:
        if self.cluster and not self.prefix.startswith("{"):
            object.__setattr__(self, "prefix", "{" + self.prefix + "}")

    @classmethod
    def for_settings(cls, settings: Settings) -> Keys:
        return cls(settings.key_prefix, cluster=settings.redis_cluster)

    def _channel_key(self, kind: str, channel: str) -> str:
        if self.cluster:  # `ticker:stream:{en}`: the channel is the hash tag
            return f"{self.prefix[1:-1]}:{kind}:{{{channel}}}"
        return f"{self.prefix}:{kind}:{channel}"

    def stream(self, channel: str) -> str:
        return self._channel_key("stream", channel)

    def reach(self, channel: str) -> str:
        return self._channel_key("reach", channel)

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

    def idem(self, channel: str, key: str) -> str:
        """Idempotency key of an HTTP publish: the item id it made, for 24 hours."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        return f"{self.prefix}:idem:{channel}:{digest}"

    # -- the desk (ticker.users, ticker.sessions, ticker.audit, ticker.jobs) -----------------

    @property
    def users(self) -> str:
        return f"{self.prefix}:users"

    def user(self, name: str) -> str:
        return f"{self.prefix}:user:{name}"

    def session(self, sid: str) -> str:
        return f"{self.prefix}:session:{sid}"

    def user_sessions(self, name: str) -> str:
        return f"{self.prefix}:user-sessions:{name}"

    @property
    def secret_key(self) -> str:
        return f"{self.prefix}:secret-key"

    def login_limit(self, kind: str, key: str) -> str:
        return f"{self.prefix}:rl:login:{kind}:{key}"

    @property
    def audit(self) -> str:
        return f"{self.prefix}:audit"

    def channel_audit(self, channel: str) -> str:
        # Beside the channel's stream (same hash slot in a cluster): written in one script.
        return self._channel_key("audit", channel)

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def scheduled(self) -> str:
        return f"{self.prefix}:scheduled"

    @property
    def pending(self) -> str:
        return f"{self.prefix}:pending"

    @property
    def job_claims(self) -> str:
        return f"{self.prefix}:job-claims"

    @property
    def desk_version(self) -> str:
        return f"{self.prefix}:desk-version"


def token_digest(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough (a password needs argon2).
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def redis_client(url: str, *, cluster: bool = False, max_connections: int = 64) -> Redis:
    """A client for any deployment: redis://, rediss://, unix://, redis+sentinel://, and a
    Redis Cluster with `cluster=True` (see `ticker.redisconn`). Its socket timeout outlasts any
    XREAD BLOCK we issue (redis-py 8 uses 5 s), and it fails fast when Redis is down."""
    return redisconn.connect(url, cluster=cluster, max_connections=max_connections)


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
