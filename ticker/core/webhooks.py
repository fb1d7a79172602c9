"""Webhook subscriptions and the events they are sent, as data. Pure (docs/webhooks.md).

A subscription is a URL and what it follows: channels, and optionally only some urgencies
and some ops. What it is sent is the wire protocol's event (`op`, `cursor`, `item` or `id`)
with `type` and `channel`: exactly what a websocket reader of that channel applies, one
event per request. Whether a destination may be called at all (its resolved addresses) is
`ticker.core.addresses`; sending is `ticker.node.webhooks`.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from ticker.core.errors import ValidationError
from ticker.core.items import OPS, URGENCIES

# `type` of each op's event; `versions` is the cursor-less event of docs/editions.md.
EVENT_TYPES: Final = {
    "publish": "item.published",
    "correct": "item.corrected",
    "kill": "item.killed",
    "hold": "item.held",
    "release": "item.released",
    "pin": "item.pinned",
    "unpin": "item.unpinned",
    "extend": "item.extended",
    "versions": "item.versions",
}
# Ops an event can have (`confirm` never reaches readers, so it is never sent).
EVENT_OPS: Final = tuple(EVENT_TYPES)
MAX_URL: Final = 2000
MAX_SUBSCRIPTIONS: Final = 100
SUBSCRIPTION_ID: Final = re.compile(r"^wh_[A-Za-z0-9]{16}$")
HOST: Final = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                         r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
assert set(EVENT_OPS) - {"versions"} <= set(OPS)


@dataclass(frozen=True, slots=True)
class Subscription:
    """Who to call and for what. Empty `urgencies` or `ops`: all of them."""

    id: str
    url: str
    channels: tuple[str, ...]
    urgencies: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()
    created: int = 0
    by: str = ""

    def wants(self, channel: str, op: str, urgency: str | None) -> bool:
        """Whether an event `op` in `channel` about an item of `urgency` is for it."""
        if channel not in self.channels or (self.ops and op not in self.ops):
            return False
        return not self.urgencies or urgency in self.urgencies

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "channels": list(self.channels),
                "urgencies": list(self.urgencies), "ops": list(self.ops),
                "created": self.created, "by": self.by}

    def dumps(self) -> str:
        return json.dumps(self.public(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> Subscription:
        d = json.loads(raw)
        return cls(id=d["id"], url=d["url"], channels=tuple(d["channels"]),
                   urgencies=tuple(d.get("urgencies", ())), ops=tuple(d.get("ops", ())),
                   created=int(d.get("created", 0)), by=str(d.get("by", "")))


def new_subscription_id() -> str:
    return "wh_" + "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
                                          "23456789") for _ in range(16))


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def check_url(value: str) -> str:
    """An http(s) URL with a host name or address, no user or password, no fragment.

    Whether its host may be called is checked on the resolved addresses when sending
    (`ticker.core.addresses`), since a name can change what it resolves to.
    """
    url = value.strip() if isinstance(value, str) else ""
    if not url or len(url) > MAX_URL:
        raise ValidationError(f"url must be 1-{MAX_URL} characters", field="url")
    if not url.isascii() or any(c.isspace() or ord(c) < 0x21 for c in url):
        raise ValidationError("url must be printable ASCII without spaces (percent-encode "
                              "the rest)", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationError("url is not a valid URL", field="url") from None
    if parts.scheme not in ("https", "http"):
        raise ValidationError("url must start with https:// (or http://)", field="url")
    host = parts.hostname or ""
    if parts.username is not None or parts.password is not None:
        raise ValidationError("url must not carry a user name or password", field="url")
    if parts.fragment:
        raise ValidationError("url must not have a #fragment", field="url")
    if not host or not (HOST.match(host) or _is_address(host)):
        raise ValidationError("url needs a host name or an IP address", field="url")
    if port == 0:
        raise ValidationError("url has port 0", field="url")
    return url


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_choices(values: Iterable[Any], allowed: Iterable[str], field: str) -> tuple[str, ...]:
    """A list of names, each one of `allowed`, kept in `allowed`'s order, without repeats."""
    order = list(allowed)
    chosen: set[str] = set()
    for value in values:
        if not isinstance(value, str) or value.strip().lower() not in order:
            shown = str(value)[:40]
            raise ValidationError(f"{field}: {shown!r} is not one of {', '.join(order)}",
                                  field=field)
        chosen.add(value.strip().lower())
    return tuple(name for name in order if name in chosen)


def subscription(url: str, channels: Iterable[Any], configured: Iterable[str],
                 urgencies: Iterable[Any] = (), ops: Iterable[Any] = (), *, by: str,
                 created: int, sub_id: str | None = None) -> Subscription:
    """A checked subscription: at least one configured channel."""
    chosen = check_choices(channels, configured, "channels")
    if not chosen:
        raise ValidationError("choose at least one channel", field="channels")
    return Subscription(
        id=sub_id or new_subscription_id(), url=check_url(url), channels=chosen,
        urgencies=check_choices(urgencies, URGENCIES, "urgencies"),
        ops=check_choices(ops, EVENT_OPS, "ops"), created=created, by=by)


def event_body(channel: str, event: Mapping[str, Any]) -> bytes:
    """The request body: the wire event with its `type` and `channel` (compact JSON)."""
    body = {"type": EVENT_TYPES[event["op"]], "channel": channel, **event}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def message_id(subscription_id: str, channel: str, place: str) -> str:
    """The `webhook-id` of one event for one subscription: the same on every retry and on
    every node, so a receiver drops what it has had. `place` is the event's place in its
    channel's history (`ms-seq` or `ms-seq.n` for a versions event)."""
    return f"msg_{subscription_id[3:]}_{channel}_{place}"
