"""The key schema: every Redis key name ticker uses, in one place.

Key layout (the prefix is `TICKER_KEY_PREFIX`, default `ticker`):

| key | type | what |
|---|---|---|
| `{prefix}:stream:{channel}` | stream | the channel's log of events (docs/publishing.md) |
| `{prefix}:deadletter` | stream | entries that failed validation, once each |
| `{prefix}:dl:{channel}:{id}` | string | marker: that entry's dead letter is written (7 days) |
| `{prefix}:tokens` | hash | sha256(token) -> JSON {name, created} |
| `{prefix}:token-names` | hash | token name -> sha256(token) |
| `{prefix}:users` | set | every user name (the desk's accounts, `ticker.newsroom.users`) |
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
| `{prefix}:dismissed` | hash | "<edition> <story>" -> who took it off a translation queue |
| `{prefix}:webhooks` | hash | subscription id -> JSON {url, channels, urgencies, ops, ...} |
| `{prefix}:webhook-secrets` | hash | subscription id -> its signing secret, encrypted |
| `{prefix}:webhook-key` | string | the secrets' key when TICKER_WEBHOOK_KEY is empty |
| `{prefix}:webhook-fanout` | hash | channel -> the last event queued for the subscriptions |
| `{prefix}:webhook:{id}:out` | stream | that subscription's events, in order, until delivered |
| `{prefix}:webhook:{id}:state` | hash | delivered up to, attempts, next try, last error, totals |
| `{prefix}:webhook:{id}:dead` | stream | events given up on (the desk shows them; retry) |
| `{prefix}:lease:{name}` | string | which node does a one-at-a-time job (webhook fan-out...) |
| `{prefix}:push:...`, `{prefix}:push-fanout` | | Web Push (`ticker.redis.push` has the table) |

Redis Cluster (`TICKER_REDIS_CLUSTER=1`): `prefix` becomes the hash tag `{ticker}`, so every
key above that is built from `prefix` lives in one slot (multi-key transactions keep working),
while each channel's own keys (`ticker:stream:{en}`, `ticker:reach:{en}`) are tagged with the
channel: a channel lives in one slot, and channels spread over the shards. Without cluster
mode the layout is exactly the table (e.g. `ticker:stream:en`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ticker.process.settings import Settings


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

    # -- the desk (ticker.newsroom: users, sessions, audit, jobs) ----------------------------

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
    def webhooks(self) -> str:
        return f"{self.prefix}:webhooks"

    @property
    def webhook_secrets(self) -> str:
        return f"{self.prefix}:webhook-secrets"

    @property
    def webhook_key(self) -> str:
        return f"{self.prefix}:webhook-key"

    @property
    def webhook_fanout(self) -> str:
        return f"{self.prefix}:webhook-fanout"

    def webhook(self, sub_id: str, kind: str) -> str:
        """`out`, `state` or `dead` of one subscription."""
        return f"{self.prefix}:webhook:{sub_id}:{kind}"

    def lease(self, name: str) -> str:
        return f"{self.prefix}:lease:{name}"

    @property
    def dismissed(self) -> str:
        return f"{self.prefix}:dismissed"

    @property
    def desk_version(self) -> str:
        return f"{self.prefix}:desk-version"
