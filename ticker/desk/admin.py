"""Admins' JSON endpoints: desk users and API tokens; and everyone's own preferences.
All take the session cookie, and X-CSRF-Token on a write.

| route | body |
|---|---|
| `GET /desk/api/users` | |
| `POST /desk/api/users` | `{name, role, password, lang?, editions?}` |
| `POST /desk/api/users/{name}/disable` / `enable` | |
| `POST /desk/api/users/{name}/passwd` | `{password}`: ends the user's sessions |
| `POST /desk/api/users/{name}/role` | `{role}` |
| `POST /desk/api/users/{name}/lang` | `{lang}`: en, ar or es |
| `POST /desk/api/users/{name}/editions` | `{editions: [channel, ...]}`: `[]` is all |
| `POST /desk/api/users/{name}/end-sessions` | ends the user's sessions; the password stays |
| `GET /desk/api/tokens` | |
| `POST /desk/api/tokens` | `{name, admin?}`: the token is in the answer, once |
| `POST /desk/api/tokens/{name}/revoke` | |
| `GET /desk/api/me` (any signed-in user) | |
| `POST /desk/api/me` (any signed-in user) | `{lang?, editions?}`: their own preferences |

An admin token (`admin: true`) may also manage webhooks over the HTTP API. Bodies are
decoded strictly (msgspec Structs through `core.contract.decode`: an unknown field, a missing
one or a wrong type is a 422 naming it). Every change is in the audit trail. An admin cannot
disable or demote themself (there would be no one left to undo it); passwords never appear in
the audit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

from msgspec import Struct
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticker.core.contract import EmptyRequest, decode
from ticker.core.errors import HTTPError, ValidationError
from ticker.desk.api import json_response
from ticker.newsroom.auth import Principal
from ticker.newsroom.users import DEFAULT_LANG, User, editions_text
from ticker.node.runtime import Runtime, runtime_of
from ticker.transport.http import read_json_object

S = TypeVar("S", bound=Struct)


class NewUser(Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    role: str
    password: str
    lang: str = DEFAULT_LANG
    editions: list[str] = []


class NewPassword(Struct, forbid_unknown_fields=True, kw_only=True):
    password: str


class NewRole(Struct, forbid_unknown_fields=True, kw_only=True):
    role: str


class NewLang(Struct, forbid_unknown_fields=True, kw_only=True):
    lang: str


class NewEditions(Struct, forbid_unknown_fields=True, kw_only=True):
    editions: list[str]


class Prefs(Struct, forbid_unknown_fields=True, kw_only=True):
    lang: str | None = None
    editions: list[str] | None = None


class NewToken(Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    admin: bool = False


async def as_admin(request: Request, *, write: bool) -> Principal:
    return await runtime_of(request).newsroom.auth.require(request, "admin", csrf=write)


async def body_of(request: Request, shape: type[S], *, optional: bool = False) -> S:
    """The JSON body as `shape`; 4xx naming the field otherwise (empty allowed if optional)."""
    body = await read_json_object(request, runtime_of(request).settings.max_body,
                                  optional=optional)
    return decode(body, shape)


async def list_users(request: Request) -> Response:
    await as_admin(request, write=False)
    users = await runtime_of(request).newsroom.auth.users.list()
    return json_response({"users": [u.public() for u in users]})


async def add_user(request: Request) -> Response:
    runtime = runtime_of(request)
    who = await as_admin(request, write=True)
    body = await body_of(request, NewUser)
    user = await runtime.newsroom.auth.users.add(
        body.name, body.role, body.password, lang=body.lang, editions=body.editions,
        channels=runtime.settings.channel_names)
    await runtime.newsroom.audit.add(who.name, "user-add", detail=user.summary())
    return json_response({"user": user.public()}, 201)


# What each action on a user does: the new user and the audit entry's detail.
Change = Callable[[Request, Runtime, str], Awaitable[tuple[User, str]]]


async def change_password(request: Request, runtime: Runtime, name: str) -> tuple[User, str]:
    body = await body_of(request, NewPassword)
    user = await runtime.newsroom.auth.users.set_password(name, body.password)
    return user, f"{user.name}: new password; sessions ended"


async def change_role(request: Request, runtime: Runtime, name: str) -> tuple[User, str]:
    body = await body_of(request, NewRole)
    user = await runtime.newsroom.auth.users.set_role(name, body.role)
    return user, f"{user.name} is now {user.role}"


async def change_lang(request: Request, runtime: Runtime, name: str) -> tuple[User, str]:
    body = await body_of(request, NewLang)
    user = await runtime.newsroom.auth.users.set_prefs(
        name, lang=body.lang, channels=runtime.settings.channel_names)
    return user, f"{user.name}: language {user.lang}"


async def change_editions(request: Request, runtime: Runtime, name: str) -> tuple[User, str]:
    body = await body_of(request, NewEditions)
    user = await runtime.newsroom.auth.users.set_prefs(
        name, editions=body.editions, channels=runtime.settings.channel_names)
    return user, f"{user.name}: default editions {editions_text(user.editions)}"


async def end_sessions(request: Request, runtime: Runtime, name: str) -> tuple[User, str]:
    await body_of(request, EmptyRequest, optional=True)
    user = await runtime.newsroom.auth.users.sign_out_everywhere(name)
    return user, f"{user.name}: sessions ended"


async def disable(request: Request, runtime: Runtime, name: str) -> tuple[User, str]:
    await body_of(request, EmptyRequest, optional=True)
    user = await runtime.newsroom.auth.users.set_disabled(name, True)
    return user, f"{user.name}; sessions ended"


async def enable(request: Request, runtime: Runtime, name: str) -> tuple[User, str]:
    await body_of(request, EmptyRequest, optional=True)
    user = await runtime.newsroom.auth.users.set_disabled(name, False)
    return user, user.name


CHANGES: Final[dict[str, Change]] = {
    "disable": disable, "enable": enable, "passwd": change_password, "role": change_role,
    "lang": change_lang, "editions": change_editions, "end-sessions": end_sessions,
}
ACTIONS: Final = tuple(CHANGES)
NOT_ON_ONESELF: Final = ("disable", "role")


async def change_user(request: Request) -> Response:
    runtime = runtime_of(request)
    who = await as_admin(request, write=True)
    action = request.path_params["action"]
    if action not in CHANGES:
        raise HTTPError(404, "not_found", f"no action {action[:20]!r}; one of "
                        f"{', '.join(ACTIONS)}", field="action")
    name = request.path_params["name"].lower()
    if name == who.name and action in NOT_ON_ONESELF:
        raise HTTPError(409, "conflict", "you cannot disable or demote yourself; ask "
                        "another admin", field="name")
    try:
        user, detail = await CHANGES[action](request, runtime, name)
    except ValidationError as exc:
        if exc.field == "name" and exc.message.startswith("no user"):
            raise HTTPError(404, "not_found", exc.message, field="name") from None
        raise
    await runtime.newsroom.audit.add(who.name, f"user-{action}", detail=detail)
    return json_response({"user": user.public()})


# -- one's own preferences -----------------------------------------------------------------

async def me(request: Request) -> Response:
    runtime = runtime_of(request)
    who = await runtime.newsroom.auth.require(request, "contributor", csrf=False)
    return json_response({"user": who.user.public(),
                          "channels": list(runtime.settings.channel_names)})


async def set_my_prefs(request: Request) -> Response:
    runtime = runtime_of(request)
    who = await runtime.newsroom.auth.require(request, "contributor", csrf=True)
    body = await body_of(request, Prefs)
    if body.lang is None and body.editions is None:
        raise ValidationError("send lang, editions or both", field="body")
    user = await runtime.newsroom.auth.users.set_prefs(
        who.name, lang=body.lang, editions=body.editions,
        channels=runtime.settings.channel_names)
    changed = ([f"language {user.lang}"] if body.lang is not None else []) + (
        [f"default editions {editions_text(user.editions)}"] if body.editions is not None
        else [])
    await runtime.newsroom.audit.add(who.name, "prefs", detail="; ".join(changed))
    return json_response({"user": user.public(),
                          "channels": list(runtime.settings.channel_names)})


def token_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored token record as the desk lists it: `{name, created, admin}`."""
    return {"name": str(record["name"]), "created": int(record.get("created", 0)),
            "admin": record.get("admin") is True}


