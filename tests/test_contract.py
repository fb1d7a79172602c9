"""The HTTP API contract (`ticker.core.contract`) and the document derived from it
(`ticker.transport.openapi`): pure function calls, no server.

- /api/openapi.json is valid OpenAPI 3.1, documents every route of ticker.transport.api and nothing
  else, and its request and response schemas are exactly what the Structs produce;
- a body is decoded with clear errors naming the field;
- the Structs and the stream contract (items.parse_entry) cannot drift: whatever the HTTP
  API accepts for a field the stream accepts, and the other way round.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import jsonschema_rs
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from ticker.core import contract
from ticker.core.contract import (
    OP_REQUESTS,
    CorrectRequest,
    ExtendRequest,
    PublishRequest,
    decode,
    stream_fields,
)
from ticker.core.errors import ValidationError
from ticker.core.items import (
    MAX_EXPIRES,
    MAX_IDEM,
    MAX_LINK,
    MAX_REASON,
    MAX_SOURCE,
    MAX_TAGS,
    MAX_TEXT,
    MAX_TTL,
    OPS,
    URGENCIES,
    parse_entry,
)
from ticker.transport import api, reach
from ticker.transport.openapi import OPERATIONS, REF, spec

DOCS = Path(__file__).resolve().parent.parent / "docs"
ITEM = "1732662000000-0"


def document() -> dict[str, Any]:
    return spec(("en", "ar"))


def schema_of(shape: type[msgspec.Struct]) -> dict[str, Any]:
    """What msgspec makes of one Struct, as a component of the document."""
    _, components = msgspec.json.schema_components([shape], ref_template=REF)
    schema: dict[str, Any] = components[shape.__name__]
    return schema


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(method.upper(), path): operation for path, item in doc["paths"].items()
            for method, operation in item.items()}


def ref_name(content: dict[str, Any]) -> str:
    ref: str = content["application/json"]["schema"]["$ref"]
    assert ref.startswith("#/components/schemas/")
    return ref.rsplit("/", 1)[1]


# -- the document ------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(doc).validate()  # the OpenAPI 3.1 meta-schema
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name  # each is valid JSON Schema
    # It can fail: a broken document is refused.
    broken = document()
    broken["paths"]["/api/channels"]["get"]["responses"] = "none"
    with pytest.raises(jsonschema_rs.ValidationError):
        schemathesis.openapi.from_dict(broken).validate()


def test_every_route_of_the_api_is_documented_and_nothing_else() -> None:
    documented = set(operations(document()))
    served: set[tuple[str, str]] = set()
    for route in (*api.routes, *reach.routes):
        assert isinstance(route, Route)
        ops = OP_REQUESTS if "{op}" in route.path else {"": None}
        for method in route.methods or ():
            if method == "HEAD":  # starlette adds HEAD to GET; it is not an operation
                continue
            served |= {(method, route.path.replace("{op}", op)) for op in ops}
    assert served == documented
    assert len(documented) == 14  # tests/e2e/test_fuzz_http.py expects as many


def test_each_request_schema_is_exactly_its_structs() -> None:
    doc = document()
    components = doc["components"]["schemas"]
    ops = operations(doc)
    expected: dict[tuple[str, str], type[msgspec.Struct]] = {
        ("POST", "/api/channels/{channel}/items"): PublishRequest,
        **{("POST", f"/api/channels/{{channel}}/items/{{item}}/{op}"): shape
           for op, shape in OP_REQUESTS.items()}}
    for key, operation in ops.items():
        shape = expected.get(key)
        if shape is None:
            assert "requestBody" not in operation, key
            continue
        name = ref_name(operation["requestBody"]["content"])
        assert name == shape.__name__, key
        assert components[name] == schema_of(shape), key
        assert components[name]["additionalProperties"] is False  # unknown fields: 422
    assert set(expected) <= set(ops)


def test_each_response_schema_is_exactly_its_structs() -> None:
    doc = document()
    components = doc["components"]["schemas"]
    ops = operations(doc)
    for row in OPERATIONS:
        operation = ops[(row.method.upper(), row.path)]
        assert operation["operationId"] == row.operation_id
        for status, (shape, _) in row.answers.items():
            name = ref_name(operation["responses"][str(status)]["content"])
            assert components[name] == schema_of(shape)
        for status in (*row.errors, 429):
            assert ref_name(operation["responses"][str(status)]["content"]) == "Error"
    assert components["Error"] == schema_of(contract.Error)


def test_what_integrators_rely_on_is_kept() -> None:
    doc = document()
    ops = operations(doc)
    ids = {operation["operationId"] for operation in ops.values()}
    assert set(OPS) <= ids  # publish and every op on an item, by name
    assert len(ids) == len(ops)
    assert doc["components"]["securitySchemes"] == {"bearer": {"type": "http",
                                                               "scheme": "bearer"}}
    for (method, path), operation in ops.items():
        assert operation["summary"]
        # Writes and reach figures need a token; what readers may read does not.
        assert ("security" in operation) == (method == "POST" or path.endswith("/reach")), path
        for parameter in operation.get("parameters", []):
            assert ("{" + parameter["name"] + "}" in path) == (parameter["in"] == "path")
        if "{channel}" in path:
            channel = next(p for p in operation["parameters"] if p["name"] == "channel")
            assert channel["schema"]["enum"] == ["en", "ar"]
    publish = ops[("POST", "/api/channels/{channel}/items")]
    assert set(publish["responses"]["201"]["links"]) == set(OP_REQUESTS)
    assert set(publish["responses"]) == {"200", "201", "400", "401", "404", "409", "413",
                                         "415", "422", "429", "503", "507"}
    # Every field of every request says what it is for.
    shapes: list[type[msgspec.Struct]] = [PublishRequest, *OP_REQUESTS.values()]
    for shape in shapes:
        for name, field in schema_of(shape)["properties"].items():
            assert field.get("description"), (shape.__name__, name)


def test_the_documented_fields_of_each_op_are_the_structs() -> None:
    """docs/publishing.md's field table says which ops take which field; so do the Structs."""
    table = (DOCS / "publishing.md").read_text().split("## Fields", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, re.M))
    shapes: dict[str, type[msgspec.Struct]] = {"publish": PublishRequest, **OP_REQUESTS}
    checked = 0
    for field, where in rows.items():
        if where.strip().startswith("all"):
            continue  # op, item (the path) and by (the token) are not body fields
        ops = {op.strip() for op in where.split(",")}
        assert ops == {op for op, shape in shapes.items() if field in shape.__struct_fields__}
        checked += 1
    assert checked == 10


