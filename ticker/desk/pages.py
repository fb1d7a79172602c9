"""The desk's pages: sign-in and sign-out, the desk itself, the audit trail, and people,
API tokens, webhooks and one's own settings.

Pages are Jinja2 templates in `web/` (`login.html`, `message.html`, `desk.html`,
`audit.html`, `people.html`, `tokens.html`, `webhooks.html`, `settings.html`) rendered by
Starlette's `Jinja2Templates` with autoescape on for every template and undefined names an
error: item text, user names, reasons, URLs and every other value are text, never HTML, and
the markup (channel and expiry choices, audit rows, user and webhook cards) is in the
templates. All behaviour is in `web/desk.js` and, for people, tokens, webhooks and settings,
`web/people.js` (no inline script: CSP `script-src 'self'`). Every page takes every visible
string from `ticker.desk.texts` in the signed-in user's language (the sign-in page: the
browser's Accept-Language), lays itself out right to left for Arabic, and hands its table to
its scripts (`web/i18n.js`). Forms carry a CSRF token: the session's, or before sign-in the
nonce of the signed `ticker_login` cookie; their urlencoded bodies are read by `read_form`
(Starlette's `request.form()`, bounded and strict). A request that prefers JSON (`Accept:
application/json`) gets the API's JSON errors instead of a page. `routes` is this module's
and those of `ticker.desk.api`, `ticker.desk.admin` and `ticker.desk.webhooks`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Collection, Mapping
from typing import Any, Final
from urllib.parse import unquote_to_bytes, urlencode

from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Message

from ticker.core.errors import HTTPError, ValidationError
from ticker.core.items import DEFAULT_TTL, MAX_TEXT, URGENCIES
from ticker.core.webhooks import EVENT_OPS
from ticker.desk import admin, texts, webhooks
from ticker.desk import api as deskapi
from ticker.newsroom.audit import AuditEntry
from ticker.newsroom.auth import LoginRefused, Principal
from ticker.newsroom.sessions import LOGIN_COOKIE, nonces_match
from ticker.newsroom.users import LANGS, ROLES
from ticker.node.runtime import runtime_of
from ticker.transport.assets import templates
from ticker.transport.http import error_response, read_body

FORM_LIMIT: Final = 8 * 1024
FORM_TYPE: Final = "application/x-www-form-urlencoded"
NON_ASCII: Final = re.compile(rb"[\x80-\xff]")
NO_STORE: Final = {"Cache-Control": "no-store"}
NEXT: Final = re.compile(r"^/desk(?:/[A-Za-z0-9/_.-]*)?$")
EXPIRY_CHOICES: Final = (900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)  # seconds
EXTEND_CHOICES: Final = (1800, 3600, 7200, 10800, 21600, 43200, 86400)
EXTEND_DEFAULT: Final = 3600


# -- pages and forms ------------------------------------------------------------------------

def page(request: Request, name: str, context: Mapping[str, Any], status: int = 200
         ) -> Response:
    """The template `name` rendered with `context`, never cached by anyone."""
    return templates().TemplateResponse(request, name, dict(context), status_code=status,
                                        headers=NO_STORE)


def language(name: str, lang: str) -> dict[str, Any]:
    """What every page shows its language with: the strings of page `name` in `lang` (`t`),
    `lang` and its direction (`dir`), for `<html lang dir>`."""
    return {"t": texts.strings(name, lang), "lang": lang, "dir": texts.direction(lang)}


async def read_form(request: Request, allowed: Collection[str]) -> dict[str, str]:
    """The urlencoded form's fields, each at most once and only `allowed` ones.

    Refused: a body over FORM_LIMIT bytes (413; a larger Content-Length before reading
    anything, a longer stream as soon as it passes the limit), another Content-Type (415),
    a body that is not UTF-8, raw or once percent-decoded, or has more than one field beyond
    `allowed` (400), an unknown or repeated field (422 naming it). Malformed escapes such as
    `%zz` stay literal text, as in every urlencoded parser (WHATWG, `urllib.parse`).
    """
    body = await read_body(request, FORM_LIMIT)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != FORM_TYPE:
        raise HTTPError(415, "unsupported_media_type", f"send Content-Type: {FORM_TYPE}")
    # Starlette decodes what it parses with errors="replace" (U+FFFD, no error): check first.
    try:
        body.decode("utf-8")
        unquote_to_bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, "bad_request", "form is not valid UTF-8") from None
    # Starlette reads raw (unescaped) bytes as Latin-1; browsers escape every non-ASCII byte,
    # and escaping the rest the same way keeps a raw UTF-8 name UTF-8 for other clients.
    escaped = NON_ASCII.sub(lambda m: b"%%%02X" % m[0][0], body)

    async def receive() -> Message:  # the bounded body, for the parser to read once
        return {"type": "http.request", "body": escaped, "more_body": False}

    try:
        # One field more than allowed still parses, so that it is refused by name below.
        # A part cannot exceed the body, which the cap above already bounds.
        form = await Request(request.scope, receive).form(
            max_fields=len(allowed) + 1, max_part_size=FORM_LIMIT)
    except HTTPException as exc:  # Starlette's 400 inside an app
        raise HTTPError(400, "bad_request", exc.detail) from None
    except MultiPartException as exc:  # the same outside one
        raise HTTPError(400, "bad_request", exc.message) from None
    fields: dict[str, str] = {}
    for name, value in form.multi_items():
        if name not in allowed:
            raise ValidationError(f"unknown field {name[:40]!r}", field=name[:40])
        if name in fields:
            raise ValidationError(f"{name} is given twice", field=name)
        assert isinstance(value, str)  # urlencoded forms have no files
        fields[name] = value
    return fields


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

def login_lang(request: Request) -> str:
    """The sign-in page's language: there is no user yet, so the browser's choice."""
    return texts.accepted_lang(request.headers.get("accept-language"))


def refusal_text(t: Mapping[str, str], refused: LoginRefused, lang: str) -> str:
    """What the sign-in page says of a refused sign-in, in the page's language."""
    if refused.blocked is None:
        return t["wrong"]
    return (t[f"too_many_{refused.blocked.kind}"] + " "
            + texts.count(t, "retry", refused.blocked.minutes, lang))


