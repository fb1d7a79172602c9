"""Who is asking, and may they: sign-in, sign-out, the current user, role and CSRF checks.

`Auth` is built by the Runtime (one per process) and reached by handlers through
`request.state.ticker.auth`. Every state-changing desk request goes through `require`,
which answers 401 without a valid session, 403 for a wrong or missing CSRF token or a
cross-site request, and 403 for a role below the one the route needs.

Sign-in (`sign_in`) checks the rate limits first (cheap, no password work), then the
password (argon2id, in a thread; unknown names verify against a dummy hash so they cost the
same), and answers every failure with the same message.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response

from ticker.core.errors import HTTPError
from ticker.newsroom.audit import Audit
from ticker.newsroom.sessions import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    CookieCodec,
    Session,
    Sessions,
    load_secret,
)
from ticker.newsroom.signin_limits import Blocked, LoginLimits
from ticker.newsroom.users import RANK, User, Users
from ticker.process.settings import Settings
from ticker.redis.keys import Keys

log = logging.getLogger("ticker.newsroom.auth")

CSRF_HEADER: Final = "x-csrf-token"
WRONG: Final = "Wrong user name or password."


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in user and the session they are using."""

    user: User
    session: Session

    @property
    def name(self) -> str:
        return self.user.name


class LoginRefused(HTTPError):
    """A refused sign-in: 401 (wrong credentials) or 429 (rate limited: `blocked` says by
    which limit and for how long, for a page that words it in its own language)."""

    def __init__(self, status: int, code: str, message: str, *,
                 headers: dict[str, str] | None = None, blocked: Blocked | None = None) -> None:
        super().__init__(status, code, message, headers=headers)
        self.blocked = blocked


def client_address(request: Request) -> str:
    # uvicorn already replaced the peer with X-Forwarded-For's client when the peer is one
    # of TICKER_TRUSTED_PROXIES (server.uvicorn_config), and only then.
    return request.client.host if request.client else "unknown"


def is_https(request: Request) -> bool:
    # Likewise the scheme: https directly, or X-Forwarded-Proto from a trusted proxy.
    return request.url.scheme == "https"


class Auth:
    """Users, sessions, sign-in limits and the cookie key of one process."""

    def __init__(self, settings: Settings, redis: Redis, keys: Keys, audit: Audit) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = keys
        self.users = Users(redis, keys)
        self.sessions = Sessions(redis, keys, settings.session_ttl)
        self.limits = LoginLimits(redis, keys, per_account=settings.login_limit_account,
                                  per_ip=settings.login_limit_ip, window=settings.login_window)
        self.audit = audit
        self._codec: CookieCodec | None = None
        self._codec_lock = asyncio.Lock()

    async def codec(self) -> CookieCodec:
        """The cookie signer; the key is read (or made) in Redis on first use."""
        if self._codec is None:
            async with self._codec_lock:
                if self._codec is None:
                    secret = await load_secret(self.redis, self.keys, self.settings.secret_key)
                    self._codec = CookieCodec(secret, self.settings.session_ttl)
        return self._codec

    # -- who is asking ---------------------------------------------------------------------

    async def current(self, request: Request) -> Principal | None:
        """The signed-in user, or None: no cookie, a bad signature, an ended session, a
        changed session version (password changed, user disabled) or a disabled user."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            return None
        sid = (await self.codec()).session_id(cookie)
        if sid is None:
            return None
        session = await self.sessions.get(sid)
        if session is None:
            return None
        user = await self.users.get(session.user)
        if user is None or user.disabled or user.sv != session.sv:
            return None
        return Principal(user, session)

    async def require(self, request: Request, role: str, *, csrf: bool,
                      form_token: str | None = None) -> Principal:
        """The principal if signed in with at least `role`; for `csrf`, also a matching
        token (header X-CSRF-Token, or `form_token` from a form) from our own site."""
        principal = await self.current(request)
        if principal is None:
            raise HTTPError(401, "unauthorized", "sign in first: /login",
                            headers={"WWW-Authenticate": 'Cookie realm="ticker desk"'})
        if csrf:
            if request.headers.get("sec-fetch-site", "same-origin") not in (
                    "same-origin", "none"):
                raise HTTPError(403, "csrf", "cross-site request refused")
            token = form_token if form_token is not None else request.headers.get(CSRF_HEADER)
            if not principal.session.csrf_ok(token):
                raise HTTPError(403, "csrf", "missing or wrong CSRF token; reload the page",
                                field="csrf")
        if RANK[principal.user.role] < RANK[role]:
            raise HTTPError(403, "forbidden", f"this needs the {role} role; you are "
                            f"{principal.user.role}")
        return principal

    # -- signing in and out ----------------------------------------------------------------

    async def sign_in(self, request: Request, name: str, password: str) -> Principal:
        """A new session for `name`, or LoginRefused (same message for every wrong case)."""
        address = client_address(request)
        blocked = await self.limits.blocked(name, address)
        if blocked is not None:
            log.warning("sign-in refused from %s: %s limit reached", address, blocked.kind)
            raise LoginRefused(429, "rate_limited", blocked.message,
                               headers={"Retry-After": str(blocked.retry_after)},
                               blocked=blocked)
        user = await self.users.authenticate(name, password)
        if user is None:
            await self.limits.failed(name, address)
            # The name is not logged: people type their password into it by mistake.
            log.info("failed sign-in from %s", address)
            raise LoginRefused(401, "unauthorized", WRONG)
        await self.limits.succeeded(name)
        session = await self.sessions.create(user, address)
        await self.audit.add(user.name, "login", detail=f"from {address}")
        return Principal(user, session)

    async def sign_out(self, principal: Principal, request: Request) -> None:
        await self.sessions.end(principal.session)
        await self.audit.add(principal.name, "logout",
                             detail=f"from {client_address(request)}")

    # -- cookies ---------------------------------------------------------------------------

    async def set_session_cookie(self, response: Response, request: Request,
                                 session: Session) -> None:
        value = (await self.codec()).session_cookie(session.sid)
        response.set_cookie(SESSION_COOKIE, value, max_age=self.settings.session_ttl,
                            path="/", secure=is_https(request), httponly=True, samesite="lax")

    def clear_session_cookie(self, response: Response, request: Request) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", secure=is_https(request),
                               httponly=True, samesite="lax")

    async def set_login_cookie(self, response: Response, request: Request,
                               nonce: str) -> None:
        value = (await self.codec()).login_cookie(nonce)
        response.set_cookie(LOGIN_COOKIE, value, max_age=2 * 3600, path="/login",
                            secure=is_https(request), httponly=True, samesite="lax")

    async def login_nonce(self, request: Request) -> str | None:
        return (await self.codec()).login_nonce(request.cookies.get(LOGIN_COOKIE))
