"""`ticker user ...` as an operator runs it, against a real Redis; then signing in works."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
from redis.asyncio import Redis

from tests.conftest import TIMEOUT, Server, make_settings, running_server
from tests.e2e.deskkit import post_login
from ticker.newsroom.users import Users
from ticker.redis.keys import Keys

TICKER = [sys.executable, "-m", "ticker"]


async def ticker(redis_url: str, prefix: str, *args: str, stdin: str = "",
                 channels: str = "en") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKER_")}
    env.update(TICKER_REDIS_URL=redis_url, TICKER_KEY_PREFIX=prefix, TICKER_LOG_LEVEL="warning",
               TICKER_CHANNELS=channels)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([*TICKER, *args], input=stdin, capture_output=True, text=True,
                              env=env, timeout=TIMEOUT * 3)
    return await asyncio.to_thread(run)


async def test_user_commands_manage_accounts_with_the_password_from_stdin(
    redis: Redis, prefix: str, redis_url: str
) -> None:
    done = await ticker(redis_url, prefix, "user", "add", "Maria", "--role", "admin",
                        stdin="a long enough passphrase\n")
    assert done.returncode == 0, done.stderr
    assert "maria as admin" in done.stdout
    users = Users(redis, Keys(prefix))
    maria = await users.get("maria")
    assert maria is not None and maria.role == "admin"
    assert await users.authenticate("maria", "a long enough passphrase") is not None

    # A password is never an argument.
    done = await ticker(redis_url, prefix, "user", "add", "omar", "hunter2hunter2")
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr
    assert await users.get("omar") is None

    done = await ticker(redis_url, prefix, "user", "add", "omar", stdin="short\n")
    assert done.returncode == 2 and "at least 10 characters" in done.stderr
    done = await ticker(redis_url, prefix, "user", "add", "maria", stdin="whatever it is\n")
    assert done.returncode == 2 and "exists" in done.stderr
    done = await ticker(redis_url, prefix, "user", "add", "omar", "--role", "owner")
    assert done.returncode == 2 and "invalid choice" in done.stderr

    done = await ticker(redis_url, prefix, "user", "add", "omar", "--role", "contributor",
                        stdin="omar's passphrase\n")
    assert done.returncode == 0, done.stderr
    done = await ticker(redis_url, prefix, "user", "list")
    assert done.returncode == 0
    lines = [line.split("\t")[:3] for line in done.stdout.splitlines()]
    assert lines == [["maria", "admin", "active"], ["omar", "contributor", "active"]]

    done = await ticker(redis_url, prefix, "user", "passwd", "omar",
                        stdin="a different passphrase\n")
    assert done.returncode == 0, done.stderr
    assert await users.authenticate("omar", "omar's passphrase") is None
    assert await users.authenticate("omar", "a different passphrase") is not None

    done = await ticker(redis_url, prefix, "user", "role", "omar", "editor")
    assert done.returncode == 0 and (await users.get("omar") or maria).role == "editor"
    done = await ticker(redis_url, prefix, "user", "disable", "omar")
    assert done.returncode == 0
    assert await users.authenticate("omar", "a different passphrase") is None
    done = await ticker(redis_url, prefix, "user", "list")
    assert "omar\teditor\tdisabled" in done.stdout
    done = await ticker(redis_url, prefix, "user", "enable", "omar")
    assert done.returncode == 0
    done = await ticker(redis_url, prefix, "user", "disable", "nobody")
    assert done.returncode == 2 and "no user" in done.stderr

    entries = [f[b"action"].decode() for _, f in await redis.xrange(Keys(prefix).audit)]
    assert entries == ["user-add", "user-add", "user-passwd", "user-role", "user-disable",
                       "user-enable"]


async def test_a_user_added_from_the_shell_can_sign_in(
    redis: Redis, prefix: str, redis_url: str
) -> None:
    done = await ticker(redis_url, prefix, "user", "add", "desk1",
                        stdin="desk one passphrase\n")
    assert done.returncode == 0, done.stderr
    server: Server
    async with running_server(make_settings(redis_url, prefix)) as server, \
            httpx.AsyncClient(base_url=server.http) as http:
        r = await post_login(http, "desk1", "desk one passphrase")
        assert r.status_code == 200 and r.json()["role"] == "editor"
