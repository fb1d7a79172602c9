"""Web Push, as data: a reader's subscription, what is pushed and the notification. Pure.

A browser that opts in gives a push subscription (RFC 8030): an endpoint URL at its push
service and two keys for the payload encryption (RFC 8291). ticker keeps exactly that, the
edition and the page it was made on: nothing else about the reader (docs/push.md). A flash
item (and an urgent one in the editions that choose it) is pushed once to every
subscription of its edition; a kill of a pushed item within its time to live sends a
notification with the same `Topic`, which replaces the first where the push service or the
browser still holds it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from ticker.core.addresses import Allowed
from ticker.core.channels import Channel
from ticker.core.errors import ValidationError

MAX_ENDPOINT: Final = 1000
MAX_PAGE: Final = 2000
MAX_TTL: Final = 24 * 3600
TOPIC_LENGTH: Final = 32  # RFC 8030: at most 32 characters of the URL-safe base64 alphabet
# What a withdrawn alert says, in the edition's language (English otherwise).
WITHDRAWN: Final = {"en": "Withdrawn", "ar": "سُحب هذا الخبر", "es": "Noticia retirada"}


def b64url_decode(value: Any) -> bytes:
    """Base64url with or without padding; ValueError on anything else."""
    if not isinstance(value, str) or not value.isascii() or len(value) > 200:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class PushSubscription:
    """One browser's subscription to one edition: where to push, and its keys."""

    edition: str
    endpoint: str
    p256dh: str
    auth: str
    page: str = ""
    created: int = 0

    @property
    def id(self) -> str:
        return subscription_id(self.endpoint)

    def info(self) -> dict[str, Any]:
        """As pywebpush takes it (`subscription_info`)."""
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    def dumps(self) -> str:
        return json.dumps({"edition": self.edition, "endpoint": self.endpoint,
                           "p256dh": self.p256dh, "auth": self.auth, "page": self.page,
                           "created": self.created}, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes) -> PushSubscription:
        d = json.loads(raw)
        return cls(edition=d["edition"], endpoint=d["endpoint"], p256dh=d["p256dh"],
                   auth=d["auth"], page=d.get("page", ""), created=int(d.get("created", 0)))


def subscription_id(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode("utf-8")).hexdigest()[:32]


def check_endpoint(value: Any, allowed: Allowed) -> str:
    """An https push endpoint (http only for a host an operator allowed: a relay inside
    the network). Its resolved address is checked again at each push."""
    if not isinstance(value, str) or not value or len(value) > MAX_ENDPOINT:
        raise ValidationError(f"endpoint must be a URL of at most {MAX_ENDPOINT} characters",
                              field="endpoint")
    if not value.isascii() or any(c.isspace() or ord(c) < 0x21 for c in value):
        raise ValidationError("endpoint must be printable ASCII", field="endpoint")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise ValidationError("endpoint is not a valid URL", field="endpoint") from None
    host = parts.hostname or ""
    if not host or parts.username is not None or parts.password is not None or parts.fragment:
        raise ValidationError("endpoint needs a host, and no user, password or #fragment",
                              field="endpoint")
    if parts.scheme == "https":
        return value
    if parts.scheme == "http" and allowed.permits(host):
        return value
    raise ValidationError("endpoint must be an https:// URL", field="endpoint")


def check_keys(keys: Any) -> tuple[str, str]:
    """`{"p256dh", "auth"}`: a P-256 public key (65 bytes, uncompressed) and a 16-byte
    authentication secret, base64url."""
    if not isinstance(keys, Mapping):
        raise ValidationError("keys must be an object with p256dh and auth", field="keys")
    try:
        p256dh, auth = b64url_decode(keys.get("p256dh")), b64url_decode(keys.get("auth"))
    except (ValueError, TypeError):
        raise ValidationError("keys.p256dh and keys.auth must be base64url",
                              field="keys") from None
    if len(p256dh) != 65 or p256dh[0] != 4:
        raise ValidationError("keys.p256dh must be an uncompressed P-256 public key",
                              field="keys")
    if len(auth) != 16:
        raise ValidationError("keys.auth must be 16 bytes", field="keys")
    return b64url(p256dh), b64url(auth)


def check_page(value: Any) -> str:
    """The page the reader subscribed on (a notification's click opens it when the item
    has no link); empty when not given."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_PAGE or not value.isascii():
        raise ValidationError(f"page must be an http(s) URL of at most {MAX_PAGE} "
                              "characters", field="page")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError("page must be an http(s) URL", field="page")
    return value


def pushes(urgency: str | None, edition: str, urgent_editions: frozenset[str]) -> bool:
    """Whether an item of `urgency` is pushed in `edition`."""
    return urgency == "flash" or (urgency == "urgent" and edition in urgent_editions)


def topic(edition: str, item_id: str) -> str:
    """The `Topic` of an item's pushes (the same for its kill, so that one replaces the
    other): 32 characters of base64url."""
    digest = hashlib.sha256(f"{edition}:{item_id}".encode()).digest()
    return b64url(digest)[:TOPIC_LENGTH]


def headline(item: Mapping[str, Any]) -> str:
    text, source = str(item.get("text", "")), item.get("source")
    if source and not text.casefold().startswith(str(source).casefold()):
        return f"{source}: {text}"
    return text


def notification(channel: Channel, item: Mapping[str, Any], kind: str, page: str) -> bytes:
    """The payload the service worker shows (`web/ticker-sw.js`): `kind` is `flash` (a new
    item) or `withdrawn` (its kill)."""
    item_id = str(item.get("id", ""))
    link = item.get("link") or page or ""
    text = headline(item)
    if kind == "withdrawn":
        text = f"{WITHDRAWN.get(channel.lang, WITHDRAWN['en'])}: {text}"
    body = {
        "type": kind, "edition": channel.name, "lang": channel.lang, "dir": channel.dir,
        "title": channel.title, "body": text, "id": item_id,
        "tag": topic(channel.name, item_id), "url": link, "urgency": item.get("urgency"),
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
