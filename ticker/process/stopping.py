"""Stopping background tasks at shutdown: cancel them until they end, within a bound.

One cancel is not always enough on Python 3.11: `asyncio.wait_for` (which redis-py wraps
around every command it sends, when a socket timeout is set) drops a cancel that arrives in
the loop iteration where the awaited step has just finished. The task then runs on as if
never cancelled; a reader in its XREAD loop would outlive the lifespan, and the
interpreter's exit (which cancels leftover tasks once, then waits for them) would hang on
it. So the cancel is repeated until the task ends (docs/reliability.md, "Shutdown").
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RECANCEL_EVERY = 0.05  # seconds between cancels of a task that is still running


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]],
                     limit: float) -> set[asyncio.Task[Any]]:
    """Cancel every task in `tasks` and wait for them, cancelling again every
    RECANCEL_EVERY seconds, for at most `limit` seconds. Returns the tasks still running."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        _, pending = await asyncio.wait(pending, timeout=min(RECANCEL_EVERY, remaining))
    return pending


def where(task: asyncio.Task[Any]) -> str:
    """The chain of awaits `task` is suspended in, outermost first, one line each (for the
    log line about a task that would not stop; `Task.get_stack` shows only the outermost)."""
    lines: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(lines) < 40:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            lines.append(f"  awaiting {awaited!r}")
            break
        code = frame.f_code
        lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return "\n".join(lines)
