"""HTML pages from templates in web/, with every value escaped unless it is `Markup`.

Templates are plain HTML files with `{{name}}` placeholders. A `str` value is escaped for
both text and attribute positions (`html.escape(quote=True)`); only `Markup`, which the
builders here make from escaped parts, goes in as it is. Item text is never HTML: a
headline containing `<script>` shows as those characters.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from starlette.responses import HTMLResponse

PLACEHOLDER: Final = re.compile(r"\{\{([a-z_]+)\}\}")
NO_STORE: Final = {"Cache-Control": "no-store"}


class Markup(str):
    """HTML that is already safe: made only by `tag`, `join` and `Markup.of_escaped`."""

    __slots__ = ()


def escape(value: str | Markup) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(value, quote=True))


def tag(name: str, /, *children: str | Markup, **attrs: str | bool | None) -> Markup:
    """`<name attrs>children</name>`; text children and attribute values are escaped.

    Attribute names come from code (`class_` -> `class`, `data_x` -> `data-x`); True
    gives a bare attribute, None/False omits it.
    """
    parts = [name]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        parts.append(attr if value is True else f'{attr}="{escape(str(value))}"')
    inner = "".join(escape(c) for c in children)
    return Markup(f"<{' '.join(parts)}>{inner}</{name}>")


def void(name: str, /, **attrs: str | bool | None) -> Markup:
    """A void element (`input`, `meta`): like `tag` without children or end tag."""
    return Markup(tag(name, **attrs)[: -len(f"</{name}>")])


def join(parts: Iterable[str | Markup], sep: str = "") -> Markup:
    return Markup(escape(sep).join(escape(p) for p in parts))


@functools.lru_cache(maxsize=32)
def _template(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def render(path: Path, values: Mapping[str, str | Markup]) -> str:
    """The template at `path` with each `{{name}}` replaced; a missing name is a bug."""
    def sub(m: re.Match[str]) -> str:
        return escape(values[m.group(1)])
    return PLACEHOLDER.sub(sub, _template(path))


def page(path: Path, values: Mapping[str, str | Markup], status: int = 200,
         headers: Mapping[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(render(path, values), status_code=status,
                        headers={**NO_STORE, **(headers or {})})
