"""Figures of the fan-out benchmark: percentiles, medians over rounds, ratios, the table."""

from __future__ import annotations

import math
import statistics
from typing import Any

# (key in a server's result, label, unit); lower is better except for rates.
METRICS: list[tuple[str, str, str]] = [
    ("rss_per_conn_kib", "RSS per idle connection", "KiB"),
    ("connect_cpu_us", "connect: server CPU per connection", "µs"),
    ("connects_per_s", "connect: connections/s", "1/s"),
    ("single.lat_p50_ms", "single item: latency p50", "ms"),
    ("single.lat_p99_ms", "single item: latency p99", "ms"),
    ("single.lat_max_ms", "single item: latency max", "ms"),
    ("single.last_client_ms", "single item: last client (median of items)", "ms"),
    ("single.cpu_per_delivery_us", "single item: server CPU per delivery", "µs"),
    ("burst.all_ms", "burst: every client has all items", "ms"),
    ("burst.deliveries_per_s", "burst: deliveries/s", "1/s"),
    ("burst.cpu_per_delivery_us", "burst: server CPU per delivery", "µs"),
    ("burst.frames_per_client", "burst: frames per client (1 = one batch)", ""),
    ("single.missing", "single item: deliveries missing", ""),
    ("burst.missing", "burst: deliveries missing", ""),
]


def percentile(values: list[int] | list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    s = sorted(values)
    return float(s[max(0, math.ceil(q / 100 * len(s)) - 1)])


def get(result: dict[str, Any], key: str) -> float | None:
    """A dotted key of a result dict, or None when absent."""
    value: Any = result
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return None if value is None else float(value)


def median_of_rounds(rounds: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per metric, the median over the rounds in which it was measured."""
    out: dict[str, float | None] = {}
    for key, _label, _unit in METRICS:
        values = [v for r in rounds if (v := get(r, key)) is not None]
        out[key] = statistics.median(values) if values else None
    return out


def ratio_pairs(servers: list[str]) -> list[tuple[str, str]]:
    """Which ratios to show: each server vs the raw floor, and ticker vs naive."""
    pairs = [(s, "raw") for s in servers if s != "raw" and "raw" in servers]
    if "ticker" in servers and "naive" in servers:
        pairs.append(("ticker", "naive"))
    return pairs


def ratios(summary: dict[str, dict[str, float | None]]) -> dict[str, dict[str, float | None]]:
    """``{"ticker/raw": {metric: ratio}}`` for every pair of :func:`ratio_pairs`."""
    out: dict[str, dict[str, float | None]] = {}
    for a, b in ratio_pairs(list(summary)):
        row: dict[str, float | None] = {}
        for key, _label, _unit in METRICS:
            va, vb = summary[a].get(key), summary[b].get(key)
            row[key] = va / vb if va is not None and vb else None
        out[f"{a}/{b}"] = row
    return out


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def table(
    summary: dict[str, dict[str, float | None]], ratio: dict[str, dict[str, float | None]]
) -> str:
    """A plain-text (Markdown) table: one row per metric, servers then ratios as columns."""
    cols = list(summary) + list(ratio)
    head = ["metric", *cols]
    rows = [head, ["---"] * len(head)]
    for key, label, unit in METRICS:
        cells = [f"{label} ({unit})" if unit else label]
        cells += [fmt(summary[s].get(key)) for s in summary]
        cells += [(fmt(v) + "x") if (v := ratio[r].get(key)) is not None else "-" for r in ratio]
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join(
        "| "
        + " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        + " |"
        for r in rows
    )
