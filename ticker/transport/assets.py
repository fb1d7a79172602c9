"""Where the web assets are: the widget, the demo page, the desk's templates and styles."""

from __future__ import annotations

from pathlib import Path


def web_dir() -> Path:
    """The widget and pages: `web/` in a checkout, `ticker/web` in an installed wheel."""
    here = Path(__file__).resolve().parent.parent  # ticker/
    for candidate in (here.parent / "web", here / "web"):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"web assets not found beside {here}")
