"""A job one node at a time does, run in a loop while this node holds its lease.

`LeasedLoop.run(step, lost)` loops until cancelled. Each pass it takes or renews the lease
(`ticker.redis.leases`, for `ttl_ms`) when `renew_every` seconds have passed since the last
time; then:

- not held: `lost()` is called (drop whatever the job kept from when it held the lease)
  and the loop waits for the process's shared once-a-second tick (`ticker.process.ticks`);
- held: `await step()`. True (it did something, or must look again): the next pass comes
  at once. False (nothing to do): the loop waits for `touch()` (the reader calls it when it
  has folded events) or the shared tick, whichever comes first. A step may call `hold()`
  itself, to check it still holds the lease in the middle of a long piece of work.

`each()`, if given, is awaited at the start of every pass, held or not. An error in a pass is
logged to the job's logger (Redis or the network unreachable: a warning; anything else: with
its traceback), `lost()` is called, the lease is renewed on the next pass, and the loop goes
on a second later. `run` never releases the lease: its owner calls `release()` when done.

`FanOutPositions` is what a fan-out under such a lease keeps between passes: where it has got
to in each channel, read when it starts holding the lease and again after another node moved
them (its `forget` is the loop's `lost`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from ticker.process import ticks
from ticker.redis.leases import Leases


@dataclass(slots=True)
class LeasedLoop:
    leases: Leases
    name: str  # the lease's
    owner: str  # unique to this process
    ttl_ms: int
    renew_every: float  # seconds; a few renewals must fit in `ttl_ms`
    log: logging.Logger
    what: str  # the job, as log lines name it
    held: bool = False
    _renewed: float = 0.0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def touch(self) -> None:
        """Wake an idle loop now rather than at the next tick."""
        self._wake.set()

    async def hold(self) -> bool:
        """Take or renew the lease when due; whether we hold it."""
        if time.monotonic() - self._renewed > self.renew_every:
            self.held = await self.leases.lease(self.name, self.owner, self.ttl_ms)
            self._renewed = time.monotonic()
        return self.held

    async def release(self) -> None:
        await self.leases.release(self.name, self.owner)

    async def run(self, step: Callable[[], Awaitable[bool]], lost: Callable[[], None],
                  each: Callable[[], Awaitable[None]] | None = None) -> None:
        """Passes until cancelled, as the module's docstring says."""
        while True:
            try:
                if each is not None:
                    await each()
                if not await self.hold():
                    lost()
                    await ticks.tick(1.0)
                    continue
                if not await step():
                    self._wake.clear()
                    # Woken by the reader; else on the process's shared once-a-second tick.
                    await ticks.tick(1.0, wake=self._wake)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.log.warning("%s: Redis unreachable (%s); retrying", self.what, exc)
                lost()
                self._renewed = 0.0
                await asyncio.sleep(1.0)
            except Exception:
                self.log.exception("%s error (continuing)", self.what)
                lost()
                self._renewed = 0.0
                await asyncio.sleep(1.0)


@dataclass(slots=True)
class FanOutPositions:
    """A fan-out's positions: `read()` gives the stored ones; `move(positions)` fans out what
    follows them and moves them (True), finds nothing to do (False) or finds that another
    node moved them in Redis (None: they are read again next time)."""

    read: Callable[[], Awaitable[dict[str, str]]]
    move: Callable[[dict[str, str]], Awaitable[bool | None]]
    _positions: dict[str, str] | None = None

    def forget(self) -> None:
        self._positions = None

    async def fan_out(self) -> bool | None:
        """One `move` from the positions (read first if forgotten); what it returned."""
        if self._positions is None:
            self._positions = await self.read()
        moved = await self.move(self._positions)
        if moved is None:
            self._positions = None
        return moved
