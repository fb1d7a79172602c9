"""`ticker user add | list | disable | enable | passwd | role | lang | editions`: desk
accounts from the shell.

A password is never an argument (it would sit in the shell history and in `ps`): it is
asked for twice on a terminal (getpass), or read as the first line of stdin otherwise, e.g.
`printf '%s\\n' "$PW" | ticker user add alice --role editor`.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

from redis.asyncio import Redis

from ticker.core.errors import ValidationError
from ticker.newsroom.audit import Audit
from ticker.newsroom.users import DEFAULT_LANG, LANGS, ROLES, Users, editions_text
from ticker.process.settings import Settings
from ticker.redis.keys import Keys

Connect = Callable[[Settings], AbstractAsyncContextManager[Redis]]


def add_parser(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
               add_settings: Callable[[argparse.ArgumentParser], None]) -> None:
    user = sub.add_parser("user", help="desk accounts: editors, admins, contributors")
    usub = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = usub.add_parser("add", help="add a user (the password is asked for, or read "
                          "from stdin)")
    add.add_argument("name", help="1-32 of a-z, 0-9, '.', '_', '-'")
    add.add_argument("--role", choices=ROLES, default="editor",
                     help="contributor (needs approval), editor, admin (default: editor)")
    add.add_argument("--lang", choices=LANGS, default=DEFAULT_LANG,
                     help="the desk's language (default: en)")
    add.add_argument("--editions", default="", help="default editions, comma-separated "
                     "channel names (default: all)")
    usub.add_parser("list", help="list users and roles")
    for action, text in (("disable", "disable a user and end their sessions"),
                         ("enable", "enable a disabled user"),
                         ("passwd", "set a new password; ends the user's sessions")):
        usub.add_parser(action, help=text).add_argument("name")
    role = usub.add_parser("role", help="change a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    lang = usub.add_parser("lang", help="set a user's desk language")
    lang.add_argument("name")
    lang.add_argument("lang", choices=LANGS)
    editions = usub.add_parser("editions", help="set a user's default editions")
    editions.add_argument("name")
    editions.add_argument("editions", help="comma-separated channel names, e.g. en,ar; "
                          "'' for all editions")
    for p in usub.choices.values():
        add_settings(p)


def read_password() -> str:
    """From a prompt (twice, on a terminal) or the first line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise ValidationError("the passwords differ", field="password")
        return first
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def split_editions(value: str) -> list[str]:
    return [e.strip() for e in value.split(",") if e.strip()]


async def run(args: argparse.Namespace, settings: Settings, keys: Keys,
              connect: Connect) -> int:
    """The `user` command; returns the exit status."""
    password = read_password() if args.action in ("add", "passwd") else ""
    redis_cm = connect(settings)
    async with redis_cm as redis:
        users = Users(redis, keys)
        audit = Audit(redis, keys, settings.channel_names)
        if args.action == "list":
            for u in await users.list():
                created = datetime.fromtimestamp(u.created / 1000, UTC).strftime("%Y-%m-%d")
                state = "disabled" if u.disabled else "active"
                editions = ",".join(u.editions) or "all"
                print(f"{u.name}\t{u.role}\t{state}\tsince {created}\t{u.lang}\t{editions}")
            return 0
        if args.action == "add":
            user = await users.add(args.name, args.role, password, lang=args.lang,
                                   editions=split_editions(args.editions),
                                   channels=settings.channel_names)
            detail = user.summary()
        elif args.action == "passwd":
            user = await users.set_password(args.name, password)
            detail = f"{user.name}: new password; sessions ended"
        elif args.action == "role":
            user = await users.set_role(args.name, args.role)
            detail = f"{user.name} is now {user.role}"
        elif args.action == "lang":
            user = await users.set_prefs(args.name, lang=args.lang,
                                         channels=settings.channel_names)
            detail = f"{user.name}: language {user.lang}"
        elif args.action == "editions":
            user = await users.set_prefs(args.name, editions=split_editions(args.editions),
                                         channels=settings.channel_names)
            detail = f"{user.name}: default editions {editions_text(user.editions)}"
        else:
            user = await users.set_disabled(args.name, args.action == "disable")
            detail = user.name + ("; sessions ended" if args.action == "disable" else "")
        await audit.add("cli", f"user-{args.action}", detail=detail)
        print(f"{args.action}: {detail}")
    return 0


