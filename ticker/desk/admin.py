"""Admins' JSON endpoints: desk users and API tokens (session cookie + X-CSRF-Token).

| route | body |
|---|---|
| `GET /desk/api/users` | |
| `POST /desk/api/users` | `{name, role, password}` |
| `POST /desk/api/users/{name}/disable` / `enable` | |
| `POST /desk/api/users/{name}/passwd` | `{password}`: ends the user's sessions |
| `POST /desk/api/users/{name}/role` | `{role}` |
| `GET /desk/api/tokens` | |
| `POST /desk/api/tokens` | `{name}`: the token is in the answer, once |
| `POST /desk/api/tokens/{name}/revoke` | |

Every change is in the audit trail. An admin cannot disable or demote themself (there would
be no one left to undo it); passwords never appear in the audit.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ticker.core.errors import HTTPError, ValidationError
from ticker.desk.api import json_response
from ticker.newsroom.auth import Principal
from ticker.node.runtime import runtime_of
from ticker.transport.http import read_json_object

ACTIONS: Final = ("disable", "enable", "passwd", "role")


async def as_admin(request: Request, *, write: bool) -> Principal:
    return await runtime_of(request).newsroom.auth.require(request, "admin", csrf=write)


def strings(body: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, str]:
    """The body's fields: exactly `allowed`, each a string; 422 naming the field otherwise."""
    for key in body:
        if key not in allowed:
            raise ValidationError(f"unknown field {key[:40]!r}", field=key[:40])
    out: dict[str, str] = {}
    for key in allowed:
        value = body.get(key)
        if value is None:
            raise ValidationError(f"{key} is missing", field=key)
        if not isinstance(value, str):
            raise ValidationError(f"{key} must be a string", field=key)
        out[key] = value
    return out


async def list_users(request: Request) -> Response:
    await as_admin(request, write=False)
    users = await runtime_of(request).newsroom.auth.users.list()
    return json_response({"users": [u.public() for u in users]})


async def add_user(request: Request) -> Response:
    runtime = runtime_of(request)
    who = await as_admin(request, write=True)
    body = strings(await read_json_object(request, runtime.settings.max_body),
                   ("name", "role", "password"))
    user = await runtime.newsroom.auth.users.add(body["name"], body["role"],
                                                 body["password"])
    await runtime.newsroom.audit.add(who.name, "user-add", detail=f"{user.name} as "
                                     f"{user.role}")
    return json_response({"user": user.public()}, 201)


async def change_user(request: Request) -> Response:
    runtime = runtime_of(request)
    who = await as_admin(request, write=True)
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise HTTPError(404, "not_found", f"no action {action[:20]!r}; one of "
                        f"{', '.join(ACTIONS)}", field="action")
    name = request.path_params["name"].lower()
    body = await read_json_object(request, runtime.settings.max_body, optional=True)
    users = runtime.newsroom.auth.users
    if name == who.name and action in ("disable", "role"):
        raise HTTPError(409, "conflict", "you cannot disable or demote yourself; ask "
                        "another admin", field="name")
    try:
        if action == "passwd":
            user = await users.set_password(name, strings(body, ("password",))["password"])
            detail = f"{user.name}: new password; sessions ended"
        elif action == "role":
            user = await users.set_role(name, strings(body, ("role",))["role"])
            detail = f"{user.name} is now {user.role}"
        else:
            strings(body, ())
            user = await users.set_disabled(name, action == "disable")
            detail = f"{user.name}" + ("; sessions ended" if action == "disable" else "")
        await runtime.newsroom.audit.add(who.name, f"user-{action}", detail=detail)
    except ValidationError as exc:
        if exc.field == "name" and exc.message.startswith("no user"):
            raise HTTPError(404, "not_found", exc.message, field="name") from None
        raise
    return json_response({"user": user.public()})


async def list_tokens(request: Request) -> Response:
    await as_admin(request, write=False)
    return json_response({"tokens": await runtime_of(request).tokens.entries()})


async def create_token(request: Request) -> Response:
    runtime = runtime_of(request)
    who = await as_admin(request, write=True)
    body = strings(await read_json_object(request, runtime.settings.max_body), ("name",))
    token = await runtime.tokens.create(body["name"])
    await runtime.newsroom.audit.add(who.name, "token-create", detail=body["name"])
    return json_response({"name": body["name"], "token": token}, 201)


async def revoke_token(request: Request) -> Response:
    runtime = runtime_of(request)
    who = await as_admin(request, write=True)
    name = request.path_params["name"]
    strings(await read_json_object(request, runtime.settings.max_body, optional=True), ())
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
]
