"""Outgoing HTTP requests to addresses we were given (webhooks, Web Push), made safely.

Every request goes to an address checked by `ticker.core.addresses` after resolving the
URL's host, and the connection is made to that checked address (the name is kept for
`Host` and for TLS), so a second resolution cannot send it elsewhere. No redirects, one
total timeout (httpx's own are per phase), at most MAX_RESPONSE bytes of the answer read.
The answer is an `Outcome`: accepted, or why not and whether trying again may help.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import httpx

from ticker.core.addresses import Allowed, check_destination
from ticker.core.errors import ValidationError

MAX_RESPONSE: Final = 64 * 1024
MAX_RETRY_AFTER: Final = 3600.0
USER_AGENT: Final = "ticker/1"

Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(slots=True)
class Outcome:
    """One attempt: accepted, or why not and whether to try again (and not before)."""

    ok: bool
    status: int = 0
    error: str = ""
    retry: bool = False
    retry_after: float | None = None


def backoff(attempts: int, base: float, retry_after: float | None,
            cap: float = 30 * 60.0) -> float:
    """Seconds before the next attempt: `base` doubled per attempt, at most `cap`, with
    equal jitter (half fixed, half random), never before the receiver's `Retry-After`."""
    delay: float = min(cap, base * 2.0 ** min(attempts, 30))
    delay = delay / 2 + random.uniform(0, delay / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


def retry_after_of(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from now: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, float(when.timestamp()) - now)


class Sender:
    """POSTs to URLs whose resolved addresses pass the check; one client, pooled."""

    def __init__(self, allowed: Allowed, timeout: float, resolver: Resolver | None = None
                 ) -> None:
        self.allowed = allowed
        self.timeout = timeout
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(5.0, timeout)), follow_redirects=False,
            trust_env=False, limits=httpx.Limits(max_connections=100,
                                                 max_keepalive_connections=20))
        self.resolver = resolver

    async def close(self) -> None:
        await self.client.aclose()

    async def addresses(self, host: str, port: int) -> list[str]:
        """What `host` resolves to (an address literal is itself), checked; ValidationError
        when any of it may not be called."""
        literal = host.strip("[]")
        try:
            socket.inet_pton(socket.AF_INET6 if ":" in literal else socket.AF_INET, literal)
            found = [literal]
        except OSError:
            if self.resolver is not None:
                found = list(await self.resolver(host, port))
            else:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM)
                found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        return check_destination(host, found, self.allowed)

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """POST `body` to `url` (at a checked address). 2xx: ok. Timeouts, connection errors,
        408, 429 and 5xx: `retry` (with the answer's `Retry-After`). Anything else, and a
        destination that may not be called (nothing is sent then): not ok, no retry."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            checked = await self.addresses(host, port)
        except ValidationError as exc:
            return Outcome(ok=False, error=exc.message)  # refused: nothing is sent
        except OSError as exc:
            return Outcome(ok=False, error=f"cannot resolve {host}: {exc}", retry=True)
        address = checked[0]
        netloc = (f"[{address}]" if ":" in address else address) + (
            f":{parts.port}" if parts.port else "")
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        sent = {"Host": parts.netloc.rsplit("@", 1)[-1], "User-Agent": USER_AGENT, **headers}
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        try:
            async with asyncio.timeout(self.timeout), self.client.stream(
                    "POST", target, content=body, headers=sent,
                    extensions=extensions) as response:
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read > MAX_RESPONSE:
                        break  # the answer is not ours to read; its status is
                status = response.status_code
                retry_after = retry_after_of(response.headers.get("retry-after"), time.time())
        except (httpx.TimeoutException, TimeoutError):
            return Outcome(ok=False, error=f"no answer within {self.timeout:g} s", retry=True)
        except httpx.HTTPError as exc:
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:300], retry=True)
        if 200 <= status < 300:
            return Outcome(ok=True, status=status)
        retry = status in (408, 429) or status >= 500
        return Outcome(ok=False, status=status, error=f"HTTP {status}", retry=retry,
                       retry_after=retry_after if retry else None)