def login_page(request: Request, *, nonce: str, next_path: str, username: str = "",
               error: str = "", field: str | None = None, status: int = 200) -> Response:
    """The sign-in form; `error` (in the page's language) shows next to `field` (user name,
    password) or above all."""
    errors = {"form": error, "username": "", "password": ""}
    if field in ("username", "password"):
        errors[field], errors["form"] = error, ""
    return page(request, "login.html", {"csrf": nonce, "next": next_path,
                                        "username": username, "errors": errors,
                                        **language("login", login_lang(request))}, status)


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
    response = login_page(request, nonce=nonce, next_path=next_path)
    await auth.set_login_cookie(response, request, nonce)
    return response


async def login(request: Request) -> Response:
    auth = runtime_of(request).newsroom.auth
    as_json = wants_json(request)
    form = await read_form(request, {"username", "password", "csrf", "next"})
    next_path = check_next(form.get("next"))
    username = form.get("username", "").strip()[:64]
    lang = login_lang(request)
    t = texts.strings("login", lang)

    async def refuse(status: int, code: str, shown: str, message: str,
                     field: str | None = None, headers: dict[str, str] | None = None
                     ) -> Response:
        """`shown` on the page (in the browser's language); `message` in a JSON answer
        (English, like every API message)."""
        if as_json:
            return error_response(HTTPError(status, code, message, field=field,
                                            headers=headers))
        nonce = secrets.token_urlsafe(24)
        response = login_page(request, nonce=nonce, next_path=next_path,
                              username=username, error=shown, field=field, status=status)
        response.headers.update(headers or {})
        await auth.set_login_cookie(response, request, nonce)
        return response

    english = texts.LOGIN
    if not nonces_match(await auth.login_nonce(request), form.get("csrf")):
        return await refuse(403, "csrf", t["csrf_expired"], english["csrf_expired"], "csrf")
    if not username:
        return await refuse(422, "invalid", t["enter_username"], english["enter_username"],
                            "username")
    if not form.get("password"):
        return await refuse(422, "invalid", t["enter_password"], english["enter_password"],
                            "password")
    try:
        principal = await auth.sign_in(request, username, form["password"])
    except LoginRefused as exc:
        return await refuse(exc.status, exc.code, refusal_text(t, exc, lang), exc.message,
                            None, exc.headers)
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
        token = (await read_form(request, {"csrf"})).get("csrf")
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
        lang = principal.user.lang
        t = texts.strings("message", lang)
        return message_page(request, 403, lang, t["not_for_role_title"], texts.fill(
            t["not_for_role_text"], role=t[f"role_word_{role}"],
            user_role=t[f"role_word_{principal.user.role}"]))
    return principal


def message_page(request: Request, status: int, lang: str, title: str, text: str) -> Response:
    """One message (`title`, `text`, already in `lang`) for a signed-in user."""
    return page(request, "message.html", {"title": title, "text": text,
                                          **language("message", lang)}, status)


