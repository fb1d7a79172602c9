"""Logging setup: one line per record on stderr, never a secret in it."""

from __future__ import annotations

import logging
import sys


def configure(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The websockets core logs every handshake at INFO: 10k readers would flood the log.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    # Access lines would log every request (and any token in a query string): off below debug.
    logging.getLogger("uvicorn.access").setLevel(
        logging.INFO if level == "debug" else logging.WARNING)
