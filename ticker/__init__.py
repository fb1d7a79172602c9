"""ticker: a live breaking-news ticker server (Redis streams in, websockets out)."""

from __future__ import annotations

__version__ = "0.1.0"
