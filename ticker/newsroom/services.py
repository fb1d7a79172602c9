"""The desk's server side of one process: sign-in, the journal, held-back jobs, the scheduler.

Built by the Runtime (`runtime.newsroom`), which also owns the scheduler task; nothing here
lives in module globals.
"""

from __future__ import annotations

from redis.asyncio import Redis

from ticker.core.hub import Hub
from ticker.newsroom.audit import Audit, Journal
from ticker.newsroom.auth import Auth
from ticker.newsroom.jobs import Jobs, run_scheduler
from ticker.newsroom.subscriptions import Subscriptions
from ticker.newsroom.translations import Dismissals
from ticker.process.settings import Settings
from ticker.redis.keys import Keys
from ticker.redis.store import Replication
from ticker.redis.webhooks import Webhooks


class Newsroom:
    """Auth, Journal (stream + audit writes), Audit (reading it), Jobs (held-back items),
    Dismissals (the translation queue's), Subscriptions (webhooks)."""

    def __init__(self, settings: Settings, redis: Redis, keys: Keys, hub: Hub,
                 replication: Replication) -> None:
        self.hub = hub
        self.audit = Audit(redis, keys, settings.channel_names)
        self.auth = Auth(settings, redis, keys, self.audit)
        self.journal = Journal(redis, keys, settings.stream_maxlen, replication=replication)
        self.jobs = Jobs(redis, keys, self.journal, self.published)
        self.dismissals = Dismissals(redis, keys)
        self.subscriptions = Subscriptions(Webhooks(redis, keys, settings.webhook_key),
                                           self.audit, settings.channel_names)

    def published(self, channel: str, idem: str) -> str | None:
        """The item this node's folded state published with `idem` in `channel`, if any."""
        hub = self.hub.channel(channel)
        return hub.state.idem_item(idem) if hub is not None else None

    async def run_scheduler(self) -> None:
        """Publish scheduled items when due, forever (the Runtime cancels it)."""
        await run_scheduler(self.jobs)
