"""`python -m ticker` is the `ticker` command."""

from __future__ import annotations

from ticker.cli import main

raise SystemExit(main())
