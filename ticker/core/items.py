"""The stream entry contract (docs/publishing.md): parsing and validation, pure.

Every publisher's entry, whether it came over HTTP or was XADDed raw by another program, is
checked by `parse_entry`. An entry that fails raises `ValidationError` naming the field, and
never reaches a reader. The HTTP API builds stream fields and runs them through the same
function, so both paths accept exactly the same things.

The rules a JSON Schema can state (lengths, patterns, ranges) are defined once here, as the
`*_RULE` constraints below, from the same constants and patterns `parse_entry` checks. The
HTTP API's request shapes (`ticker.core.contract`), and so its validation and /api/openapi.json,
are built from these constraints, so the HTTP contract and the stream contract cannot drift.
What a schema cannot state (NFC normalisation, one line, Unicode categories, which op takes
what) is code, here, once.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

from msgspec import Meta

from ticker.core.errors import ValidationError

T = TypeVar("T")

OPS: Final = ("publish", "correct", "kill", "hold", "release", "pin", "unpin", "extend",
               "confirm")
TARGETED_OPS: Final = frozenset(OPS[1:])
URGENCIES: Final = {"flash": 1, "urgent": 3, "breaking": 5}
URGENCY_BY_NUMBER: Final = {str(n): name for name, n in URGENCIES.items()}
DEFAULT_TTL: Final = {"flash": 3600, "urgent": 2 * 3600, "breaking": 3 * 3600}

MAX_TEXT: Final = 280
MAX_SOURCE: Final = 100
MAX_LINK: Final = 2000
MAX_TAGS: Final = 10
MAX_BY: Final = 64
MAX_IDEM: Final = 128
MAX_REASON: Final = 500
MAX_TTL: Final = 7 * 24 * 3600
MAX_EXPIRES: Final = (1 << 53) - 1  # epoch ms; the largest integer a JSON reader keeps exact
MAX_ENTRY_BYTES: Final = 8 * 1024

STREAM_ID_PATTERN: Final = r"([0-9]{1,20})-([0-9]{1,20})"
STREAM_ID: Final = re.compile(rf"\A{STREAM_ID_PATTERN}\Z")
# A channel (edition) name, as TICKER_CHANNELS takes it.
CHANNEL_PATTERN: Final = r"[a-z0-9][a-z0-9_-]{0,31}"
# `translation_of`: the item of another edition this one is a version of, "en:<item id>".
STORY: Final = re.compile(rf"\A({CHANNEL_PATTERN}):({STREAM_ID_PATTERN})\Z")
# Host (name, IPv4, [IPv6], port), then path/query/fragment in printable ASCII (no spaces).
LINK: Final = re.compile(r"https://[A-Za-z0-9.\-:\[\]]+(?:[/?#][!-~]*)?")
TAG_PATTERN: Final = r"[a-z0-9][a-z0-9_-]{0,31}"
TAG: Final = re.compile(rf"^{TAG_PATTERN}$")
# The comma-separated form, as the JSON API accepts it (lower case, no blanks).
TAGS_PATTERN: Final = rf"{TAG_PATTERN}(?:,{TAG_PATTERN}){{0,{MAX_TAGS - 1}}}"
# Bidi embeddings, overrides and isolates: the widget isolates each item itself, and these in
# a headline can reverse or hide text. Marks (U+200E/U+200F) are allowed: Arabic copy needs them.
BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
KNOWN_FIELDS: Final = frozenset(
    {"op", "item", "text", "source", "urgency", "link", "tags", "expires", "ttl", "by", "idem",
     "reason", "translation_of"}
)

# -- the rules a JSON Schema can state, each defined once ------------------------------------
# `ticker.core.contract` puts exactly these on the HTTP API's Structs (msgspec checks them there,
# and /api/openapi.json states them); the checks below enforce the same numbers and patterns on
# every stream entry, in their own words. Strings are measured as parse_entry measures them: after
# `normalise_text` (text fields), `str.strip` (link, tags) or `normalise_tag` (one tag). A blank
# optional string means "not given", so only `text` has a minimum length, and the link and tags
# patterns match blank (the `\s*` changes nothing for a trimmed value; it tells a reader of the
# schema that surrounding blanks are fine).
TEXT_RULE: Final = Meta(min_length=1, max_length=MAX_TEXT)
SOURCE_RULE: Final = Meta(max_length=MAX_SOURCE)
IDEM_RULE: Final = Meta(max_length=MAX_IDEM)
REASON_RULE: Final = Meta(max_length=MAX_REASON)
LINK_RULE: Final = Meta(max_length=MAX_LINK, pattern=rf"^\s*(?:{LINK.pattern})?\s*$")
TAG_RULE: Final = Meta(pattern=TAG.pattern)  # one tag, lower-cased and trimmed
TAGS_RULE: Final = Meta(max_length=MAX_TAGS)  # the list of tags
TAGS_STRING_RULE: Final = Meta(pattern=rf"^\s*(?:{TAGS_PATTERN})?\s*$")  # the "a,b" form
TTL_RULE: Final = Meta(ge=1, le=MAX_TTL)
EXPIRES_RULE: Final = Meta(ge=1, le=MAX_EXPIRES)  # as epoch ms; a string is an ISO 8601 time
ITEM_RULE: Final = Meta(pattern=f"^{STREAM_ID_PATTERN}$")


@dataclass(frozen=True, slots=True)
class Entry:
    """A validated stream entry. `item` is the target id for every op but `publish`."""

    op: str
    item: str | None = None
    text: str | None = None
    source: str | None = None
    urgency: str | None = None
    link: str | None = None
    tags: tuple[str, ...] | None = None
    expires: int | None = None
    ttl: int | None = None
    by: str | None = None
    idem: str | None = None
    reason: str | None = None
    translation_of: str | None = None  # "en:<item id>": publish only


def parse_stream_id(value: str) -> tuple[int, int] | None:
    """`"1732662000000-3"` -> `(1732662000000, 3)`; None when it is not a stream ID."""
    m = STREAM_ID.match(value)
    if m is None:
        return None
    ms, seq = int(m.group(1)), int(m.group(2))
    if ms >= 1 << 64 or seq >= 1 << 64:
        return None
    return ms, seq


def normalise_text(value: str) -> str:
    """What every text field becomes before it is checked and kept: NFC, then trimmed."""
    return unicodedata.normalize("NFC", value).strip()


def normalise_tag(value: str) -> str:
    """What one tag becomes before it is checked and kept: trimmed, lower case."""
    return value.strip().lower()


def check_text(value: str, field: str = "text", limit: int = MAX_TEXT) -> str:
    """NFC-normalise and check one line of plain text; return it stripped."""
    text = normalise_text(value)
    if not text:
        raise ValidationError(f"{field} is empty", field=field)
    if len(text) > limit:
        raise ValidationError(
            f"{field} is {len(text)} characters; the limit is {limit}", field=field
        )
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\n\r\u2028\u2029\x85\x0b\x0c":
            raise ValidationError(f"{field} must be one line", field=field)
        if cat in ("Cc", "Cs", "Co", "Cn"):
            raise ValidationError(
                f"{field} contains a control or unassigned character U+{ord(ch):04X}",
                field=field,
            )
        if ch in BIDI_CONTROLS:
            raise ValidationError(
                f"{field} contains a bidi control character U+{ord(ch):04X}", field=field
            )
    return text


def check_link(value: str) -> str:
    link = value.strip()
    if len(link) > MAX_LINK:
        raise ValidationError(f"link is longer than {MAX_LINK} characters", field="link")
    # Printable ASCII only: other characters (spaces of every kind, controls) must be
    # percent-encoded, so what the reader sees is exactly what the editor typed.
    if not LINK.fullmatch(link):
        raise ValidationError(
            "link must be an https:// URL without spaces (percent-encode other characters)",
            field="link")
    return link


def check_tags(value: str) -> tuple[str, ...]:
    tags = tuple(dict.fromkeys(normalise_tag(t) for t in value.split(",") if t.strip()))
    if len(tags) > MAX_TAGS:
        raise ValidationError(f"at most {MAX_TAGS} tags", field="tags")
    for tag in tags:
        if not TAG.match(tag):  # TAG_RULE
            raise ValidationError(
                f"tag {tag!r} must be 1-32 of a-z, 0-9, '-', '_'", field="tags"
            )
    return tags


def check_urgency(value: str) -> str:
    v = value.strip().lower()
    if v in URGENCIES:
        return v
    if v in URGENCY_BY_NUMBER:
        return URGENCY_BY_NUMBER[v]
    raise ValidationError("urgency must be flash, urgent or breaking (or 1, 3, 5)",
                          field="urgency")


def check_ttl(value: str) -> int:
    v = value.strip()
    if not (v.isascii() and v.lstrip("-").isdigit() and len(v) <= 12):
        raise ValidationError("ttl must be a whole number of seconds", field="ttl")
    try:
        ttl = int(v)
    except ValueError:
        raise ValidationError("ttl must be a whole number of seconds", field="ttl") from None
    if not 1 <= ttl <= MAX_TTL:  # TTL_RULE
        raise ValidationError(f"ttl must be 1..{MAX_TTL} seconds", field="ttl")
    return ttl


def check_expires(value: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time with a zone; returns epoch ms."""
    v = value.strip()
    if v.isascii() and v.isdigit():
        if len(v) > 16:
            raise ValidationError("expires is out of range", field="expires")
        ms = int(v)
    else:
        try:
            when = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(
                "expires must be epoch milliseconds or an ISO 8601 time", field="expires"
            ) from None
        if when.tzinfo is None:
            raise ValidationError("expires needs a time zone (e.g. Z)", field="expires")
        ms = int(when.timestamp() * 1000)
    if not 1 <= ms <= MAX_EXPIRES:  # EXPIRES_RULE
        raise ValidationError("expires is out of range", field="expires")
    return ms


