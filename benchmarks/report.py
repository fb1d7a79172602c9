"""Figures of the fan-out benchmark: percentiles, medians over rounds, ratios, the table.

``python benchmarks/report.py RESULT.json`` prints the tables and the targets of a stored run
again (the targets re-checked with this file's rules).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

# (key in a server's result, label, unit); lower is better except for rates.
METRICS: list[tuple[str, str, str]] = [
    ("connected", "clients connected", ""),
    ("rss_per_conn_kib", "RSS per idle connection", "KiB"),
    ("connect_cpu_us", "connect: server CPU per connection", "µs"),
    ("connects_per_s", "connect: connections/s", "1/s"),
    ("single.lat_p50_ms", "single item: latency p50", "ms"),
    ("single.lat_p99_ms", "single item: latency p99", "ms"),
    ("single.lat_max_ms", "single item: latency max", "ms"),
    ("single.last_client_ms", "single item: last client (median of items)", "ms"),
    ("single.deliveries_per_s", "single item: deliveries/s (N / last client)", "1/s"),
    ("single.cpu_per_delivery_us", "single item: server CPU per delivery", "µs"),
    ("single.clients_cpu_per_delivery_us", "single item: load-gen CPU per delivery", "µs"),
    ("burst.all_ms", "burst of 20 in one pipeline: every client has all", "ms"),
    ("burst.deliveries_per_s", "burst: deliveries/s", "1/s"),
    ("burst.cpu_per_delivery_us", "burst: server CPU per delivery", "µs"),
    ("burst.frames_per_client", "burst: frames per client (1 = one batch)", ""),
    ("spread.after_last_ms", "20 items over 1 s: last XADD to every client has all", "ms"),
    ("spread.cpu_per_delivery_us", "20 items over 1 s: server CPU per delivery", "µs"),
    ("spread.frames_per_client", "20 items over 1 s: frames per client", ""),
    ("storm.resumed_ms", "storm: every client resumed, nothing lost", "ms"),
    ("storm.reconnect_ms", "storm: every client has its first frame", "ms"),
    ("storm.cpu_per_reconnect_us", "storm: server CPU per reconnection", "µs"),
    ("storm.snapshots", "storm: clients sent a snapshot instead of events", ""),
    ("stall.stalled", "1% stalled: clients that stopped reading", ""),
    ("stall.blocked", "1% stalled: readers the server set aside", ""),
    ("stall.before_last_client_ms", "1% stalled: last healthy client, before", "ms"),
    ("stall.during_last_client_ms", "1% stalled: last healthy client, while stalled", "ms"),
    ("stall.before_lat_p99_ms", "1% stalled: healthy latency p99, before", "ms"),
    ("stall.during_lat_p99_ms", "1% stalled: healthy latency p99, while stalled", "ms"),
    ("stall.during_vs_before_last_client_ms", "1% stalled: last healthy client, during/before",
     "x"),
    ("stall.rss_fill_kib", "1% stalled: server RSS growth while they filled", "KiB"),
    ("stall.rss_during_kib", "1% stalled: server RSS growth once set aside", "KiB"),
    ("stall.caught_up_ms", "1% stalled: reading again, all caught up", "ms"),
    ("stall.exact", "1% stalled: got every missed item in order", ""),
    ("kernel_tcp_kib_per_conn", "kernel TCP buffers per connection (both ends)", "KiB"),
    ("kernel_slab_kib_per_conn", "kernel slab per connection (all its sockets)", "KiB"),
    ("tcp_sockets_per_conn", "TCP sockets per connection (both ends, balancer's)", ""),
    ("server_skmem_kib_per_conn", "server sockets' buffers per connection (ss -m)", "KiB"),
    ("balancer_rss_per_conn_kib", "balancer RSS per connection", "KiB"),
    ("balancer_connect_cpu_us", "connect: balancer CPU per connection", "µs"),
    ("single.balancer_cpu_per_delivery_us", "single item: balancer CPU per delivery", "µs"),
    ("burst.balancer_cpu_per_delivery_us", "burst: balancer CPU per delivery", "µs"),
    ("spike.snapshot_p50_ms", "spike: connect to snapshot p50", "ms"),
    ("spike.snapshot_p99_ms", "spike: connect to snapshot p99", "ms"),
    ("spike.snapshot_max_ms", "spike: connect to snapshot max", "ms"),
    ("spike.snapshot_within_3s", "spike: share with the snapshot within 3 s", ""),
    ("spike.live_p50_ms", "spike: live items during the wave, latency p50", "ms"),
    ("spike.live_p99_ms", "spike: live items during the wave, latency p99", "ms"),
    ("spike.written_mean_ms", "spike: an item written to every reader of a server "
     "process, mean", "ms"),
    ("spike.written_p50_le_ms", "spike: the same, p50 within (a histogram bucket)", "ms"),
    ("spike.written_p99_le_ms", "spike: the same, p99 within (a histogram bucket)", "ms"),
    ("spike.cpu_per_connect_us", "spike: server CPU per connect (wave CPU / clients)", "µs"),
    ("spike.cpu_per_connect_net_us", "spike: server CPU per connect, net of the live "
     "deliveries (single items' rate)", "µs"),
    ("spike.user_per_connect_us", "spike: wave CPU in user space, per connect", "µs"),
    ("spike.system_per_connect_us", "spike: wave CPU in the kernel, per connect", "µs"),
    ("spike.balancer_cpu_per_connect_us", "spike: balancer CPU per connect", "µs"),
    ("spike.connects_per_s", "spike: connects/s", "1/s"),
    ("spike.late_start_ms", "spike: load-gen behind its schedule, worst", "ms"),
    ("sse.ws_cpu_per_delivery_us", "sse: CPU per websocket delivery (ws alone)", "µs"),
    ("sse.sse_cpu_per_delivery_us", "sse: CPU per SSE delivery (beside ws)", "µs"),
    ("sse.sse_vs_ws_cpu_per_delivery", "sse: CPU per delivery, SSE / websocket", "x"),
    ("sse.rss_per_sse_kib", "sse: RSS per SSE reader", "KiB"),
    ("sse.kernel_tcp_kib_per_sse", "sse: kernel TCP buffers per SSE reader (both ends)", "KiB"),
    ("sse.kernel_slab_kib_per_sse", "sse: kernel slab per SSE reader (both ends)", "KiB"),
    ("sse.sse_connect_cpu_us", "sse: server CPU per SSE connect", "µs"),
    ("sse.ws_lat_p99_ms", "sse: websocket latency p99 (both kinds)", "ms"),
    ("sse.sse_lat_p99_ms", "sse: SSE latency p99 (both kinds)", "ms"),
    ("sse.storm_resumed_ms", "sse: storm, every SSE reader resumed (Last-Event-ID)", "ms"),
    ("sse.storm_cpu_per_reconnect_us", "sse: storm, server CPU per reconnection", "µs"),
    ("nodeloss.orphans", "node loss: readers of the killed node", ""),
    ("nodeloss.reconnect_ms", "node loss: every reader reconnected", "ms"),
    ("nodeloss.resumed_ms", "node loss: every reader has what it missed", "ms"),
    ("nodeloss.cpu_per_reconnect_us", "node loss: CPU per reconnection (nodes left)", "µs"),
    ("single.missing", "single item: deliveries missing", ""),
    ("burst.missing", "burst: deliveries missing", ""),
    ("spread.missing", "20 items over 1 s: deliveries missing", ""),
    ("storm.missing", "storm: deliveries missing", ""),
    ("stall.missing", "1% stalled: items a stalled client never got", ""),
    ("spike.missing_after", "spike: deliveries missing after the wave", ""),
    ("sse.missing", "sse: deliveries missing", ""),
    ("sse.storm_missing", "sse: storm, deliveries missing", ""),
    ("nodeloss.missing", "node loss: deliveries missing", ""),
]
# Counts, not costs: no ratio is shown for them.
NO_RATIO = {
    "connected",
    "single.missing",
    "burst.missing",
    "spread.missing",
    "storm.missing",
    "storm.snapshots",
    "stall.stalled",
    "stall.blocked",
    "stall.exact",
    "stall.missing",
    "stall.during_vs_before_last_client_ms",
    "spike.snapshot_within_3s",
    "spike.late_start_ms",
    "spike.missing_after",
    "sse.sse_vs_ws_cpu_per_delivery",
    "sse.missing",
    "sse.storm_missing",
    "nodeloss.orphans",
    "nodeloss.missing",
    "tcp_sockets_per_conn",
}


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
    """Which ratios to show: each server vs the one-process raw floor (or, without it, the
    floor with as many processes), ticker vs naive and vs the Node baseline with as many
    processes, and a run through a balancer vs the same server direct."""
    pairs: list[tuple[str, str]] = []
    for s in servers:
        direct, via, _ = s.partition(" via ")
        if via:
            if direct in servers:
                pairs.append((s, direct))
            continue
        if s.startswith("ticker"):
            n = s.partition(":")[2] or "1"
            node = "node" if n == "1" else f"node:{n}"
            if node in servers:
                pairs.append((s, node))
        if s.startswith("raw") or " x " in s:
            continue
        procs = s.partition(":")[2] or "1"
        if "raw" in servers:
            pairs.append((s, "raw"))
        if procs != "1" and f"raw:{procs}" in servers:
            pairs.append((s, f"raw:{procs}"))
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
            row[key] = va / vb if va is not None and vb and key not in NO_RATIO else None
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
        if all(summary[s].get(key) is None for s in summary):
            continue  # a phase this run did not have
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


def _target(
    what: str, scale: str, figure: float | None, limit: float, strict: bool = False, unit: str = ""
) -> dict[str, Any]:
    met = None if figure is None else (figure < limit if strict else figure <= limit)
    return {
        "target": what,
        "clients": scale,
        "figure": figure,
        "limit": limit,
        "unit": unit,
        "op": "<" if strict else "<=",
        "met": met,
    }


def targets(scales: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 7's targets (and issue 8's stalled readers), each checked against figures of one
    run (``fanout.run``)."""
    out: list[dict[str, Any]] = []
    for scale, sc in scales.items():
        ratio = sc["ratios"]
        summary = sc["summary"]
        for spec in summary:
            if spec.startswith("ticker") and " " not in spec:
                out.extend(election_night(spec, scale, summary[spec]))
            if not spec.startswith("ticker") or " " in spec:  # issue 7: direct runs only
                continue
            # Like for like: N ticker processes against the floor with N processes (each
            # reads and folds every item itself), else the one-process floor.
            nprocs = spec.partition(":")[2] or "1"
            vs_raw = (
                (ratio.get(f"{spec}/raw:{nprocs}") if nprocs != "1" else None)
                or ratio.get(f"{spec}/raw")
                or {}
            )
            for key, what in (
                ("single.cpu_per_delivery_us", "CPU per delivery, single items"),
                ("burst.cpu_per_delivery_us", "CPU per delivery, pipelined burst"),
                ("spread.cpu_per_delivery_us", "CPU per delivery, 20 items in 1 s"),
            ):
                if key in vs_raw:
                    floor = f"raw:{nprocs}" if f"{spec}/raw:{nprocs}" in ratio else "raw"
                    out.append(_target(f"{spec}: {what}, x {floor}", scale, vs_raw[key], 1.15,
                                       unit="x"))
            out.append(
                _target(
                    f"{spec}: server CPU per new connection",
                    scale,
                    summary[spec].get("connect_cpu_us"),
                    150,
                    unit="µs",
                )
            )
            if int(scale) == 10000:  # the burst, spread and storm targets are at 10,000
                for what, key, limit, unit in (
                    ("burst of 20 (one pipeline), first XADD to all", "burst.all_ms", 500, "ms"),
                    ("20 items in 1 s, last XADD to all", "spread.after_last_ms", 500, "ms"),
                    ("reconnect storm, all resumed", "storm.resumed_ms", 3000, "ms"),
                    ("reconnect storm, deliveries lost", "storm.missing", 0, ""),
                ):
                    out.append(_target(f"{spec}: {what}", scale, summary[spec].get(key), limit,
                                       unit=unit))
                one = (ratio.get(f"{spec}/raw") or {}).get("single.last_client_ms")
                if spec == "ticker":
                    out.append(
                        _target(
                            "ticker: one item, last client, x raw floor", scale, one, 1.1, unit="x"
                        )
                    )
                elif one is not None:
                    out.append(
                        _target(
                            f"{spec}: one item, last client, x raw floor (1 process)",
                            scale,
                            one,
                            1.0,
                            strict=True,
                            unit="x",
                        )
                    )
            if summary[spec].get("stall.stalled"):  # issue 8: 1% of the clients stalled
                # "Unchanged" latency: within this machine's run-to-run drift.
                for what, key, limit, unit in (
                    ("last healthy client, during/before", "stall.during_vs_before_last_client_ms",
                     1.3, "x"),
                    ("RSS growth once set aside", "stall.rss_during_kib", 1024, "KiB"),
                    ("items a stalled client never got", "stall.missing", 0, ""),
                ):
                    out.append(_target(f"{spec}: 1% stalled, {what}", scale,
                                       summary[spec].get(key), limit, unit=unit))
            if int(scale) >= 50000:
                held = summary[spec].get("connected")
                out.append(
                    _target(
                        f"{spec}: connections held",
                        scale,
                        None if held is None else -held,
                        -int(scale),
                    )
                )
                out.append(
                    _target(
                        f"{spec}: RSS per idle connection",
                        scale,
                        summary[spec].get("rss_per_conn_kib"),
                        8,
                        unit="KiB",
                    )
                )
    return out


