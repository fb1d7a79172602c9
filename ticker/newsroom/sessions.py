"""Desk sessions: a record in Redis, named by a signed cookie, with a CSRF token bound to it.

The cookie `ticker_session` carries only the session id, signed with itsdangerous (HMAC,
timestamped), so a forged or expired cookie is refused before Redis is asked. The record
`{prefix}:session:{sid}` holds the user, the user's session version when it was made, and
the session's CSRF token; it expires with the session. A session is valid while its record
exists and its version equals the user's: sign-out deletes the record, a password change
or disabling bumps the user's version (ending every session at once, on every node).

The sign-in form has its own CSRF token before there is a session: a random nonce in a
signed, short-lived cookie `ticker_login` that the form must echo.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Final

from itsdangerous import BadSignature, URLSafeTimedSerializer
from redis.asyncio import Redis

from ticker.core.clock import now_ms
from ticker.newsroom.users import User
from ticker.redis.keys import Keys

SESSION_COOKIE: Final = "ticker_session"
LOGIN_COOKIE: Final = "ticker_login"
LOGIN_FORM_TTL: Final = 2 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    """One sign-in. `csrf` must accompany every state-changing request it makes."""

    sid: str
    user: str
    sv: int
    csrf: str
    created: int

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class CookieCodec:
    """Signs and checks the session and sign-in-form cookies (itsdangerous)."""

    def __init__(self, secret: str, session_ttl: int) -> None:
        self.session_ttl = session_ttl
        self._session = URLSafeTimedSerializer(secret, salt="ticker.session")
        self._login = URLSafeTimedSerializer(secret, salt="ticker.login-form")

    def session_cookie(self, sid: str) -> str:
        return self._session.dumps(sid)

    def session_id(self, cookie: str | None) -> str | None:
        return _load(self._session, cookie, self.session_ttl)

    def login_cookie(self, nonce: str) -> str:
        return self._login.dumps(nonce)

    def login_nonce(self, cookie: str | None) -> str | None:
        return _load(self._login, cookie, LOGIN_FORM_TTL)


def _load(serializer: URLSafeTimedSerializer, cookie: str | None, max_age: int) -> str | None:
    if not cookie or len(cookie) > 512:
        return None
    try:
        value = serializer.loads(cookie, max_age=max_age)
    except BadSignature:  # also SignatureExpired
        return None
    return value if isinstance(value, str) else None


def nonces_match(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


class Sessions:
    """Session records in Redis. The client is passed in."""

    def __init__(self, redis: Redis, keys: Keys, ttl: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl

    async def create(self, user: User, ip: str) -> Session:
        sid = secrets.token_urlsafe(32)
        session = Session(sid=sid, user=user.name, sv=user.sv,
                          csrf=secrets.token_urlsafe(32), created=now_ms())
        key = self.keys.session(sid)
        index = self.keys.user_sessions(user.name)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"user": session.user, "sv": str(session.sv),
                                "csrf": session.csrf, "created": str(session.created),
                                "ip": ip[:64]})
        pipe.expire(key, self.ttl)
        pipe.sadd(index, sid)
        # The index lives as long as the newest session in it; stale ids in it are harmless.
        pipe.expire(index, self.ttl)
        await pipe.execute()
        return session

    async def get(self, sid: str) -> Session | None:
        raw: Any = await self.redis.hgetall(self.keys.session(sid))
        if not raw or b"user" not in raw:
            return None
        return Session(sid=sid, user=raw[b"user"].decode(), sv=int(raw.get(b"sv", b"0")),
                       csrf=raw.get(b"csrf", b"").decode(),
                       created=int(raw.get(b"created", b"0")))

    async def end(self, session: Session) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.session(session.sid))
        pipe.srem(self.keys.user_sessions(session.user), session.sid)
        await pipe.execute()


async def load_secret(redis: Redis, keys: Keys, configured: str) -> str:
    """TICKER_SECRET_KEY, or the key kept in Redis (made once, by whichever node is first)."""
    if configured:
        return configured
    await redis.set(keys.secret_key, secrets.token_urlsafe(48), nx=True)
    value: Any = await redis.get(keys.secret_key)
    if value is None:  # deleted between the two calls: try once more
        await redis.set(keys.secret_key, secrets.token_urlsafe(48), nx=True)
        value = await redis.get(keys.secret_key)
    if value is None:
        raise RuntimeError("could not keep a secret key in Redis")
    return value.decode() if isinstance(value, bytes) else str(value)
