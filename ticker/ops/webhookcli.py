"""`ticker webhook add | list | remove | test | dead | retry`: webhook subscriptions from the
shell (docs/webhooks.md). Every change is audited as `--by` (default `cli`); `add` prints
the signing secret once, on stdout, and nothing else ever shows it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from redis.asyncio import Redis

from ticker.core.items import URGENCIES
from ticker.core.webhooks import EVENT_OPS
from ticker.newsroom.audit import Audit
from ticker.newsroom.subscriptions import Subscriptions
from ticker.process.settings import Settings
from ticker.redis.keys import Keys
from ticker.redis.webhooks import Webhooks

Connect = Callable[[Settings], AbstractAsyncContextManager[Redis]]


def add_parser(sub: argparse._SubParsersAction,  # type: ignore[type-arg]
               add_settings: Callable[[argparse.ArgumentParser], None]) -> None:
    hook = sub.add_parser("webhook", help="webhook subscriptions: services that follow the "
                          "ticker over HTTP")
    wsub = hook.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = wsub.add_parser("add", help="subscribe a URL; prints its signing secret once")
    add.add_argument("url", help="the receiver, e.g. https://push.example/ticker")
    add.add_argument("--channel", dest="webhook_channels", action="append", required=True,
                     help="a channel it follows (repeat for more)")
    add.add_argument("--urgency", dest="urgencies", action="append", default=[],
                     choices=list(URGENCIES), help="only this urgency (repeat; default all)")
    add.add_argument("--op", dest="ops", action="append", default=[], choices=list(EVENT_OPS),
                     help="only this op (repeat; default all)")
    wsub.add_parser("list", help="subscriptions and how their delivery goes")
    for name, what in (("remove", "stop sending to it and forget what it had waiting"),
                       ("test", "queue a webhook.test event"),
                       ("dead", "what was given up on, newest first")):
        one = wsub.add_parser(name, help=what)
        one.add_argument("id", help="the subscription id (wh_...)")
    retry = wsub.add_parser("retry", help="send a dead letter again")
    retry.add_argument("id")
    retry.add_argument("dead", help="the dead letter's id (from `ticker webhook dead`)")
    for p in wsub.choices.values():
        p.add_argument("--by", default="cli", help="who, in the audit trail (default: cli)")
        add_settings(p)


async def run(args: argparse.Namespace, settings: Settings, keys: Keys,
              connect: Connect) -> int:
    async with connect(settings) as redis:
        subs = Subscriptions(Webhooks(redis, keys, settings.webhook_key),
                             Audit(redis, keys, settings.channel_names),
                             settings.channel_names)
        if args.action == "add":
            sub, secret = await subs.add(args.url, args.webhook_channels, args.urgencies,
                                         args.ops, args.by)
            print(secret)
            print(f"webhook {sub.id} for {sub.url}. The secret above is shown once; store "
                  "it with the receiver now", file=sys.stderr)
            print(sub.id, file=sys.stderr)
        elif args.action == "list":
            for row in await subs.overview():
                d = row["delivery"]
                print(f"{row['id']}\t{row['url']}\t{','.join(row['channels'])}\t"
                      f"sent {d['sent']}, waiting {d['waiting']}, dead {d['dead']}"
                      + (f", retrying ({d['last_error']})" if d["retrying"] else ""))
        elif args.action == "remove":
            sub = await subs.remove(args.id, args.by)
            print(f"removed {sub.id} ({sub.url})")
        elif args.action == "test":
            print(await subs.test(args.id, args.by))
        elif args.action == "dead":
            for row in await subs.dead(args.id):
                print(json.dumps(row, ensure_ascii=False))
        else:
            print(await subs.retry(args.id, args.dead, args.by))
    return 0
