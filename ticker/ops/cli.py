"""The `ticker` command: serve | user | token | post | kill | deadletter | webhook | push.

Every subcommand takes the settings flags (or `TICKER_*` variables). Commands that need
Redis use `TICKER_REDIS_URL`, else the embedded Redis of a ticker running on the same data
directory, else they start the embedded Redis for the duration of the command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ticker.core.editions import check_link, versions_of
from ticker.core.errors import TickerError
from ticker.ops import pushcli, usercli, webhookcli
from ticker.ops.logs import configure
from ticker.process.settings import SETTINGS, Settings
from ticker.redis import publisher
from ticker.redis.connection import connect as redis_client
from ticker.redis.deadletters import DeadLetters
from ticker.redis.embedded import EmbeddedRedis, running_url
from ticker.redis.keys import Keys
from ticker.redis.reader import fold
from ticker.redis.tokens import Tokens

REDIS_FLAGS = ("redis_url", "redis_cluster", "data_dir", "key_prefix", "channels",
               "log_level", "log_format")


def add_settings(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    group = parser.add_argument_group("settings (flag, or environment variable)")
    for s in SETTINGS:
        if only is not None and s.attr not in only:
            continue
        default = "" if s.default == "" else f" (default: {s.default})"
        group.add_argument(s.flag, dest=s.attr, default=None, metavar=s.kind.__name__.upper(),
                           help=f"{s.help}; ${s.env}{default}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ticker", description="A live breaking-news ticker server.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server (HTTP, websockets, the hub)",
                           description="Run the server. Without TICKER_REDIS_URL it starts a "
                           "private redis-server with AOF persistence in the data directory.")
    add_settings(serve)

    token = sub.add_parser("token", help="API tokens for publishing services")
    tsub = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = tsub.add_parser("create", help="create a token and print it once")
    create.add_argument("name", help="who uses it, e.g. wire-ingest")
    create.add_argument("--admin", action="store_true",
                        help="may also manage webhooks over HTTP (docs/webhooks.md)")
    revoke = tsub.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    tsub.add_parser("list", help="list token names (never the tokens)")
    for p in tsub.choices.values():
        add_settings(p, REDIS_FLAGS)

    post = sub.add_parser("post", help="publish an item from the shell")
    post.add_argument("text", help="the one-line item")
    post.add_argument("--channel", dest="channel_name", default="en")
    post.add_argument("--source", help="attribution, e.g. 'Israeli media'")
    post.add_argument("--urgency", choices=["flash", "urgent", "breaking"])
    post.add_argument("--link", help="https link to the story")
    post.add_argument("--tags", help="comma separated tags")
    post.add_argument("--ttl", type=int, help="seconds on air (default by urgency)")
    post.add_argument("--idem", help="idempotency key: a retry is not shown twice")
    post.add_argument("--by", default="cli", help="who publishes (default: cli)")
    post.add_argument("--translation-of", metavar="CHANNEL:ID",
                      help="publish as a version of that item of another edition, e.g. "
                           "en:1732662000000-0 (docs/editions.md)")
    add_settings(post, REDIS_FLAGS)

    kill = sub.add_parser("kill", help="take an item off the air everywhere")
    kill.add_argument("item", help="the item id (printed by `ticker post`)")
    kill.add_argument("--channel", dest="channel_name", default="en")
    kill.add_argument("--reason", required=True, help="why (kept in the stream)")
    kill.add_argument("--by", default="cli")
    kill.add_argument("--all-versions", action="store_true",
                      help="kill every version of the story, in every edition")
    add_settings(kill, REDIS_FLAGS)

    dead = sub.add_parser("deadletter", help="entries rejected by validation")
    dsub = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    dlist = dsub.add_parser("list", help="newest first")
    dlist.add_argument("--count", type=int, default=50)
    add_settings(dlist, REDIS_FLAGS)

    usercli.add_parser(sub, lambda p: add_settings(p, REDIS_FLAGS))
    webhookcli.add_parser(sub, lambda p: add_settings(p, (*REDIS_FLAGS, "webhook_key")))
    pushcli.add_parser(sub, lambda p: add_settings(p, (*REDIS_FLAGS, "push_key_file")))
    return parser


@contextlib.asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[Redis]:
    """A Redis client for a CLI command (see the module docstring for which Redis)."""
    embedded: EmbeddedRedis | None = None
    url = settings.redis_url or running_url(settings.data_dir)
    if not url:
        embedded = EmbeddedRedis(settings.data_dir, settings.embedded_redis_port)
        url = embedded.start()
    client = redis_client(url, cluster=settings.redis_cluster and bool(settings.redis_url),
                          timeout=settings.redis_timeout, block_ms=settings.redis_block_ms)
    try:
        yield client
    finally:
        await client.aclose()
        if embedded is not None:
            embedded.stop()


def run_async(fn: Callable[[], Coroutine[Any, Any, int]]) -> int:
    return asyncio.run(fn())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {s.attr: getattr(args, s.attr, None) for s in SETTINGS}
    try:
        settings = Settings.load(overrides=overrides)
        configure(settings.log_level, settings.log_format)
        return dispatch(args, settings)
    except TickerError as exc:
        where = f" ({exc.field})" if exc.field else ""
        print(f"ticker: {exc.message}{where}", file=sys.stderr)
        return 2
    except RedisError as exc:
        print(f"ticker: Redis error: {exc}", file=sys.stderr)
        return 3


def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        if settings.workers > 1:
            from ticker.ops.workers import supervise

            return supervise(settings)
        from ticker.ops.server import serve

        return serve(settings)
    keys = Keys.for_settings(settings)

    async def token() -> int:
        async with connect(settings) as redis:
            tokens = Tokens(redis, keys)
            if args.action == "create":
                secret = await tokens.create(args.name, admin=args.admin)
                print(secret)
                print(f"token for {args.name!r}: shown once, store it now; only its hash "
                      "is kept", file=sys.stderr)
            elif args.action == "revoke":
                if not await tokens.revoke(args.name):
                    print(f"ticker: no token named {args.name!r}", file=sys.stderr)
                    return 1
                print(f"revoked {args.name}")
            else:
                for row in await tokens.entries():
                    print(f"{row['name']}\tcreated {row['created']}")
        return 0

    async def post() -> int:
        channel = settings.channel(args.channel_name)
        if channel is None:
            print(f"ticker: no channel {args.channel_name!r} (configured: "
                  f"{', '.join(settings.channel_names)})", file=sys.stderr)
            return 2
        async with connect(settings) as redis:
            link = None
            if args.translation_of is not None:
                folded = await fold(redis, keys, settings.channels)
                link = check_link(folded.channels, channel.name, args.translation_of)
            item_id = await publisher.publish(
                redis, channel.name, args.text, source=args.source, urgency=args.urgency,
                link=args.link, tags=(args.tags or "").split(",") if args.tags else (),
                ttl=args.ttl, by=args.by, idem=args.idem, keys=keys,
                maxlen=settings.stream_maxlen, translation_of=link)
        print(item_id)
        return 0

    async def kill() -> int:
        async with connect(settings) as redis:
            targets = [(args.channel_name, args.item)]
            if args.all_versions:
                folded = await fold(redis, keys, settings.channels)
                hub = folded.channel(args.channel_name)
                item = hub.state.items.get(args.item) if hub is not None else None
                if hub is None or item is None or item.killed:
                    print(f"ticker: no item {args.item} on air or held in "
                          f"{args.channel_name}", file=sys.stderr)
                    return 2
                targets = [(name, it.id) for name, it in
                           versions_of(folded.channels, args.channel_name, item)]
            for name, item_id in targets:
                entry_id = await publisher.kill(redis, name, item_id, reason=args.reason,
                                                by=args.by, keys=keys)
                print(entry_id if len(targets) == 1 else f"{name}\t{item_id}\t{entry_id}")
        return 0

    async def deadletter() -> int:
        async with connect(settings) as redis:
            rows = await DeadLetters(redis, keys).latest(args.count)
        for entry_id, fields in rows:
            print(json.dumps({"id": entry_id, **fields}, ensure_ascii=False))
        if not rows:
            print("no dead letters", file=sys.stderr)
        return 0

    async def user() -> int:
        return await usercli.run(args, settings, keys, connect)

    async def webhook() -> int:
        return await webhookcli.run(args, settings, keys, connect)

    if args.command == "push" and args.action == "keys":
        return pushcli.keys(args, settings)

    async def push() -> int:
        return await pushcli.status(settings, keys, connect)

    commands = {"token": token, "post": post, "kill": kill, "deadletter": deadletter,
                "user": user, "webhook": webhook, "push": push}
    return run_async(commands[args.command])