def election_night(spec: str, scale: str, figures: dict[str, float | None]) -> list[dict[str, Any]]:
    """Issue 19's targets for a run that had the spike or the SSE phase."""
    out: list[dict[str, Any]] = []
    if figures.get("spike.snapshot_p99_ms") is not None:
        for what, key, limit, unit, strict in (
            ("spike, connect to snapshot p99", "spike.snapshot_p99_ms", 3000, "ms", False),
            ("spike, live items p99 during the wave", "spike.live_p99_ms", 500, "ms", True),
            ("spike, server CPU per connect (net of the live deliveries)",
             "spike.cpu_per_connect_net_us", 80, "µs", False),
            ("spike, deliveries missing after the wave", "spike.missing_after", 0, "", False),
        ):
            out.append(_target(f"{spec}: {what}", scale, figures.get(key), limit,
                               strict=strict, unit=unit))
    if figures.get("sse.sse_cpu_per_delivery_us") is not None:
        for what, key, limit, unit in (
            ("SSE CPU per delivery, x websocket", "sse.sse_vs_ws_cpu_per_delivery", 1.2, "x"),
            ("RSS per SSE reader", "sse.rss_per_sse_kib", 4, "KiB"),
            ("SSE reconnect storm, all resumed by Last-Event-ID", "sse.storm_resumed_ms",
             1000, "ms"),
            ("SSE deliveries missing", "sse.missing", 0, ""),
            ("SSE storm deliveries missing", "sse.storm_missing", 0, ""),
        ):
            out.append(_target(f"{spec}: {what}", scale, figures.get(key), limit, unit=unit))
    return out


