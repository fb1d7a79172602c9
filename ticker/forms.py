"""HTML form bodies (application/x-www-form-urlencoded): bounded, strict, fields named."""

from __future__ import annotations

from collections.abc import Collection
from typing import Final
from urllib.parse import parse_qsl

from starlette.requests import Request

from ticker.errors import ValidationError
from ticker.httpio import HTTPError, read_body

FORM_TYPE: Final = "application/x-www-form-urlencoded"


async def read_form(request: Request, limit: int, allowed: Collection[str]) -> dict[str, str]:
    """The form's fields (each at most once, only `allowed` ones), from at most `limit`
    bytes; 413 / 415 / 400 / 422 naming the field otherwise."""
    body = await read_body(request, limit)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != FORM_TYPE:
        raise HTTPError(415, "unsupported_media_type", f"send Content-Type: {FORM_TYPE}")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          max_num_fields=len(allowed) + 1, errors="strict")
    except UnicodeDecodeError:
        raise HTTPError(400, "bad_request", "form is not valid UTF-8") from None
    except ValueError:
        raise HTTPError(400, "bad_request", "too many form fields") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise ValidationError(f"unknown field {name[:40]!r}", field=name[:40])
        if name in form:
            raise ValidationError(f"{name} is given twice", field=name)
        form[name] = value
    return form