def test_urgency_values_are_the_stream_contracts() -> None:
    accepted, _ = get_args(get_args(contract.Urgency)[0])  # Literal[...] | None
    assert set(get_args(accepted)) == {*URGENCIES, *URGENCIES.values()}
    shown = next(f.type for f in msgspec.structs.fields(contract.Item) if f.name == "urgency")
    assert set(get_args(shown)) == set(URGENCIES)


def test_the_desk_field_sets_are_the_structs() -> None:
    assert set(PublishRequest.__struct_fields__) == contract.PUBLISH_FIELDS
    assert {op: set(s.__struct_fields__) for op, s in OP_REQUESTS.items()} == contract.OP_FIELDS
    assert set(contract.OP_FIELDS) == set(OPS[1:])
    fields = contract.to_fields({"text": " Caf\u0065\u0301 ", "tags": ["A", " b "]},
                                contract.OP_FIELDS["correct"])
    assert fields == {"text": "Caf\u00e9", "tags": "a,b"}


# -- decoding ----------------------------------------------------------------------------------


def invalid(body: dict[str, Any], shape: type[msgspec.Struct] = PublishRequest
            ) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        decode(body, shape)
    assert type(info.value) is ValidationError and info.value.message
    return info.value


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({}, "text", "text is missing"),
        ({"text": None}, "text", "text is missing"),
        ({"colour": "red"}, "text", "text is missing"),  # the missing text comes first
        ({"text": "ok", "colour": "red"}, "colour", "unknown field 'colour'"),
        ({"text": "ok", "by": "impostor"}, "by", "unknown field 'by'"),
        ({"text": 42}, "text", "text: expected `str`, got `int`"),
        ({"text": "   "}, "text", "text: expected `str` of length >= 1"),
        ({"text": "x" * (MAX_TEXT + 1)}, "text", f"length <= {MAX_TEXT}"),
        ({"text": "ok", "source": "s" * (MAX_SOURCE + 1)}, "source", f"<= {MAX_SOURCE}"),
        ({"text": "ok", "urgency": "apocalyptic"}, "urgency", "flash, urgent or breaking"),
        ({"text": "ok", "urgency": True}, "urgency", "got `bool`"),
        ({"text": "ok", "urgency": " flash"}, "urgency", "urgency: expected flash, urgent"),
        ({"text": "ok", "link": "javascript:alert(1)"}, "link", "an https:// URL"),
        ({"text": "ok", "link": "https://" + "a" * MAX_LINK}, "link", f"<= {MAX_LINK}"),
        ({"text": "ok", "tags": ["fine", "NOT OK!"]}, "tags", "tags[1]: expected up to 10"),
        ({"text": "ok", "tags": [1]}, "tags", "tags[0]: expected `str`, got `int`"),
        ({"text": "ok", "tags": ["a"] * (MAX_TAGS + 1)}, "tags", f"length <= {MAX_TAGS}"),
        ({"text": "ok", "tags": "a,B"}, "tags", "expected up to 10 tags"),
        ({"text": "ok", "tags": {"a": 1}}, "tags", "got `object`"),
        ({"text": "ok", "ttl": -5}, "ttl", "ttl: expected `int` >= 1"),
        ({"text": "ok", "ttl": MAX_TTL + 1}, "ttl", f"<= {MAX_TTL}"),
        ({"text": "ok", "ttl": "60"}, "ttl", "got `str`"),
        ({"text": "ok", "ttl": 1.5}, "ttl", "got `float`"),
        ({"text": "ok", "expires": 0}, "expires", ">= 1"),
        ({"text": "ok", "expires": MAX_EXPIRES + 1}, "expires", f"<= {MAX_EXPIRES}"),
        ({"text": "ok", "expires": True}, "expires", "got `bool`"),
        ({"text": "ok", "idem": "k" * (MAX_IDEM + 1)}, "idem", f"<= {MAX_IDEM}"),
    ],
)
def test_bad_bodies_name_the_field(body: dict[str, Any], field: str, says: str) -> None:
    err = invalid(body)
    assert err.field == field
    assert says in err.message, err.message