async def list_tokens(request: Request) -> Response:
    await as_admin(request, write=False)
    entries = await runtime_of(request).tokens.entries()
    return json_response({"tokens": [token_entry(record) for record in entries]})


async def create_token(request: Request) -> Response:
    runtime = runtime_of(request)
    who = await as_admin(request, write=True)
    body = await body_of(request, NewToken)
    token = await runtime.tokens.create(body.name, admin=body.admin)
    detail = f"{body.name} (admin token: may manage webhooks)" if body.admin else body.name
    await runtime.newsroom.audit.add(who.name, "token-create", detail=detail)
    return json_response({"name": body.name, "token": token, "admin": body.admin}, 201)


async def revoke_token(request: Request) -> Response:
    runtime = runtime_of(request)
    who = await as_admin(request, write=True)
    name = request.path_params["name"]
    await body_of(request, EmptyRequest, optional=True)
    if not await runtime.tokens.revoke(name):
        raise HTTPError(404, "not_found", f"no token named {name[:64]!r}", field="name")
    await runtime.newsroom.audit.add(who.name, "token-revoke", detail=name[:64])
    return json_response({"name": name, "revoked": True})


routes = [
    Route("/desk/api/users", list_users, methods=["GET"]),
    Route("/desk/api/users", add_user, methods=["POST"]),
    Route("/desk/api/users/{name}/{action}", change_user, methods=["POST"]),
    Route("/desk/api/tokens", list_tokens, methods=["GET"]),
    Route("/desk/api/tokens", create_token, methods=["POST"]),
    Route("/desk/api/tokens/{name}/revoke", revoke_token, methods=["POST"]),
    Route("/desk/api/me", me, methods=["GET"]),
    Route("/desk/api/me", set_my_prefs, methods=["POST"]),
]
