"""Users in a real Redis: argon2id hashes, roles, disable, passwd, session versions."""

from __future__ import annotations

import time

import pytest
from argon2 import PasswordHasher
from redis.asyncio import Redis

from ticker.core.errors import ValidationError
from ticker.newsroom.sessions import CookieCodec, Sessions, load_secret
from ticker.newsroom.users import MIN_PASSWORD, Users, check_name, check_password, check_role
from ticker.redis.keys import Keys

PW = "correct horse battery staple"


@pytest.fixture
def users(redis: Redis, prefix: str) -> Users:
    return Users(redis, Keys(prefix))


async def test_add_stores_an_argon2id_hash_a_role_and_a_session_version(
    users: Users, redis: Redis, prefix: str
) -> None:
    user = await users.add("Alice", "editor", PW)
    assert (user.name, user.role, user.disabled, user.sv) == ("alice", "editor", False, 1)
    raw = await redis.hgetall(Keys(prefix).user("alice"))
    assert raw[b"hash"].startswith(b"$argon2id$")
    assert PW.encode() not in b"".join(raw.values())
    assert await redis.smembers(Keys(prefix).users) == {b"alice"}
    assert await users.get("alice") == user
    assert [u.name for u in await users.list()] == ["alice"]
    assert user.can("editor") and user.can("contributor") and not user.can("admin")


async def test_a_taken_name_is_refused_and_the_first_user_is_untouched(users: Users) -> None:
    await users.add("alice", "editor", PW)
    with pytest.raises(ValidationError) as info:
        await users.add("alice", "admin", "another password here")
    assert info.value.field == "name"
    alice = await users.get("alice")
    assert alice is not None and alice.role == "editor"
    assert await users.authenticate("alice", PW) is not None


@pytest.mark.parametrize(("check", "value", "field"), [
    (check_name, "", "name"), (check_name, "a b", "name"), (check_name, "-x", "name"),
    (check_name, "x" * 33, "name"), (check_name, "<script>", "name"),
    (check_role, "owner", "role"), (check_role, "", "role"),
    (check_password, "short", "password"), (check_password, "x" * 1025, "password"),
])
def test_bad_names_roles_and_passwords_name_their_field(
    check: object, value: str, field: str
) -> None:
    assert callable(check)
    with pytest.raises(ValidationError) as info:
        check(value)
    assert info.value.field == field


def test_good_names_roles_and_passwords_pass() -> None:
    assert check_name(" Maria.Lopez_2 ") == "maria.lopez_2"
    assert check_role("Admin") == "admin"
    assert check_password("x" * MIN_PASSWORD) == "x" * MIN_PASSWORD
    assert check_password("ﾊﾟｽﾜｰﾄﾞ ｶﾞ ﾅｶﾞｲ") == "ﾊﾟｽﾜｰﾄﾞ ｶﾞ ﾅｶﾞｲ"  # any characters


async def test_authenticate_accepts_only_the_right_password_of_an_enabled_user(
    users: Users
) -> None:
    await users.add("alice", "editor", PW)
    assert (await users.authenticate("alice", PW)) is not None
    assert (await users.authenticate("  ALICE ", PW)) is not None  # names are case-folded
    assert await users.authenticate("alice", PW + "!") is None
    assert await users.authenticate("alice", "") is None
    assert await users.authenticate("bob", PW) is None
    assert await users.authenticate("no such name!", PW) is None
    assert await users.authenticate("alice", "x" * 5000) is None
    await users.set_disabled("alice", True)
    assert await users.authenticate("alice", PW) is None


async def test_passwd_ends_sessions_and_only_the_new_password_works(
    users: Users, redis: Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    user = await users.add("alice", "editor", PW)
    sessions = Sessions(redis, keys, 3600)
    one = await sessions.create(user, "10.0.0.1")
    two = await sessions.create(user, "10.0.0.2")
    assert await sessions.get(one.sid) == one
    changed = await users.set_password("alice", "a brand new passphrase")
    assert changed.sv == user.sv + 1
    assert await users.authenticate("alice", PW) is None
    assert await users.authenticate("alice", "a brand new passphrase") is not None
    # The records are gone, and the version moved on anyway.
    assert await sessions.get(one.sid) is None and await sessions.get(two.sid) is None
    assert not await redis.exists(keys.user_sessions("alice"))


async def test_disable_bumps_the_version_and_enable_keeps_it(users: Users) -> None:
    await users.add("alice", "editor", PW)
    disabled = await users.set_disabled("alice", True)
    assert disabled.disabled and disabled.sv == 2 and not disabled.can("contributor")
    enabled = await users.set_disabled("alice", False)
    assert not enabled.disabled and enabled.sv == 2
    assert (await users.authenticate("alice", PW)) is not None


async def test_role_changes_keep_sessions(users: Users) -> None:
    await users.add("alice", "editor", PW)
    promoted = await users.set_role("alice", "admin")
    assert promoted.role == "admin" and promoted.sv == 1
    with pytest.raises(ValidationError) as info:
        await users.set_role("nobody", "admin")
    assert info.value.field == "name"


async def test_unknown_names_cost_what_wrong_passwords_cost(users: Users) -> None:
    await users.add("alice", "editor", PW)
    await users.authenticate("ghost", PW)  # makes the dummy hash once

    async def timed(name: str) -> float:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            assert await users.authenticate(name, "wrong password here") is None
            best = min(best, time.perf_counter() - started)
        return best

    wrong, unknown = await timed("alice"), await timed("ghost")
    # Both do one full argon2id verify (tens of ms or more); a skipped verify would be ~0.
    # The band is wide because other work shares the CPU; a skipped verify is 100x off.
    assert wrong > 0.01 and unknown > 0.01
    assert 0.25 < unknown / wrong < 4.0, (wrong, unknown)


async def test_a_hash_made_with_weaker_parameters_is_upgraded_on_sign_in(
    redis: Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    weak = Users(redis, keys, PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    await weak.add("alice", "editor", PW)
    before = await redis.hget(keys.user("alice"), "hash")
    assert before is not None and b"m=8192,t=1,p=1" in before
    strong = Users(redis, keys)
    assert await strong.authenticate("alice", PW) is not None
    after = await redis.hget(keys.user("alice"), "hash")
    assert after is not None and after != before and b"m=65536,t=3,p=4" in after
    alice = await strong.get("alice")
    assert alice is not None and alice.sv == 1  # an upgrade is not a password change
    assert await strong.authenticate("alice", PW) is not None


async def test_cookies_are_signed_and_expire(redis: Redis, prefix: str) -> None:
    secret = await load_secret(redis, Keys(prefix), "")
    assert len(secret) >= 32
    assert await load_secret(redis, Keys(prefix), "") == secret  # made once, kept in Redis
    assert await load_secret(redis, Keys(prefix), "k" * 40) == "k" * 40
    codec = CookieCodec(secret, session_ttl=3600)
    cookie = codec.session_cookie("sid-123")
    assert codec.session_id(cookie) == "sid-123"
    assert codec.session_id(cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]) \
        is None
    assert CookieCodec("another secret entirely, 40 chars long..", 3600).session_id(cookie) \
        is None
    assert codec.login_nonce(cookie) is None  # a session cookie is not a sign-in form nonce
    assert codec.session_id("") is None and codec.session_id("x" * 600) is None
    expired = CookieCodec(secret, session_ttl=-1)
    assert expired.session_id(cookie) is None
