"""The small error hierarchy. Every error carries what an HTTP edge needs to answer."""

from __future__ import annotations


class TickerError(Exception):
    """Base class: `status` is the HTTP status, `field` names the offending input if any."""

    status = 500
    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class ValidationError(TickerError):
    """Input (HTTP body, form field, stream entry) that breaks the contract."""

    status = 422
    code = "invalid"


class ConfigError(TickerError):
    """A setting that cannot be used; `field` is the environment variable or flag."""

    code = "config"


class Unavailable(TickerError):
    """Redis cannot be reached: nothing was written, the caller may retry."""

    status = 503
    code = "unavailable"


class HTTPError(TickerError):
    """An error with an explicit status (401, 403, 404, 409, 413, 415...)."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, field=field)
        self.status = status
        self.code = code
        self.headers = headers or {}
