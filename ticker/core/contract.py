"""The JSON API's request and response shapes, each defined once, as msgspec Structs.

`ticker.transport.api` decodes every request body into one of the request Structs
(`decode`) and builds its answers from the response Structs; `ticker.transport.openapi`
derives /api/openapi.json from the same Structs. So what the document says is what the
server checks, by construction.

Every constraint on a request field is the stream contract's own (`ticker.core.items`, the
`*_RULE`s, built from the constants and patterns `items.parse_entry` checks), so a body sent
over HTTP and an entry XADDed straight into Redis are held to the same limits. Before the
constraints apply, a body's strings are normalised the way the stream contract normalises
them (`Normalised`): text fields NFC and trimmed, a link trimmed, tags trimmed and in lower
case. A limit therefore counts what will be kept (280 characters after NFC, whatever
surrounds them). What a schema cannot state (one line, no control or bidi-control
characters, an item that must exist, `extend` needing `ttl` or `expires`) is checked after
decoding, by `items.parse_entry` and the handlers, in one place each.

A null or blank optional string means "not given", as in the stream.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from ticker.core.errors import ValidationError
from ticker.core.items import (
    CHANNEL_PATTERN,
    EXPIRES_RULE,
    IDEM_RULE,
    ITEM_RULE,
    LINK_RULE,
    MAX_LINK,
    MAX_TAGS,
    MAX_TEXT,
    MAX_TTL,
    REASON_RULE,
    SOURCE_RULE,
    TAG_RULE,
    TAGS_RULE,
    TAGS_STRING_RULE,
    TEXT_RULE,
    TTL_RULE,
    normalise_tag,
    normalise_text,
)

S = TypeVar("S", bound=Struct)


@dataclass(frozen=True, slots=True)
class Normalised:
    """Marks a field type with what the stream contract does to its value before checking
    it; msgspec ignores the mark, `decode` applies it before the constraints."""

    apply: Callable[[Any], Any]


def _text(value: Any) -> Any:
    return normalise_text(value) if isinstance(value, str) else value


def _link(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _tags(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return [normalise_tag(t) if isinstance(t, str) else t for t in value]
    return value


# -- request fields ----------------------------------------------------------------------------

Text = Annotated[
    str, TEXT_RULE, Normalised(_text),
    Meta(description=f"One line of plain text, 1-{MAX_TEXT} characters after NFC "
                     "normalisation and trimming; no control, unassigned or bidi-control "
                     "characters.")]
Source = Annotated[
    Annotated[str, SOURCE_RULE] | None, Normalised(_text),
    Meta(description="Attribution (\"Israeli media\"), after NFC and trimming.")]
Urgency = Annotated[
    Literal["flash", "urgent", "breaking", 1, 3, 5] | None,
    Meta(description="flash, urgent or breaking (the default), or the IPTC numbers 1, 3, 5.")]
Link = Annotated[
    Annotated[str, LINK_RULE] | None, Normalised(_link),
    Meta(description=f"An https:// URL in printable ASCII (percent-encode the rest), up to "
                     f"{MAX_LINK} characters, trimmed.")]
Tags = Annotated[
    Annotated[list[Annotated[str, TAG_RULE]], TAGS_RULE]
    | Annotated[str, TAGS_STRING_RULE] | None,
    Normalised(_tags),
    Meta(description=f"Up to {MAX_TAGS} tags, each 1-32 of a-z, 0-9, '-' and '_' (trimmed, "
                     "lower-cased): a list, or the stream's comma-separated string. An empty "
                     "list or string on a correction clears the item's tags.")]
Ttl = Annotated[
    Annotated[int, TTL_RULE] | None,
    Meta(description=f"Seconds on air from now, 1..{MAX_TTL}. Without ttl or expires, an item "
                     "stays on air 1 h (flash), 2 h (urgent) or 3 h (breaking).")]
# A string is checked by items.check_expires (ISO 8601 is more than a pattern can say); the
# schema names the forms it takes: a date-time, epoch milliseconds as digits, or blank.
Expires = Annotated[
    Annotated[int, EXPIRES_RULE]
    | Annotated[str, Meta(extra_json_schema={
        "anyOf": [{"format": "date-time"}, {"pattern": r"^\s*[0-9]*\s*$"}]})]
    | None,
    Meta(description="When it leaves the air: epoch milliseconds, or an ISO 8601 time with a "
                     "zone.")]
Idem = Annotated[
    Annotated[str, IDEM_RULE] | None, Normalised(_text),
    Meta(description="Idempotency key: a publish with a key seen within 24 h on this channel "
                     "is not published again; the answer names the first item (200, "
                     "duplicate).")]
Reason = Annotated[
    Annotated[str, REASON_RULE] | None, Normalised(_text),
    Meta(description="Why (kept in the stream and the audit trail).")]




class TranslationOf(Struct, forbid_unknown_fields=True, kw_only=True):
    """The item of another edition this one is a version of (docs/editions.md)."""

    channel: Annotated[str, Meta(pattern=f"^{CHANNEL_PATTERN}$",
                                 description="The other edition (a configured channel).")]
    id: Annotated[str, ITEM_RULE, Meta(description="The item's id in that edition.")]


Translation = Annotated[
    TranslationOf | None,
    Meta(description="Publish this item as a version of an item of another edition: the "
                     "original, not a translation of it. Refused (422) for an unknown or "
                     "killed item, the same edition, or a story that already has a version "
                     "in this edition (409).")]
AllVersions = Annotated[
    bool,
    Meta(description="Kill every version of the story, in every edition, with the same "
                     "reason (docs/editions.md). Default false: this edition only.")]


# -- request bodies ----------------------------------------------------------------------------

class PublishRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """A new item. Who publishes is the token's owner (there is no `by`)."""

    text: Text
    source: Source = None
    urgency: Urgency = None
    link: Link = None
    tags: Tags = None
    ttl: Ttl = None
    expires: Expires = None
    idem: Idem = None
    translation_of: Translation = None


class CorrectRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """The item's new text and, optionally, attribution, urgency, link and tags."""

    text: Text
    source: Source = None
    urgency: Urgency = None
    link: Link = None
    tags: Tags = None
    reason: Reason = None


class ReasonRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """hold (off the air until released): why."""

    reason: Reason = None


class KillRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """kill (off the air for good): why, and whether every version goes too."""

    reason: Reason = None
    all_versions: AllVersions = False


class ExtendRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """A new expiry: `ttl` or `expires` (one of them is needed)."""

    ttl: Ttl = None
    expires: Expires = None


class WebhookRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """A webhook subscription (docs/webhooks.md): where, and for which events."""

    url: Annotated[str, Meta(max_length=2000, description="The receiver: an https:// URL "
                             "(http:// only for hosts an operator allowed).")]
    channels: Annotated[list[str], Meta(max_length=64, description=(
        "The channels it follows (at least one)."))]
    urgencies: Annotated[list[str], Meta(max_length=3, description=(
        "Only items of these urgencies (flash, urgent, breaking); empty: all."))] = []
    ops: Annotated[list[str], Meta(max_length=16, description=(
        "Only these ops (publish, correct, kill, ...); empty: all."))] = []


class EmptyRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """release, pin, unpin, confirm: no fields (the body may be empty). `confirm` says the
    item needs no change after another version's correction (docs/editions.md)."""


# The body each op on an item takes (POST /api/channels/{channel}/items/{item}/{op}).
OP_REQUESTS: Final[dict[str, type[Struct]]] = {
    "correct": CorrectRequest,
    "kill": KillRequest,
    "hold": ReasonRequest,
    "release": EmptyRequest,
    "pin": EmptyRequest,
    "unpin": EmptyRequest,
    "extend": ExtendRequest,
    "confirm": EmptyRequest,
}


