"""`python -m ticker` is the `ticker` command."""

from __future__ import annotations

from ticker.ops.cli import main

raise SystemExit(main())
