"""Publish from Python: the same validation as the server, then XADD. Used by `ticker post`.

    from redis.asyncio import Redis
    from ticker.redis import publisher

    r = Redis.from_url("redis://127.0.0.1:6379/0")
    item_id = await publisher.publish(r, "en", "Three drones launched toward Eilat",
                                      source="Israeli media", by="wire-bot")
    await publisher.kill(r, "en", item_id, reason="unconfirmed", by="wire-bot")

Every function validates first (`ticker.core.items.parse_entry`) and raises
`ticker.core.errors.ValidationError` naming the field, so nothing invalid is ever written.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from ticker.core.items import entry_fields, parse_entry
from ticker.redis.keys import Keys

DEFAULT_KEYS = Keys("ticker")


def check(fields: dict[str, str]) -> dict[str, str]:
    """Validate stream fields as every node will; returns the canonical fields."""
    return entry_fields(parse_entry(fields))


async def _xadd(redis: Redis, channel: str, fields: dict[str, str], keys: Keys,
                maxlen: int) -> str:
    canonical = check({k: v for k, v in fields.items() if v is not None})
    entry_id = await redis.xadd(keys.stream(channel), canonical,  # type: ignore[arg-type]
                                maxlen=maxlen, approximate=True)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def publish(
    redis: Redis, channel: str, text: str, *, source: str | None = None,
    urgency: str | None = None, link: str | None = None, tags: Sequence[str] = (),
    ttl: int | None = None, expires: int | None = None, by: str | None = None,
    idem: str | None = None, keys: Keys = DEFAULT_KEYS, maxlen: int = 10000,
    translation_of: str | None = None,
) -> str:
    """Publish one item; returns its id (the stream ID of the publish entry).

    `translation_of` (`"en:<id>"`) makes it a version of that item; only its form is
    checked here (`ticker post --translation-of` checks the rest against the folded
    streams, `ticker.core.editions.check_link`)."""
    fields = {"op": "publish", "text": text}
    for name, value in (("source", source), ("urgency", urgency), ("link", link),
                        ("by", by), ("idem", idem), ("translation_of", translation_of)):
        if value is not None:
            fields[name] = value
    if tags:
        fields["tags"] = ",".join(tags)
    if ttl is not None:
        fields["ttl"] = str(ttl)
    if expires is not None:
        fields["expires"] = str(expires)
    return await _xadd(redis, channel, fields, keys, maxlen)


async def act(
    redis: Redis, channel: str, op: str, item: str, *, by: str | None = None,
    keys: Keys = DEFAULT_KEYS, maxlen: int = 10000, **extra: str | int | None,
) -> str:
    """Any op on an item (correct, kill, hold, release, pin, unpin, extend)."""
    fields = {"op": op, "item": item}
    if by is not None:
        fields["by"] = by
    for name, value in extra.items():
        if value is not None:
            fields[name] = str(value)
    return await _xadd(redis, channel, fields, keys, maxlen)


async def kill(redis: Redis, channel: str, item: str, *, reason: str | None = None,
               by: str | None = None, keys: Keys = DEFAULT_KEYS) -> str:
    return await act(redis, channel, "kill", item, by=by, reason=reason, keys=keys)


async def correct(redis: Redis, channel: str, item: str, text: str, *,
                  reason: str | None = None, by: str | None = None,
                  keys: Keys = DEFAULT_KEYS) -> str:
    return await act(redis, channel, "correct", item, by=by, text=text, reason=reason,
                     keys=keys)
