"""The wall clock, in the unit the streams use: epoch milliseconds.

Stream entry IDs are `<ms>-<seq>` and every time in an item is epoch ms, so this is the one
way ticker reads the clock for them. The pure core never calls it: its callers pass `now` in,
so every node folds the same entries into the same state.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds since the epoch, now."""
    return int(time.time() * 1000)