# -- responses ---------------------------------------------------------------------------------

Replicas = Annotated[int | UnsetType, Meta(
    description="With TICKER_REDIS_WAIT_REPLICAS: how many replicas had the entry when "
                "answering. Fewer than configured: it is on the primary only, and a failover "
                "before it reaches a replica can lose it (docs/reliability.md).")]


class Published(Struct, omit_defaults=True, kw_only=True):
    """The published item's id (keep it to act on the item) and the cursor it is at."""

    id: str
    cursor: str
    channel: str
    duplicate: bool = False  # true: an idem key seen before; `id` is the first item's
    replicas: Replicas = UNSET


class Applied(Struct, omit_defaults=True, kw_only=True):
    """The item acted on, and the cursor of the op's own entry; with `all_versions`, the
    same for every other version killed."""

    id: str
    cursor: str
    op: str
    channel: str
    versions: list[Applied] | UnsetType = UNSET
    replicas: Replicas = UNSET


class Item(Struct, kw_only=True):
    """An item as readers see it (docs/protocol.md, ITEM). `text` is plain text, never HTML."""

    id: str
    text: str
    source: str | None
    urgency: Literal["flash", "urgent", "breaking"]
    link: str | None
    tags: list[str]
    ts: int
    expires: int
    version: int
    corrected: bool
    pinned: bool
    story: Annotated[str, Meta(
        description="The story this item is a version of, `<channel>:<id>`: its own for an "
                    "original, the original's for a translation.")]
    versions: Annotated[dict[str, str], Meta(
        description="Every version of the story by edition, `{\"en\": id, \"ar\": id}` "
                    "(this item included).")]


class ChannelInfo(Struct, kw_only=True):
    """A channel (edition): its name, language, writing direction and ticker title."""

    name: str
    lang: str
    dir: Literal["ltr", "rtl"]
    title: str


class Channels(Struct, kw_only=True):
    """The configured channels."""

    channels: list[ChannelInfo]


class OnAir(Struct, kw_only=True):
    """What is on air at `now` (server clock, epoch ms): pinned first, then newest first."""

    channel: str
    cursor: str
    now: int
    items: list[Item]


class Snapshot(Struct, kw_only=True):
    """The websocket's snapshot message (docs/protocol.md), for polling clients."""

    now: int
    type: Literal["snapshot"]
    channel: str
    channel_info: ChannelInfo
    cursor: str
    reset: bool
    missed: int | None
    items: list[Item]


class ItemReach(Struct, kw_only=True):
    """How many reader connections an item was written to, summed over every node."""

    channel: str
    id: str
    reach: int


class ChannelReach(Struct, kw_only=True):
    """Reach of several items (item id -> connections), summed over every node."""

    channel: str
    reach: dict[str, int]


class Error(Struct, omit_defaults=True, kw_only=True):
    """Every 4xx and 5xx answer: a code, a sentence, and the input it is about."""

    error: str
    message: str
    field: str | UnsetType = UNSET


# -- decoding ----------------------------------------------------------------------------------

def decode(body: Mapping[str, Any], shape: type[S]) -> S:
    """A JSON object (already parsed) as the request Struct `shape`.

    Raises ValidationError naming the field: a required field that is absent or null
    ("text is missing", checked first), an unknown field, or a value of the wrong type or
    outside its constraints (after normalisation).
    """
    for name in _required(shape):
        if body.get(name) is None:
            raise ValidationError(f"{name} is missing", field=name)
    marks = _normalisers(shape)
    value = {k: marks[k](v) if k in marks else v for k, v in body.items()}
    try:
        return msgspec.convert(value, shape)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), shape) from None