def check_item_id(value: str) -> str:
    v = value.strip()
    if parse_stream_id(v) is None:
        raise ValidationError("item must be a stream ID like 1732662000000-0", field="item")
    return v


def check_translation_of(value: str) -> str:
    """`"en:1732662000000-0"`, the item of another edition a publish is a version of.

    Only its form is checked here: whether the channel is configured, differs from the
    entry's own and names an item is for the fold and the edges (docs/editions.md).
    """
    m = STORY.match(value.strip())
    if m is None or parse_stream_id(m.group(2)) is None:
        raise ValidationError(
            "translation_of must name an item of another edition as <channel>:<item id>, "
            "e.g. en:1732662000000-0", field="translation_of")
    return f"{m.group(1)}:{m.group(2)}"


def split_story(value: str) -> tuple[str, str]:
    """A checked `translation_of` (or story key) as (channel, item id)."""
    channel, _, item_id = value.partition(":")
    return channel, item_id


def _small(value: str, field: str, limit: int) -> str:
    return check_text(value, field, limit)


def decode_fields(raw: Mapping[bytes, bytes] | Mapping[str, str]) -> dict[str, str]:
    """Decode a raw stream entry (bytes from Redis) strictly as UTF-8, bounded in size."""
    size = 0
    fields: dict[str, str] = {}
    for k, v in raw.items():
        try:
            kb = k if isinstance(k, bytes) else k.encode()
            vb = v if isinstance(v, bytes) else v.encode()
        except UnicodeEncodeError:  # a lone surrogate, e.g. from JSON "\ud800"
            raise ValidationError("entry is not valid Unicode", field=str(k)[:40]) from None
        size += len(kb) + len(vb)
        if size > MAX_ENTRY_BYTES:
            raise ValidationError(f"entry is larger than {MAX_ENTRY_BYTES} bytes", field="entry")
        try:
            key = kb.decode("utf-8")
            val = vb.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError(
                "entry is not valid UTF-8", field=kb.decode("utf-8", "replace")[:40]
            ) from None
        fields[key] = val
    return fields


