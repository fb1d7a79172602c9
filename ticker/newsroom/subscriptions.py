"""Managing webhook subscriptions, for the CLI, the HTTP API and the desk alike, audited.

Each change writes one entry to the audit trail (`webhook-add`, `webhook-remove`,
`webhook-test`, `webhook-retry`) naming who did it; the secret is in the answer to `add`
only, once, and never in the audit or a log.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

from ticker.core.clock import now_ms
from ticker.core.errors import HTTPError
from ticker.core.webhooks import Subscription, subscription
from ticker.newsroom.audit import Audit
from ticker.redis.webhooks import Webhooks

# A dead letter's id: a stream entry ID Redis takes (each part below 2**64).
DEAD_ID: Final = re.compile(r"^[0-9]{1,19}-[0-9]{1,19}$")


def _names(values: Iterable[str]) -> str:
    return ", ".join(values) or "all"


class Subscriptions:
    """Add, list, remove, test; the dead letters and their retry."""

    def __init__(self, store: Webhooks, audit: Audit, channels: Sequence[str]) -> None:
        self.store = store
        self.audit = audit
        self.channels = tuple(channels)

    async def add(self, url: str, channels: Iterable[Any], urgencies: Iterable[Any],
                  ops: Iterable[Any], by: str) -> tuple[Subscription, str]:
        """A new subscription and its secret (to show once). ValidationError naming the
        field for bad input."""
        sub = subscription(url, channels, self.channels, urgencies, ops, by=by,
                           created=now_ms())
        secret = await self.store.add(sub)
        await self.audit.add(by, "webhook-add", item=sub.id, detail=(
            f"{sub.url} for {_names(sub.channels)}; urgencies {_names(sub.urgencies)}; "
            f"ops {_names(sub.ops)}"))
        return sub, secret

    async def require(self, sub_id: str) -> Subscription:
        sub = await self.store.get(sub_id)
        if sub is None:
            raise HTTPError(404, "not_found", f"no webhook {sub_id[:40]!r}", field="id")
        return sub

    async def describe(self, sub: Subscription) -> dict[str, Any]:
        """The subscription with how its delivery goes (for lists and the desk)."""
        state = await self.store.state(sub.id)
        waiting, oldest = await self.store.waiting(sub.id, state.acked)
        return {**sub.public(), "delivery": {
            "waiting": waiting, "oldest_queued": oldest, "sent": state.sent,
            "failed_attempts": state.failed, "dead": state.dead,
            "retrying": state.attempts > 0, "attempts": state.attempts,
            "next_try": state.next_try or None, "last_error": state.last_error or None,
            "last_status": state.last_status or None}}

    async def overview(self) -> list[dict[str, Any]]:
        return [await self.describe(sub) for sub in await self.store.all()]

    async def remove(self, sub_id: str, by: str) -> Subscription:
        sub = await self.require(sub_id)
        await self.store.remove(sub.id)
        await self.audit.add(by, "webhook-remove", item=sub.id, detail=sub.url)
        return sub

    async def test(self, sub_id: str, by: str) -> str:
        """Queue a `webhook.test` event (after whatever is waiting); its message id."""
        sub = await self.require(sub_id)
        now = now_ms()
        mid = f"msg_{sub.id[3:]}_test_{now}"
        body = json.dumps({"type": "webhook.test", "subscription": sub.id, "at": now,
                           "by": by}, separators=(",", ":")).encode()
        await self.store.enqueue_one(sub.id, mid, "", body, now)
        await self.audit.add(by, "webhook-test", item=sub.id, detail=sub.url)
        return mid

    async def dead(self, sub_id: str, count: int = 100) -> list[dict[str, Any]]:
        await self.require(sub_id)
        return await self.store.dead_letters(sub_id, count)

    async def retry(self, sub_id: str, dead_id: str, by: str) -> str:
        """Send a dead letter again (at the end of the queue, with its own webhook-id)."""
        sub = await self.require(sub_id)
        entry = None
        if DEAD_ID.match(dead_id):  # anything else Redis would refuse as a stream ID
            entry = await self.store.retry_dead(sub.id, dead_id, now_ms())
        if entry is None:
            raise HTTPError(404, "not_found", f"no dead letter {dead_id[:40]!r}",
                            field="dead")
        await self.audit.add(by, "webhook-retry", item=sub.id, detail=dead_id)
        return entry