def test_bad_op_bodies_name_the_field() -> None:
    assert invalid({}, CorrectRequest).field == "text"
    assert invalid({"text": "ok", "ttl": 60}, CorrectRequest).field == "ttl"
    assert invalid({"reason": "r" * (MAX_REASON + 1)}, OP_REQUESTS["kill"]).field == "reason"
    assert invalid({"reason": "why"}, OP_REQUESTS["pin"]).field == "reason"
    assert invalid({"ttl": 0}, ExtendRequest).field == "ttl"


def test_limits_count_what_is_kept() -> None:
    # NFC first, then trimmed, then measured: as the stream contract measures.
    for text in ("e\u0301" * MAX_TEXT, "  " + "x" * MAX_TEXT + " \t", "\u00e9" * MAX_TEXT):
        assert decode({"text": text}, PublishRequest).text in ("\u00e9" * MAX_TEXT,
                                                               "x" * MAX_TEXT)
    body = decode({"text": "ok", "source": " " + "s" * MAX_SOURCE + " ",
                   "link": "  https://example.com/a  ", "tags": [" Gaza ", "LEBANON"]},
                  PublishRequest)
    assert body.source == "s" * MAX_SOURCE
    assert body.link == "https://example.com/a"
    assert body.tags == ["gaza", "lebanon"]


def test_null_and_blank_mean_not_given() -> None:
    body: dict[str, Any] = {"text": "ok", "source": None, "urgency": None, "link": " ",
                            "tags": None, "ttl": None, "expires": "", "idem": "  "}
    fields = stream_fields(decode(body, PublishRequest))
    assert parse_entry(fields) == parse_entry({"text": "ok"})
    # An empty tags list or string on a correction clears the tags (as in the stream).
    cleared: list[Any] = [[], "", "  "]
    for tags in cleared:
        fields = stream_fields(decode({"text": "ok", "tags": tags}, CorrectRequest))
        entry = parse_entry({"op": "correct", "item": ITEM, **fields})
        assert entry.tags == ()


def test_stream_fields_are_the_streams_form() -> None:
    body = decode({"text": "ok", "urgency": 1, "tags": ["a", "b"], "ttl": 60,
                   "expires": 1732669201000}, PublishRequest)
    assert stream_fields(body) == {"text": "ok", "urgency": "1", "tags": "a,b", "ttl": "60",
                                   "expires": "1732669201000"}


# -- the HTTP contract and the stream contract cannot drift ------------------------------------

def entry_for(field: str) -> tuple[type[msgspec.Struct], dict[str, str]]:
    """The request Struct that takes `field`, and the stream fields of that op."""
    if field in PublishRequest.__struct_fields__:
        return PublishRequest, {"op": "publish"}
    return CorrectRequest, {"op": "correct", "item": ITEM}


