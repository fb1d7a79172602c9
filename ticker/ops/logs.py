"""Logging setup: one line per record on stderr, never a secret in it.

`TICKER_LOG_FORMAT=text` (default) is for people; `json` is for log pipelines: one JSON
object per line with `ts`, `level`, `logger`, `msg`, the `request_id` of the HTTP request
that caused it (`ticker.transport.requestid`), the process's static fields (`pid`, and
`worker` under `--workers N`), any `extra=` fields, and `exc` with the traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

from ticker.transport import requestid

# Attributes every LogRecord has: anything else on a record came from `extra=`.
STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "request_id", "color_message", "taskName"}


class RequestIdFilter(logging.Filter):
    """Puts the current request id (or None) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = requestid.current.get()
        return True


class TextFormatter(logging.Formatter):
    """`2026-11-26T23:24:35 INFO ticker.transport.api: message [request abc123]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [request {rid}]" if rid else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def __init__(self, static: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        body: dict[str, object] = {
            "ts": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            body["request_id"] = rid
        body.update(self.static)
        for key, value in vars(record).items():
            if key not in STANDARD and key not in body:
                body[key] = value if isinstance(value, str | int | float | bool | None) \
                    else repr(value)
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, ensure_ascii=False)


def configure(level: str, fmt: str = "text", static: Mapping[str, object] | None = None
              ) -> None:
    """Root logging to stderr: `fmt` is text or json; `static` fields go on every JSON line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter({"pid": os.getpid(), **(static or {})})
                         if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The websockets core logs every handshake at INFO: 10k readers would flood the log.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    # Access lines would log every request (and any token in a query string): off below debug.
    logging.getLogger("uvicorn.access").setLevel(
        logging.INFO if level == "debug" else logging.WARNING)