def targets_table(rows: list[dict[str, Any]]) -> str:
    """The targets as a Markdown table."""
    lines = ["| clients | target | figure | limit | met |", "| --- | --- | ---: | ---: | --- |"]
    for t in rows:
        fig = t["figure"]
        if t["target"].endswith("connections held") and fig is not None:
            fig, limit = -fig, f">= {int(t['clients']):,}"
        else:
            limit = f"{t['op']} {fmt(t['limit'])}{t['unit']}"
        met = {True: "yes", False: "NO", None: "not measured"}[t["met"]]
        lines.append(
            f"| {int(t['clients']):,} | {t['target']} | {fmt(fig)}{t['unit']} | {limit} | {met} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the tables and targets of the result files named on the command line."""
    parser = argparse.ArgumentParser(
        description="Tables and targets of stored fan-out benchmark results (Markdown).")
    parser.add_argument("results", nargs="+", type=Path,
                        help="result files written by fanout.py --json")
    for path in parser.parse_args(argv).results:
        name = str(path)
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"{name}: not a readable result file ({exc})")
        if "scales" not in result:
            # fanout-10k.json, from before issue 7: the docs quote its figures as stated.
            print(f"\n{name}: an earlier format (no per-scale results); not tabulated")
            continue
        print(f"\n## {name}")
        for clients, scale in result["scales"].items():
            # From the rounds, with this file's metrics and pairs (a stored summary may
            # predate a metric).
            scale["summary"] = {s: median_of_rounds(rs) for s, rs in scale["rounds"].items()}
            scale["ratios"] = ratios(scale["summary"])
            print(f"\n### {int(clients):,} clients\n")
            print(table(scale["summary"], scale["ratios"]))
            for spec, why in scale["skipped"].items():
                print(f"\n{spec} skipped: {why}")
        print("\n### Targets (issues 7, 8 and 19)\n")
        print(targets_table(targets(result["scales"])))


if __name__ == "__main__":
    main()