async def desk_page(request: Request) -> Response:
    found = await signed_in(request, "contributor")
    if not isinstance(found, Principal):
        return found
    user, lang = found.user, found.user.lang
    words = language("desk", lang)
    t = words["t"]
    return page(request, "desk.html", {
        "csrf": found.session.csrf, "user": user.name, "role": user.role,
        "can_edit": user.can("editor"), "max_text": MAX_TEXT,
        "channels": runtime_of(request).settings.channels, "ttl_defaults": DEFAULT_TTL,
        # What desk.js would write at once, written by the server in the user's language.
        "count_text": texts.fill(t["count"], n=texts.digits("0", lang),
                                 max=texts.digits(str(MAX_TEXT), lang)),
        "ttl_default": texts.fill(t["ttl_default"], urgency=t["urgency_breaking"],
                                  duration=texts.duration(t, DEFAULT_TTL["breaking"], lang)),
        "expiry_choices": [(s, texts.duration(t, s, lang)) for s in EXPIRY_CHOICES],
        "extend_choices": [(s, texts.duration(t, s, lang, "_from_now"))
                           for s in EXTEND_CHOICES],
        "extend_default": EXTEND_DEFAULT, **words,
    })


# -- the audit trail -----------------------------------------------------------------------

async def audit_page(request: Request) -> Response:
    found = await signed_in(request, "editor")
    if not isinstance(found, Principal):
        return found
    runtime = runtime_of(request)
    params = request.query_params
    errors = {"user": "", "channel": "", "limit": "", "before": ""}
    status = 200
    entries: list[AuditEntry]
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
    older_link = ""
    if older:
        link = {"before": older, "limit": query["limit"]}
        link.update({name: query[name] for name in ("user", "channel") if query.get(name)})
        older_link = "/desk/audit?" + urlencode(link)
    return page(request, "audit.html", {
        "csrf": found.session.csrf, "me": found.name, "user_value": params.get("user", ""),
        "channels": runtime.settings.channels, "selected_channel": params.get("channel"),
        "entries": entries, "older_link": older_link, "limit": query["limit"],
        "errors": errors, "is_admin": found.user.can("admin"),
        **language("audit", found.user.lang),
    }, status)


# -- people, tokens, webhooks, settings ----------------------------------------------------

def manage_page(request: Request, principal: Principal, name: str,
                context: Mapping[str, Any]) -> Response:
    """`web/{name}.html` with what every one of these pages shows: the top bar's user, the
    CSRF token, the editions and languages, and the page's strings (`texts`)."""
    user = principal.user
    return page(request, f"{name}.html", {
        "csrf": principal.session.csrf, "me": user.name, "role": user.role,
        "is_admin": user.can("admin"), "here": name, **language(name, user.lang),
        "langs": LANGS, "channels": runtime_of(request).settings.channels, **context,
    })


async def people_page(request: Request) -> Response:
    found = await signed_in(request, "admin")
    if not isinstance(found, Principal):
        return found
    users = await runtime_of(request).newsroom.auth.users.list()
    return manage_page(request, found, "people", {"users": users, "roles": ROLES})


async def tokens_page(request: Request) -> Response:
    found = await signed_in(request, "admin")
    if not isinstance(found, Principal):
        return found
    tokens = [admin.token_entry(record) for record in await runtime_of(request).tokens.entries()]
    return manage_page(request, found, "tokens", {"tokens": [
        {**t, "created": t["created"] * 1000} for t in tokens]})


async def webhooks_page(request: Request) -> Response:
    found = await signed_in(request, "admin")
    if not isinstance(found, Principal):
        return found
    hooks = await runtime_of(request).newsroom.subscriptions.overview()
    return manage_page(request, found, "webhooks", {
        "webhooks": hooks, "urgencies": URGENCIES, "ops": EVENT_OPS})


async def settings_page(request: Request) -> Response:
    found = await signed_in(request, "contributor")
    if not isinstance(found, Principal):
        return found
    return manage_page(request, found, "settings", {"user": found.user})


async def session_info(request: Request) -> Response:
    """`{user, role, csrf, lang, editions}` for scripts and tests (the desk page carries
    the same)."""
    principal = await runtime_of(request).newsroom.auth.require(request, "contributor",
                                                                csrf=False)
    user = principal.user
    return deskapi.json_response({"user": user.name, "role": user.role,
                                  "csrf": principal.session.csrf, "lang": user.lang,
                                  "editions": list(user.editions)})


routes = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/desk", desk_page, methods=["GET"]),
    Route("/desk/audit", audit_page, methods=["GET"]),
    Route("/desk/people", people_page, methods=["GET"]),
    Route("/desk/tokens", tokens_page, methods=["GET"]),
    Route("/desk/webhooks", webhooks_page, methods=["GET"]),
    Route("/desk/settings", settings_page, methods=["GET"]),
    Route("/desk/api/session", session_info, methods=["GET"]),
    *deskapi.routes,
    *admin.routes,
    *webhooks.routes,
]
