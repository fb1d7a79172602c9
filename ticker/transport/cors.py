"""Cross-origin reads of the readers' endpoints (CORS), for widgets embedded on other sites.

Readers never send credentials (the widget's EventSource and fetch are credential-free), so
only `Access-Control-Allow-Origin` is needed, never `-Allow-Credentials`, and every request
the widget makes is a CORS "simple" request: no preflight.

Two policies:

- `reader_headers`: the live endpoints (SSE, the polling snapshot) follow the same rule as the
  websocket: our own origin, or one of `TICKER_ALLOWED_ORIGINS`. The allowed origin is
  echoed with `Vary: Origin`, so a cache keeps one copy per origin and never hands one site's
  permission to another.
- `PUBLIC`: feeds are meant for every reader and aggregator: `*`, one cached copy for all.
"""

from __future__ import annotations

from starlette.requests import Request

from ticker.node.runtime import Runtime

PUBLIC: dict[str, str] = {"Access-Control-Allow-Origin": "*"}


def origin_refused(request: Request, runtime: Runtime) -> bool:
    """True when a browser on an origin we do not allow sent this request."""
    return not runtime.origin_allowed(request.headers.get("origin"),
                                      request.headers.get("host"))


def reader_headers(request: Request, runtime: Runtime) -> dict[str, str]:
    """Headers letting an allowed cross-origin page read the response; always `Vary: Origin`.

    Without an `Origin` header (not a browser, or a same-origin GET) nothing is granted, and
    nothing needs to be. A refused origin gets no grant: its browser cannot read the response.
    """
    headers = {"Vary": "Origin"}
    origin = request.headers.get("origin")
    if origin is not None and not origin_refused(request, runtime):
        headers["Access-Control-Allow-Origin"] = origin
    return headers