def http_accepts(field: str, value: object) -> bool:
    """Does a body with `field` = value pass its Struct and then parse_entry?"""
    shape, base = entry_for(field)
    try:
        parse_entry({**base, **stream_fields(decode({"text": "ok", field: value}, shape))})
    except ValidationError as exc:
        assert exc.field == field, (exc.field, exc.message)
        return False
    return True


def stream_accepts(field: str, value: str) -> bool:
    """Does an entry with `field` = value XADDed into Redis pass parse_entry?"""
    _, base = entry_for(field)
    try:
        parse_entry({**base, "text": "ok", field: value})
    except ValidationError as exc:
        assert exc.field in (field, "entry"), (exc.field, exc.message)
        return False
    return True


def near(limit: int) -> st.SearchStrategy[str]:
    """Strings around `limit` characters once NFC and trimmed: padded with blanks, with
    decomposed characters, now and then one that is never allowed; or any short text."""
    good = st.sampled_from(["x", "\u00e9", "e\u0301", "\u0628", "\U0001f600", " ", "\u200f"])
    core = st.integers(max(0, limit - 2), limit + 2).flatmap(
        lambda n: st.lists(good, min_size=n, max_size=n).map("".join))
    spoilt = st.tuples(core, st.sampled_from(["\u202e", "\x07", "\n", "\ue000"]),
                       st.integers(0, limit)).map(lambda c: c[0][:c[2]] + c[1] + c[0][c[2]:])
    pad = st.sampled_from(["", " ", "  \t", "\u3000", "\n"])
    return st.one_of(
        st.tuples(pad, st.one_of(core, core, spoilt), pad).map("".join),
        st.text(max_size=12),
    )


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from([("text", MAX_TEXT), ("source", MAX_SOURCE), ("idem", MAX_IDEM),
                        ("reason", MAX_REASON)])
       .flatmap(lambda fl: st.tuples(st.just(fl[0]), near(fl[1]))))
def test_text_fields_accept_what_the_stream_accepts(case: tuple[str, str]) -> None:
    field, value = case
    if field == "text":
        # `text` is the body's own required field here; publish it alone.
        try:
            parse_entry(stream_fields(decode({"text": value}, PublishRequest)))
            over_http = True
        except ValidationError as exc:
            assert exc.field == "text"
            over_http = False
        assert over_http == stream_accepts("text", value), repr(value)
        return
    assert http_accepts(field, value) == stream_accepts(field, value), repr(value)


LINKISH = st.sampled_from(["a", "/", "?", "#", ".", ":", " ", "\u00a0", "%", "\x00", "["])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.one_of(
    st.tuples(st.sampled_from(["", " ", "https://", "http://", "https://e.com/", "javascript:"]),
              st.lists(LINKISH, max_size=8).map("".join)).map("".join),
    st.integers(MAX_LINK - 22, MAX_LINK - 18).map(lambda n: "https://e.com/" + "a" * n),
))
def test_links_accepted_over_http_are_those_the_stream_accepts(value: str) -> None:
    assert http_accepts("link", value) == stream_accepts("link", value), repr(value)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.sampled_from(["a", "Gaza", " b ", "x" * 32, "x" * 33, "a-b",
                                           "_a", "a b", "", "\u00e9", "A1"]),
                          st.text(max_size=4)),
                max_size=MAX_TAGS + 2))
def test_tag_lists_accepted_over_http_are_those_the_stream_accepts(tags: list[str]) -> None:
    # A list names each tag, so none may be blank or hide a second one behind a comma.
    listed = all(t.strip() and "," not in t for t in tags) and len(tags) <= MAX_TAGS
    try:
        fields = stream_fields(decode({"text": "ok", "tags": tags}, PublishRequest))
        over_http: tuple[str, ...] | None = parse_entry(fields).tags
    except ValidationError as exc:
        assert exc.field == "tags"
        over_http = None
    in_stream = parse_entry({"text": "ok", "tags": ",".join(tags)}).tags if listed and \
        stream_accepts("tags", ",".join(tags)) else None
    assert over_http == in_stream, tags


@pytest.mark.parametrize("ttl", [0, 1, 60, MAX_TTL, MAX_TTL + 1, -1])
def test_ttl_range_is_the_streams(ttl: int) -> None:
    assert http_accepts("ttl", ttl) == stream_accepts("ttl", str(ttl))


@pytest.mark.parametrize("ms", [0, 1, 1732669201000, MAX_EXPIRES, MAX_EXPIRES + 1, -5])
def test_expires_range_is_the_streams(ms: int) -> None:
    assert http_accepts("expires", ms) == stream_accepts("expires", str(ms))