def stream_fields(request: Struct) -> dict[str, str]:
    """A decoded request body as stream fields, for `items.parse_entry` to check the rest.

    null (None) is left out; a list of tags becomes the stream's comma-separated form; a
    blank string stays, meaning what it means in the stream (an empty `tags` clears them).
    """
    fields: dict[str, str] = {}
    for name in request.__struct_fields__:
        value = getattr(request, name)
        if value is None or isinstance(value, bool):  # flags are for the handler, not Redis
            continue
        if isinstance(value, TranslationOf):
            fields[name] = f"{value.channel}:{value.id}"
            continue
        fields[name] = ",".join(value) if isinstance(value, list) else str(value)
    return fields


def encode(value: Struct) -> bytes:
    """A response Struct as compact UTF-8 JSON."""
    return msgspec.json.encode(value)


@functools.cache
def _required(shape: type[Struct]) -> tuple[str, ...]:
    return tuple(f.name for f in msgspec.structs.fields(shape) if f.required)


@functools.cache
def _normalisers(shape: type[Struct]) -> dict[str, Callable[[Any], Any]]:
    return {f.name: mark.apply for f in msgspec.structs.fields(shape)
            for mark in getattr(f.type, "__metadata__", ()) if isinstance(mark, Normalised)}


@functools.cache
def _descriptions(shape: type[Struct]) -> dict[str, str]:
    return {f.name: meta.description for f in msgspec.structs.fields(shape)
            for meta in getattr(f.type, "__metadata__", ())
            if isinstance(meta, Meta) and meta.description}


# msgspec's messages: "<what> - at `$.<field>...`", or about the object itself.
_AT = re.compile(r"\A(?P<detail>.*) - at `\$\.(?P<path>(?P<field>[^.\[`]+)[^`]*)`\Z", re.S)
_UNKNOWN = re.compile(r"\AObject contains unknown field `(?P<field>[^`]*)`\Z", re.S)
_MISSING = re.compile(r"\AObject missing required field `(?P<field>[^`]*)`\Z", re.S)


def _invalid(message: str, shape: type[Struct]) -> ValidationError:
    """msgspec's validation message as our ValidationError, naming the top-level field."""
    if m := _UNKNOWN.match(message):
        return ValidationError(f"unknown field {m['field']!r}", field=m["field"])
    if m := _MISSING.match(message):
        return ValidationError(f"{m['field']} is missing", field=m["field"])
    if m := _AT.match(message):
        detail, field = m["detail"], m["field"]
        described = _descriptions(shape).get(field, "").split(". ")[0].rstrip(".")
        described = described[:1].lower() + described[1:]
        if described and (" matching regex " in detail or detail.startswith("Invalid enum")):
            # The field's description says more to a person than a pattern, and does not
            # repeat a value that may be long.
            detail = "expected " + described
        else:
            detail = detail[:1].lower() + detail[1:]
        return ValidationError(f"{m['path']}: {detail}", field=field)
    return ValidationError(f"body: {message}", field="body")


# -- a JSON body to stream fields, for the API and the desk -------------------------------------

# The fields each body takes, as the request Structs define them (the API and the desk decode
# their bodies with these, through `to_fields`).
PUBLISH_FIELDS: Final[set[str]] = set(PublishRequest.__struct_fields__)
OP_FIELDS: Final[dict[str, set[str]]] = {
    op: set(shape.__struct_fields__) for op, shape in OP_REQUESTS.items()}
REQUESTS: Final[dict[frozenset[str], type[Struct]]] = {
    frozenset(PUBLISH_FIELDS): PublishRequest,
    **{frozenset(OP_FIELDS[op]): shape for op, shape in OP_REQUESTS.items()},
}


def to_fields(body: dict[str, Any], allowed: set[str]) -> dict[str, str]:
    """A parsed JSON body -> stream fields, through the request Struct with exactly the
    fields `allowed` (PUBLISH_FIELDS or one of OP_FIELDS).

    Raises ValidationError naming the field: unknown fields, wrong types and values outside
    the contract's constraints (`contract.decode`). null means "not given".
    """
    return stream_fields(decode(body, REQUESTS[frozenset(allowed)]))