def parse_entry(raw: Mapping[bytes, bytes] | Mapping[str, str]) -> Entry:
    """Validate one stream entry; raise ValidationError naming the first bad field.

    Unknown fields are ignored (a newer publisher may add some); a field of a kind the op
    does not take is ignored too, so the contract stays forward compatible.
    """
    fields = decode_fields(raw)
    op = fields.get("op", "publish").strip().lower() or "publish"
    if op not in OPS:
        raise ValidationError(f"unknown op {op!r}; one of {', '.join(OPS)}", field="op")
    item = None
    if op in TARGETED_OPS:
        if "item" not in fields:
            raise ValidationError(f"{op} needs the item it acts on", field="item")
        item = check_item_id(fields["item"])
    text = None
    if op in ("publish", "correct"):
        if "text" not in fields:
            raise ValidationError("text is missing", field="text")
        text = check_text(fields["text"])
    elif "text" in fields and fields["text"].strip():
        raise ValidationError(f"{op} takes no text", field="text")
    source = _opt(fields, "source", lambda v: _small(v, "source", MAX_SOURCE))
    urgency = _opt(fields, "urgency", check_urgency)
    link = _opt(fields, "link", check_link)
    # Present but empty tags mean "no tags" (a correction may clear them).
    tags = check_tags(fields["tags"]) if "tags" in fields else None
    expires = _opt(fields, "expires", check_expires)
    ttl = _opt(fields, "ttl", check_ttl)
    if op == "extend" and expires is None and ttl is None:
        raise ValidationError("extend needs ttl or expires", field="ttl")
    by = _opt(fields, "by", lambda v: _small(v, "by", MAX_BY))
    idem = _opt(fields, "idem", lambda v: _small(v, "idem", MAX_IDEM))
    reason = _opt(fields, "reason", lambda v: _small(v, "reason", MAX_REASON))
    translation_of = _opt(fields, "translation_of", check_translation_of) \
        if op == "publish" else None
    return Entry(op=op, item=item, text=text, source=source, urgency=urgency, link=link,
                 tags=tags, expires=expires, ttl=ttl, by=by, idem=idem, reason=reason,
                 translation_of=translation_of)


