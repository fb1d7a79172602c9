"""The desk's accounts, kept in Redis: argon2id password hashes, a role, a session version.

A user is one hash, `{prefix}:user:{name}`, with `role`, `hash`, `disabled`, `sv` (the
session version), `created`, `updated` and two preferences: `lang` (the desk's language,
one of LANGS) and `editions` (their default editions, comma-separated channel names; empty
means all). `{prefix}:users` is the set of names. A user stored before the preferences
existed reads as `en` and all editions. A session remembers the `sv` it was made under and
is only valid while the user's `sv` is unchanged, so disabling a user, changing their
password or ending their sessions (each bumps `sv`) ends every session at once, on every
node, without finding the sessions first. Preferences never end a session.

Roles, least to most: `contributor` (submits items that wait for an editor's approval),
`editor` (publishes and runs every op), `admin` (also manages users and API tokens).

Hashing and verifying cost ~0.1-0.5 s of CPU and 64 MiB by design; they run in worker
threads, at most `HASH_CONCURRENCY` at a time, so the event loop (and the fan-out) never
waits on them and a burst of sign-ins cannot take all the memory.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from redis.asyncio import Redis

from ticker.core.clock import now_ms
from ticker.core.errors import ValidationError
from ticker.redis.keys import Keys

ROLES: Final = ("contributor", "editor", "admin")
RANK: Final = {role: n for n, role in enumerate(ROLES, start=1)}
NAME: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MIN_PASSWORD: Final = 10
MAX_PASSWORD: Final = 1024
HASH_CONCURRENCY: Final = 2
LANGS: Final = ("en", "ar", "es")
DEFAULT_LANG: Final = "en"

# Create a user only if the name is free, record and index together (never half a user).
CREATE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""


def check_name(value: str) -> str:
    """A user name: 1-32 of a-z, 0-9, '.', '_', '-', starting with a letter or digit."""
    name = value.strip().lower()
    if not NAME.match(name):
        raise ValidationError(
            "user name: 1-32 of a-z, 0-9, '.', '_', '-', starting with a letter or digit",
            field="name",
        )
    return name


def check_role(value: str) -> str:
    role = value.strip().lower()
    if role not in RANK:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", field="role")
    return role


def check_lang(value: str) -> str:
    """The desk's language: one of LANGS."""
    lang = value.strip().lower()
    if lang not in LANGS:
        raise ValidationError(f"lang must be one of {', '.join(LANGS)}", field="lang")
    return lang


def check_editions(values: Iterable[str], channels: Collection[str]) -> tuple[str, ...]:
    """Default editions: each one of `channels` (the configured names), given once or more;
    kept in the order of `channels`. None at all means every edition."""
    wanted: set[str] = set()
    for value in values:
        if value not in channels:
            raise ValidationError(f"no edition {value[:40]!r}; one of {', '.join(channels)}",
                                  field="editions")
        wanted.add(value)
    return tuple(name for name in channels if name in wanted)


def editions_text(editions: Iterable[str]) -> str:
    """Default editions as the audit trail and the CLI say them: `en, ar`, or `all`."""
    return ", ".join(editions) or "all"


def check_password(value: str) -> str:
    """At least MIN_PASSWORD characters (NFC), at most MAX_PASSWORD; any characters."""
    password = unicodedata.normalize("NFC", value)
    if len(password) < MIN_PASSWORD:
        raise ValidationError(f"password must be at least {MIN_PASSWORD} characters",
                              field="password")
    if len(password) > MAX_PASSWORD:
        raise ValidationError(f"password must be at most {MAX_PASSWORD} characters",
                              field="password")
    return password


@dataclass(frozen=True, slots=True)
class User:
    """A user as stored, without the hash."""

    name: str
    role: str
    disabled: bool
    sv: int
    created: int
    updated: int
    lang: str = DEFAULT_LANG
    editions: tuple[str, ...] = ()

    def can(self, role: str) -> bool:
        """True if this user has `role` or a higher one (and is not disabled)."""
        return not self.disabled and RANK[self.role] >= RANK[role]

    def summary(self) -> str:
        """The new user as the audit trail and the CLI say it."""
        return (f"{self.name} as {self.role}; language {self.lang}; default editions "
                f"{editions_text(self.editions)}")

    def public(self) -> dict[str, object]:
        return {"name": self.name, "role": self.role, "disabled": self.disabled,
                "created": self.created, "updated": self.updated, "lang": self.lang,
                "editions": list(self.editions)}


def _user(name: str, raw: Mapping[bytes, bytes]) -> User | None:
    if not raw or b"role" not in raw:
        return None
    lang = raw.get(b"lang", b"").decode()
    return User(
        name=name,
        role=raw[b"role"].decode(),
        disabled=raw.get(b"disabled", b"0") == b"1",
        sv=int(raw.get(b"sv", b"0")),
        created=int(raw.get(b"created", b"0")),
        updated=int(raw.get(b"updated", b"0")),
        lang=lang if lang in LANGS else DEFAULT_LANG,
        editions=tuple(e for e in raw.get(b"editions", b"").decode().split(",") if e),
    )


