"""Structured logs and request ids: the JSON formatter, the text formatter, and X-Request-ID
end to end on a real server (set, propagated, returned, and on the log lines it caused)."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server
from ticker.ops.logs import JsonFormatter, RequestIdFilter, TextFormatter, configure
from ticker.transport import requestid


def record(msg: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("ticker.test", logging.WARNING, __file__, 1, msg, args or ("x",),
                            None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_lines_carry_the_fields() -> None:
    token = requestid.current.set("req-1")
    try:
        rec = record(channel="en", count=3, obj=object())
        RequestIdFilter().filter(rec)
    finally:
        requestid.current.reset(token)
    line = JsonFormatter({"worker": 1}).format(rec)
    body = json.loads(line)
    assert "\n" not in line
    assert body["msg"] == "hello x" and body["level"] == "warning"
    assert body["logger"] == "ticker.test" and body["request_id"] == "req-1"
    assert body["worker"] == 1 and body["channel"] == "en" and body["count"] == 3
    assert body["obj"].startswith("<object object")  # not JSON-able: its repr
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["ts"])
    assert "args" not in body and "exc" not in body


def test_json_lines_carry_the_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    body = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in body["exc"] and "request_id" not in body


def test_text_lines_name_the_request() -> None:
    rec = record()
    rec.request_id = "abc"
    assert TextFormatter().format(rec).endswith("ticker.test: hello x [request abc]")
    rec.request_id = None
    assert TextFormatter().format(rec).endswith("ticker.test: hello x")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger as `ticker serve` configures it (JSON), written to a buffer."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    configure("info", "json", {"worker": 0})
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


async def test_request_ids_end_to_end(server: Server, token: str,
                                      json_log: io.StringIO) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=server.http) as http:
        # A proxy's id is kept and returned; the write is logged with it.
        r = await http.post("/api/channels/en/items", json={"text": "Logged"},
                            headers={**auth, "X-Request-ID": "edge-42"})
        assert r.status_code == 201 and r.headers["x-request-id"] == "edge-42"
        # No id, or one we will not repeat (too long, odd bytes): a fresh one of ours.
        r = await http.get("/healthz")
        mine = r.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", mine)
        r = await http.get("/healthz", headers={"X-Request-ID": "x" * 200})
        assert r.headers["x-request-id"] != "x" * 200
        r = await http.get("/healthz", headers={"X-Request-ID": "bad id<script>"})
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
        # Errors carry it too (one JSON error shape).
        r = await http.post("/api/channels/en/items", content=b"{", headers={
            **auth, "Content-Type": "application/json", "X-Request-ID": "edge-43"})
        assert r.status_code == 400 and r.headers["x-request-id"] == "edge-43"
    access = [line for line in lines(json_log) if line["logger"] == "ticker.access"]
    by_id = {line.get("request_id"): line for line in access}
    assert by_id["edge-42"]["method"] == "POST" and by_id["edge-42"]["status"] == 201
    assert by_id["edge-42"]["path"] == "/api/channels/en/items"
    assert isinstance(by_id["edge-42"]["duration_ms"], float)
    assert by_id["edge-43"]["status"] == 400
    assert mine not in by_id  # reads are logged at debug only
    assert all(line["worker"] == 0 and "pid" in line for line in access)
    assert token not in json_log.getvalue()  # never a secret in the log
