"""The desk's pages: sign-in and sign-out, the desk itself, and the audit trail.

Pages are templates in `web/` rendered with every value escaped (`ticker.templates`); all
behaviour is in `web/desk.js` (no inline script: CSP `script-src 'self'`). Forms carry a CSRF
token: the session's, or before sign-in the nonce of the signed `ticker_login` cookie.
A request that prefers JSON (`Accept: application/json`) gets the API's JSON errors instead
of a page. `routes` is this module's and `ticker.deskapi`'s and `ticker.admin`'s routes.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ticker import admin, deskapi
from ticker.api import runtime_of
from ticker.audit import AuditEntry
from ticker.auth import LoginRefused, Principal
from ticker.errors import ValidationError
from ticker.forms import FORM_TYPE, read_form
from ticker.httpio import HTTPError, error_response
from ticker.items import DEFAULT_TTL, MAX_TEXT
from ticker.sessions import LOGIN_COOKIE, nonces_match
from ticker.templates import Markup, join, page, tag, void

FORM_LIMIT: Final = 8 * 1024
NEXT: Final = re.compile(r"^/desk(?:/[A-Za-z0-9/_.-]*)?$")
EXPIRY_CHOICES: Final = ((900, "15 minutes"), (1800, "30 minutes"), (3600, "1 hour"),
                         (7200, "2 hours"), (10800, "3 hours"), (21600, "6 hours"),
                         (43200, "12 hours"), (86400, "24 hours"))


def template(name: str) -> Path:
    from ticker.app import web_dir  # the app module imports this one: resolve late
    return web_dir() / name


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def check_next(value: str | None) -> str:
    """Where to go after signing in: a desk path, nothing else (no open redirect)."""
    if not value:
        return "/desk"
    if not NEXT.match(value) or "//" in value or ".." in value:
        raise ValidationError("next must be a /desk path", field="next")
    return value


def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


# -- sign-in -------------------------------------------------------------------------------

def login_page(*, nonce: str, next_path: str, username: str = "", error: str = "",
               field: str | None = None, status: int = 200) -> Response:
    path = template("login.html")
    field_errors = {"username": "", "password": ""}
    if field in field_errors:
        field_errors[field] = error
        error = ""
    return page(path, {
        "csrf": nonce, "next": next_path, "username": username,
        "form_error": error, "form_error_hidden": Markup("" if error else " hidden"),
        "username_error": field_errors["username"],
        "username_error_hidden": Markup("" if field_errors["username"] else " hidden"),
        "username_invalid": "true" if field_errors["username"] else "false",
        "password_error": field_errors["password"],
        "password_error_hidden": Markup("" if field_errors["password"] else " hidden"),
        "password_invalid": "true" if field_errors["password"] else "false",
    }, status=status)


async def login_form(request: Request) -> Response:
    auth = runtime_of(request).newsroom.auth
    unknown = set(request.query_params.keys()) - {"next"}
    if unknown:
        name = sorted(unknown)[0][:40]
        raise ValidationError(f"unknown parameter {name!r}", field=name)
    next_path = check_next(request.query_params.get("next"))
    if await auth.current(request) is not None:
        return RedirectResponse(next_path, status_code=303)
    nonce = secrets.token_urlsafe(24)
    response = login_page(nonce=nonce, next_path=next_path)
    await auth.set_login_cookie(response, request, nonce)
    return response


async def login(request: Request) -> Response:
    auth = runtime_of(request).newsroom.auth
    as_json = wants_json(request)
    form = await read_form(request, FORM_LIMIT, {"username", "password", "csrf", "next"})
    next_path = check_next(form.get("next"))
    username = form.get("username", "").strip()[:64]

    async def refuse(status: int, code: str, message: str, field: str | None = None,
                     headers: dict[str, str] | None = None) -> Response:
        if as_json:
            return error_response(HTTPError(status, code, message, field=field,
                                            headers=headers))
        nonce = secrets.token_urlsafe(24)
        response = login_page(nonce=nonce, next_path=next_path, username=username,
                              error=message, field=field, status=status)
        response.headers.update(headers or {})
        await auth.set_login_cookie(response, request, nonce)
        return response

    if not nonces_match(await auth.login_nonce(request), form.get("csrf")):
        return await refuse(403, "csrf", "This sign-in form expired or came from another "
                            "site. Please try again.", "csrf")
    if not username:
        return await refuse(422, "invalid", "Enter your user name.", "username")
    if not form.get("password"):
        return await refuse(422, "invalid", "Enter your password.", "password")
    try:
        principal = await auth.sign_in(request, username, form["password"])
    except LoginRefused as exc:
        return await refuse(exc.status, exc.code, exc.message, None, exc.headers)
    if as_json:
        response: Response = JSONResponse({"user": principal.name, "role":
                                           principal.user.role, "csrf": principal.session.csrf})
    else:
        response = RedirectResponse(next_path, status_code=303)
    await auth.set_session_cookie(response, request, principal.session)
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return no_store(response)


async def logout(request: Request) -> Response:
    auth = runtime_of(request).newsroom.auth
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    token = None
    if ctype == FORM_TYPE:
        token = (await read_form(request, FORM_LIMIT, {"csrf"})).get("csrf")
    principal = await auth.current(request)
    if principal is not None:
        # Checked like any write: a cross-site page must not sign editors out.
        await auth.require(request, "contributor", csrf=True, form_token=token)
        await auth.sign_out(principal, request)
    response: Response = (JSONResponse({"signed_out": True}) if wants_json(request)
                          else RedirectResponse("/login", status_code=303))
    auth.clear_session_cookie(response, request)
    return no_store(response)


# -- the desk ------------------------------------------------------------------------------

async def signed_in(request: Request, role: str) -> Principal | Response:
    """The principal, a redirect to sign in, or a 403 page for a lower role."""
    auth = runtime_of(request).newsroom.auth
    principal = await auth.current(request)
    if principal is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    if not principal.user.can(role):
        return message_page(403, "Not for your role",
                            f"This page needs the {role} role; you are {principal.user.role}.")
    return principal


def message_page(status: int, title: str, text: str) -> Response:
    path = template("message.html")
    return page(path, {"title": title, "text": text}, status=status)


def channel_choices(request: Request) -> Markup:
    channels = runtime_of(request).settings.channels
    boxes = []
    for n, ch in enumerate(channels):
        box = void("input", type="checkbox", name="channels", value=ch.name, id=f"ch-{ch.name}",
                   checked=n == 0, data_dir=ch.dir, data_lang=ch.lang, data_title=ch.title)
        boxes.append(tag("label", box, f" {ch.name} ", tag("span", f"({ch.title})",
                                                            class_="muted", lang=ch.lang),
                         class_="check", for_=f"ch-{ch.name}"))
    return join(boxes)


def expiry_choices() -> Markup:
    defaults = ", ".join(f"{u} {s // 3600} h" for u, s in DEFAULT_TTL.items())
    options = [tag("option", f"Default by urgency ({defaults})", value="")]
    options += [tag("option", label, value=str(seconds)) for seconds, label in EXPIRY_CHOICES]
    return join(options)


async def desk_page(request: Request) -> Response:
    found = await signed_in(request, "contributor")
    if not isinstance(found, Principal):
        return found
    path = template("desk.html")
    user = found.user
    return page(path, {
        "csrf": found.session.csrf, "user": user.name, "role": user.role,
        "max_text": str(MAX_TEXT), "channel_choices": channel_choices(request),
        "expiry_choices": expiry_choices(),
        "submit_label": "Publish" if user.can("editor") else "Send for approval",
        "audit_link": tag("a", "Audit trail", href="/desk/audit") if user.can("editor")
        else Markup(""),
        "ttl_defaults": ",".join(f"{u}:{s}" for u, s in DEFAULT_TTL.items()),
    })


# -- the audit trail -----------------------------------------------------------------------

def when(ms: int) -> Markup:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return tag("time", moment.strftime("%Y-%m-%d %H:%M:%S"),
               datetime=moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


def audit_row(entry: AuditEntry) -> Markup:
    return tag(
        "tr",
        tag("td", when(entry.at), class_="when"),
        tag("td", entry.user, class_="who"),
        tag("td", entry.action, class_="what"),
        tag("td", entry.channel, class_="channel"),
        tag("td", entry.item, class_="item"),
        tag("td", tag("bdi", entry.before), class_="before"),
        tag("td", tag("bdi", entry.after), class_="after"),
        tag("td", tag("bdi", entry.reason), class_="reason"),
        tag("td", entry.detail, class_="detail"),
        data_action=entry.action, data_user=entry.user,
    )


async def audit_page(request: Request) -> Response:
    found = await signed_in(request, "editor")
    if not isinstance(found, Principal):
        return found
    runtime = runtime_of(request)
    path = template("audit.html")
    params = request.query_params
    errors = {"user": "", "channel": "", "limit": "", "before": ""}
    status = 200
    try:
        query = deskapi.audit_query(request, runtime)
        result = await runtime.newsroom.audit.query(**query)
        entries, older = result.entries, result.older
    except ValidationError as exc:
        if wants_json(request):
            return error_response(exc)
        errors[exc.field if exc.field in errors else "user"] = exc.message
        query = {"user": None, "channel": None, "limit": 100}
        entries, older, status = [], None, 422
    channels = [tag("option", "all channels", value="")] + [
        tag("option", ch.name, value=ch.name, selected=params.get("channel") == ch.name)
        for ch in runtime.settings.channels]
    older_link = Markup("")
    if older:
        link = f"/desk/audit?before={older}&limit={query['limit']}"
        for name in ("user", "channel"):
            if query.get(name):
                link += f"&{name}={query[name]}"
        older_link = tag("a", "Older entries", href=link, class_="older")
    rows = join(audit_row(e) for e in entries) if entries else tag(
        "tr", tag("td", "No entries.", colspan="9", class_="empty"))
    values: dict[str, str | Markup] = {
        "csrf": found.session.csrf, "me": found.name, "user_value": params.get("user", ""),
        "channel_options": join(channels), "rows": rows, "older_link": older_link,
        "limit": str(query["limit"]),
    }
    for name, message in errors.items():
        values[f"{name}_error"] = message
        values[f"{name}_error_hidden"] = Markup("" if message else " hidden")
        values[f"{name}_invalid"] = "true" if message else "false"
    return page(path, values, status=status)


async def session_info(request: Request) -> Response:
    """`{user, role, csrf}` for scripts and tests (the desk page carries the same)."""
    principal = await runtime_of(request).newsroom.auth.require(request, "contributor",
                                                                csrf=False)
    return deskapi.json_response({"user": principal.name, "role": principal.user.role,
                                  "csrf": principal.session.csrf})


routes = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/desk", desk_page, methods=["GET"]),
    Route("/desk/audit", audit_page, methods=["GET"]),
    Route("/desk/api/session", session_info, methods=["GET"]),
    *deskapi.routes,
    *admin.routes,
]
