"""The web assets: where they are (the widget, the demo page, the desk's templates and
styles), and the one Jinja2 environment that renders the pages among them."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path

import jinja2
from starlette.templating import Jinja2Templates


def web_dir() -> Path:
    """The widget and pages: `web/` in a checkout, `ticker/web` in an installed wheel."""
    here = Path(__file__).resolve().parent.parent  # ticker/
    for candidate in (here.parent / "web", here / "web"):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"web assets not found beside {here}")


def utc_text(ms: int) -> str:
    """Epoch ms as the audit table shows it: `2026-11-27 14:03:09` (UTC)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def utc_iso(ms: int) -> str:
    """Epoch ms for `<time datetime>`: `2026-11-27T14:03:09.120Z`."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.cache
def templates() -> Jinja2Templates:
    """The pages in `web/`, autoescaped, with undefined names an error (not an empty string).

    Each template is compiled once per process (no reload check on every page).
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(web_dir()), autoescape=True,
        undefined=jinja2.StrictUndefined, auto_reload=False, keep_trailing_newline=True,
    )
    env.filters["utc_text"] = utc_text
    env.filters["utc_iso"] = utc_iso
    return Jinja2Templates(env=env)