def _opt(fields: Mapping[str, str], name: str, check: Callable[[str], T]) -> T | None:
    value = fields.get(name)
    if value is None or not value.strip():
        return None
    return check(value)


def entry_fields(entry: Entry) -> dict[str, str]:
    """The canonical stream fields of a validated entry (what the HTTP API XADDs)."""
    out: dict[str, str] = {"op": entry.op}
    if entry.item is not None:
        out["item"] = entry.item
    if entry.text is not None:
        out["text"] = entry.text
    if entry.source is not None:
        out["source"] = entry.source
    if entry.urgency is not None:
        out["urgency"] = entry.urgency
    if entry.link is not None:
        out["link"] = entry.link
    if entry.tags or (entry.tags is not None and entry.op == "correct"):
        out["tags"] = ",".join(entry.tags)  # an empty list on a correction clears the tags
    if entry.expires is not None:
        out["expires"] = str(entry.expires)
    if entry.ttl is not None:
        out["ttl"] = str(entry.ttl)
    if entry.by is not None:
        out["by"] = entry.by
    if entry.idem is not None:
        out["idem"] = entry.idem
    if entry.reason is not None:
        out["reason"] = entry.reason
    if entry.translation_of is not None:
        out["translation_of"] = entry.translation_of
    return out


@dataclass(slots=True)
class Rejection:
    """An entry that failed validation: what, where and why (for the dead-letter stream)."""

    channel: str
    entry_id: str
    fields: Mapping[bytes, bytes]
    error: ValidationError