class Users:
    """Users in Redis. The client is passed in; nothing here reads the clock but `now_ms`."""

    def __init__(self, redis: Redis, keys: Keys, hasher: PasswordHasher | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self.hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(HASH_CONCURRENCY)
        self._dummy: str | None = None

    # -- hashing (in threads) --------------------------------------------------------------

    async def _hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, hashed: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return self.hasher.verify(hashed, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
        async with self._slots:
            return await asyncio.to_thread(verify)

    async def _dummy_hash(self) -> str:
        # Verified against for unknown names, so a miss costs what a wrong password costs.
        if self._dummy is None:
            self._dummy = await self._hash(secrets.token_urlsafe(24))
        return self._dummy

    # -- reading ---------------------------------------------------------------------------

    async def get(self, name: str) -> User | None:
        raw: Any = await self.redis.hgetall(self.keys.user(name))
        return _user(name, raw)

    async def list(self) -> list[User]:
        members: Any = await self.redis.smembers(self.keys.users)
        names = sorted(n.decode() for n in members)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.user(name))
        rows = await pipe.execute()
        users = [_user(name, raw) for name, raw in zip(names, rows, strict=True)]
        return [u for u in users if u is not None]

    async def authenticate(self, name: str, password: str) -> User | None:
        """The user if `password` is theirs and they are enabled; None otherwise.

        Unknown names, disabled users and wrong passwords cost the same argon2 verify and
        give the same None: nothing tells them apart, by answer or by time.
        """
        key_name = name.strip().lower()
        password = unicodedata.normalize("NFC", password)
        raw: Any = {}
        if NAME.match(key_name) and len(password) <= MAX_PASSWORD:
            raw = await self.redis.hgetall(self.keys.user(key_name))
        user = _user(key_name, raw)
        hashed = raw.get(b"hash", b"").decode() if user is not None else ""
        if not hashed or len(password) > MAX_PASSWORD:
            await self._verify(await self._dummy_hash(), password[:MAX_PASSWORD])
            return None
        ok = await self._verify(hashed, password)
        if not ok or user is None or user.disabled:
            return None
        if self.hasher.check_needs_rehash(hashed):
            # Parameters were raised since this hash was made: upgrade it while we know the
            # password. The session version stays: this is not a password change.
            await self.redis.hset(self.keys.user(key_name), "hash", await self._hash(password))
        return user

    # -- writing ---------------------------------------------------------------------------

    async def add(self, name: str, role: str, password: str, *, lang: str = DEFAULT_LANG,
                  editions: Iterable[str] = (), channels: Collection[str] = ()) -> User:
        """Create a user; ValidationError (field `name`) if the name is taken. `editions`
        must be among `channels`, the configured channel names."""
        name, role, password = check_name(name), check_role(role), check_password(password)
        lang, chosen = check_lang(lang), check_editions(editions, channels)
        hashed = await self._hash(password)
        now = now_ms()
        created = await self.redis.eval(
            CREATE, 2, self.keys.user(name), self.keys.users, name,
            "role", role, "hash", hashed, "disabled", "0", "sv", "1",
            "created", str(now), "updated", str(now), "lang", lang, "editions", ",".join(chosen),
        )
        if not created:
            raise ValidationError(f"user {name!r} exists", field="name")
        return User(name, role, False, 1, now, now, lang, chosen)

    async def _require(self, name: str) -> User:
        user = await self.get(check_name(name))
        if user is None:
            raise ValidationError(f"no user {name!r}", field="name")
        return user

    async def set_password(self, name: str, password: str) -> User:
        """New password; ends every session of the user (session version + 1)."""
        user = await self._require(name)
        hashed = await self._hash(check_password(password))
        return await self._update(user, {"hash": hashed}, end_sessions=True)

    async def set_disabled(self, name: str, disabled: bool) -> User:
        """Disable (ends every session) or enable a user."""
        user = await self._require(name)
        return await self._update(user, {"disabled": "1" if disabled else "0"},
                                  end_sessions=disabled)

    async def set_role(self, name: str, role: str) -> User:
        """A new role; takes effect on the user's next request (roles are read each time)."""
        user = await self._require(name)
        return await self._update(user, {"role": check_role(role)}, end_sessions=False)

    async def set_prefs(self, name: str, *, channels: Collection[str], lang: str | None = None,
                        editions: Iterable[str] | None = None) -> User:
        """The user's language and/or default editions (among `channels`, the configured
        names); both are checked before either is written. Sessions go on."""
        user = await self._require(name)
        fields: dict[str, str] = {}
        if lang is not None:
            fields["lang"] = check_lang(lang)
        if editions is not None:
            fields["editions"] = ",".join(check_editions(editions, channels))
        return await self._update(user, fields, end_sessions=False)

    async def sign_out_everywhere(self, name: str) -> User:
        """End every session of the user (session version + 1); the password stays."""
        return await self._update(await self._require(name), {}, end_sessions=True)

    async def _update(self, user: User, fields: dict[str, str], *, end_sessions: bool) -> User:
        key = self.keys.user(user.name)
        pipe = self.redis.pipeline(transaction=True)
        mapping: dict[Any, Any] = {**fields, "updated": str(now_ms())}
        pipe.hset(key, mapping=mapping)
        if end_sessions:
            pipe.hincrby(key, "sv", 1)
        await pipe.execute()
        if end_sessions:
            await self.end_sessions(user.name)
        fresh = await self.get(user.name)
        assert fresh is not None  # we just wrote it; users are never deleted
        return fresh

    async def end_sessions(self, name: str) -> int:
        """Delete the user's session records (the version bump already made them invalid)."""
        index = self.keys.user_sessions(name)
        members: Any = await self.redis.smembers(index)
        sids = [s.decode() for s in members]
        pipe = self.redis.pipeline(transaction=True)
        for sid in sids:
            pipe.delete(self.keys.session(sid))
        pipe.delete(index)
        await pipe.execute()
        return len(sids)

