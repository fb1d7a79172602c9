"""`ticker push keys | status`: Web Push from the shell (docs/push.md).

`keys` makes the VAPID key pair once (the private key in TICKER_PUSH_KEY_FILE, default
`push-vapid.pem` in the data directory, readable by its owner only) and prints the public
key; run again, it prints the existing one. `--force` makes a new pair: every browser's
subscription was made for the old key, so readers must opt in again. Every node needs the
same file (or TICKER_PUSH_KEY_FILE pointing at a copy).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from redis.asyncio import Redis

from ticker.node.push import make_keys
from ticker.process.settings import Settings
from ticker.redis.keys import Keys
from ticker.redis.push import PushStore

Connect = Callable[[Settings], AbstractAsyncContextManager[Redis]]


def add_parser(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
               add_settings: Callable[[argparse.ArgumentParser], None]) -> None:
    push = sub.add_parser("push", help="Web Push: browser notifications of flash news")
    psub = push.add_subparsers(dest="action", required=True, metavar="ACTION")
    keys = psub.add_parser("keys", help="make the VAPID keys once; print the public key")
    keys.add_argument("--force", action="store_true",
                      help="replace them (every reader must opt in again)")
    psub.add_parser("status", help="subscriptions per edition, jobs waiting")
    for p in psub.choices.values():
        add_settings(p)


def keys(args: argparse.Namespace, settings: Settings) -> int:
    public, made = make_keys(settings, force=args.force)
    print(public)
    where = settings.vapid_file
    print(("made " if made else "using the existing ") + f"VAPID key {where}; every node "
          "needs this file", file=sys.stderr)
    return 0


async def status(settings: Settings, keys_: Keys, connect: Connect) -> int:
    async with connect(settings) as redis:
        store = PushStore(redis, keys_)
        for name in settings.channel_names:
            print(f"{name}\t{await store.count(name)} subscriptions")
        print(f"jobs waiting\t{await store.backlog()}")
    return 0
