"""Which worker this process is: its index under `ticker serve --workers N`, and the directory
the workers share.

The supervisor (ticker.ops.workers) gives each worker process its `Worker`; a single server
process is `Worker()`: index 0, nothing shared. The index labels everything a worker reports
about itself (the `worker` label of /metrics, the `worker` field of its log lines), and the
shared directory is where the workers leave their metrics series for each other
(ticker.node.metrics.SharedMetrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Worker:
    """Which worker this process is (0 when it is the only one), and the directory where the
    workers of one `ticker serve --workers N` share their series (None: a single process)."""

    index: int = 0
    shared_dir: Path | None = None

    @property
    def label(self) -> str:
        """The index as the `worker` label of /metrics shows it."""
        return str(self.index)
