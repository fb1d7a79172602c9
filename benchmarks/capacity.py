"""The capacity model of docs/capacity.md, measured and checked on this box.

``--check`` runs the fan-out benchmark twice in one sitting, both behind the same balancer:
one ticker node (the model's inputs), then ``--nodes`` nodes with R readers each (its
prediction checked). The one node holds what each node is left with after a loss (R x N /
(N - 1) readers), and its storm drops the share a lost node hands it (1 / N) while the rest
stay and get the items that go out meanwhile: a node's part of a loss. The model says a
node's costs are its own readers' costs: N nodes cost per reader what one node does, and a
node's loss costs each node left its part, side by side. Each figure is printed predicted
against measured, and the check fails beyond ``--tolerance`` (20 %).

``--model RESULT.json`` (or after ``--check``) turns the one-node figures into the sizing
table of docs/capacity.md: readers per core and per GiB, and for 100,000 / 1,000,000 /
10,000,000 readers how many nodes of ``--node-cores`` cores and ``--node-gib`` GiB, the
balancer's share, Redis, and what a node loss costs.

Run: ``python benchmarks/capacity.py --check --per-node 10000 --json out.json`` (3 rounds,
about 4 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

try:
    from benchmarks import fanout, report
except ImportError:  # run as a script
    import fanout  # type: ignore[no-redef,import-not-found]
    import report  # type: ignore[no-redef,import-not-found]


def only_run(result: dict[str, Any]) -> dict[str, Any]:
    """The one server run of a fan-out result (one scale, one server, one round)."""
    (scale,) = result["scales"].values()
    (rounds,) = scale["rounds"].values()
    run: dict[str, Any] = rounds[0]
    if "error" in run:
        raise RuntimeError(f"{run['server']}: {run['error']}")
    return run


def per_item(run: dict[str, Any], phase: str, key: str) -> float:
    """A phase's ``key`` (CPU seconds) per item published in it."""
    part = run[phase]
    items = part["deliveries"] / run["connected"]
    return float(part[key]) / items


def prediction(one: dict[str, Any], nodes: int, per_node: int) -> dict[str, float]:
    """What ``nodes`` nodes with ``per_node`` readers each should measure, from one node's
    run. That run holds what each node is left with after a loss (per_node x nodes /
    (nodes - 1) readers), and its storm drops the share a lost node hands it (1 / nodes)
    while the rest stay and get the items: a node's part of a node loss."""
    readers = nodes * per_node
    scale = readers / one["connected"]
    storm = one["storm"]
    return {
        "nodes' CPU per item (ms)": per_item(one, "single", "cpu_s") * scale * 1e3,
        "nodes' RSS with their readers (MiB)":
            (nodes * one["rss_before_kib"] + readers * one["rss_per_conn_kib"]) / 1024,
        "balancer CPU per item (ms)": per_item(one, "single", "balancer_cpu_s") * scale * 1e3,
        "balancer RSS per reader (KiB)": one["balancer_rss_per_conn_kib"],
        "kernel slab per reader, all its sockets (KiB)": one["kernel_slab_kib_per_conn"],
        "node loss: CPU of the nodes left, per reconnection (µs)": loss_cpu_per_reconnect(one),
        # Each node left takes its part at once. On machines of their own the parts run
        # side by side and take one part's time; here every node shares this box's cores
        # (and the balancer's and the load generator's work grows with them), so the parts
        # take turns: (nodes - 1) parts' time.
        "node loss: every reader back with what it missed (ms)":
            storm["resumed_ms"] * (nodes - 1),
    }


def loss_cpu_per_reconnect(one: dict[str, Any]) -> float:
    """A node's part of a node loss, per reconnection (µs): its share of the lost node's
    readers reconnecting while the rest get the items. Not what their old connections'
    end cost it (the storm measures that apart, `teardown_cpu_s`): after a real loss the
    nodes left never see those connections end; the lost node did."""
    storm = one["storm"]
    return float(storm["cpu_s"] - storm["teardown_cpu_s"]) / storm["reconnected"] * 1e6


def measured(many: dict[str, Any]) -> dict[str, float]:
    loss = many["nodeloss"]
    return {
        "nodes' CPU per item (ms)": per_item(many, "single", "cpu_s") * 1e3,
        "nodes' RSS with their readers (MiB)": many["rss_after_kib"] / 1024,
        "balancer CPU per item (ms)": per_item(many, "single", "balancer_cpu_s") * 1e3,
        "balancer RSS per reader (KiB)": many["balancer_rss_per_conn_kib"],
        "kernel slab per reader, all its sockets (KiB)": many["kernel_slab_kib_per_conn"],
        "node loss: CPU of the nodes left, per reconnection (µs)":
            loss["cpu_s"] / loss["orphans"] * 1e6,
        "node loss: every reader back with what it missed (ms)": loss["resumed_ms"],
    }


def compare(ones: list[dict[str, Any]], manys: list[dict[str, Any]], nodes: int,
            per_node: int, tolerance: float) -> list[dict[str, Any]]:
    """Each figure: the median of its predictions (one per one-node round) against the
    median of its measurements (one per many-node round)."""
    wants = [prediction(one, nodes, per_node) for one in ones]
    gots = [measured(many) for many in manys]
    rows = []
    for key in wants[0]:
        p = statistics.median(w[key] for w in wants)
        m = statistics.median(g[key] for g in gots)
        off = (m - p) / p if p else math.inf
        rows.append({"figure": key, "predicted": p, "measured": m, "off": off,
                     "within": abs(off) <= tolerance,
                     "predicted_rounds": [w[key] for w in wants],
                     "measured_rounds": [g[key] for g in gots]})
    return rows


def comparison_table(rows: list[dict[str, Any]], tolerance: float) -> str:
    lines = ["| figure | predicted | measured | measured/predicted | within "
             f"{tolerance:.0%} |", "| --- | ---: | ---: | ---: | --- |"]
    for row in rows:
        lines.append(f"| {row['figure']} | {report.fmt(row['predicted'])} | "
                     f"{report.fmt(row['measured'])} | {1 + row['off']:.2f}x | "
                     f"{'yes' if row['within'] else 'NO'} |")
    return "\n".join(lines)


def inputs(ones: list[dict[str, Any]]) -> dict[str, float]:
    """The model's inputs, per reader, from one node's runs: each the median over them
    (docs/capacity.md)."""
    each = [inputs_of(one) for one in ones]
    return {key: statistics.median(x[key] for x in each) for key in each[0]}


def inputs_of(one: dict[str, Any]) -> dict[str, float]:
    """The model's inputs from one run of one node."""
    r = one["connected"]
    single = one["single"]
    sockets = one["tcp_sockets_per_conn"]  # client, balancer (2) and node ends on loopback
    slab_per_socket = one["kernel_slab_kib_per_conn"] / sockets if sockets else 0.0
    return {
        "readers": r,
        "cpu_per_delivery_us": single["cpu_per_delivery_us"],
        "burst_cpu_per_delivery_us": one["burst"]["cpu_per_delivery_us"],
        "loss_cpu_per_reconnect_us": loss_cpu_per_reconnect(one),
        "cpu_per_connect_us": one["connect_cpu_us"],
        "rss_per_reader_kib": one["rss_per_conn_kib"],
        "slab_per_socket_kib": slab_per_socket,
        "balancer_cpu_per_delivery_us": single["balancer_cpu_s"] / single["deliveries"] * 1e6,
        "balancer_rss_per_reader_kib": one["balancer_rss_per_conn_kib"],
        # Redis CPU while one node process read items at the single items' pace.
        "redis_cores_per_process": single["redis_cpu_s"] / (single["items"] * single["interval"]),
    }


def sizing(model: dict[str, float], readers: int, args: argparse.Namespace) -> dict[str, Any]:
    """Nodes of ``--node-cores``/``--node-gib`` for ``readers`` (docs/capacity.md's rules)."""
    cores, gib = args.node_cores, args.node_gib
    # CPU: the peak item rate must use at most --cpu-headroom of the node's cores.
    per_core_cpu = args.cpu_headroom * 1e6 / (args.peak_items * model["cpu_per_delivery_us"])
    # Memory: user space and the kernel's socket per reader, within --mem-headroom of RAM.
    per_reader_kib = model["rss_per_reader_kib"] + model["slab_per_socket_kib"]
    per_gib = args.mem_headroom * 1024 * 1024 / per_reader_kib
    per_node = min(per_core_cpu * cores, per_gib * gib, args.fd_limit * cores)
    nodes = max(2, math.ceil(readers / per_node))

    def storm_seconds(nodes: int) -> float:
        """A node lost: its readers reconnect with their cursors on the others (at the
        measured cost of a node's part of a loss, per reconnection), on (nodes - 1) x cores."""
        return readers / nodes * model["loss_cpu_per_reconnect_us"] / 1e6 / ((nodes - 1) * cores)

    # A node loss: its readers resume on the others within --storm-seconds, or add nodes.
    while storm_seconds(nodes) > args.storm_seconds:
        nodes += 1
    nodes += 1  # N+1: the loss of one node leaves the rest within their limits
    balancer_cores = readers * args.peak_items * model["balancer_cpu_per_delivery_us"] / 1e6
    return {
        "readers": readers,
        "nodes": nodes,
        "readers_per_node": round(readers / nodes),
        "bound_by": min(("cpu", per_core_cpu * cores), ("memory", per_gib * gib),
                        ("descriptors", args.fd_limit * cores), key=lambda x: x[1])[0],
        "node_loss_storm_s": storm_seconds(nodes),
        # After a loss, the others hold the readers between them.
        "node_rss_gib": readers / (nodes - 1) * per_reader_kib / 2**20,
        "nginx_cores_at_peak": balancer_cores,
        # Redis works per node process (one XREAD loop each), not per reader.
        "redis_cores": nodes * cores * model["redis_cores_per_process"],
    }


def model_tables(ones: list[dict[str, Any]], args: argparse.Namespace) -> str:
    model = inputs(ones)
    lines = ["| input (one node, measured; medians of the rounds) | value |", "| --- | ---: |"]
    lines += [f"| {k} | {report.fmt(v)} |" for k, v in model.items()]
    lines += ["", "| readers | nodes | readers per node | bound by | node-loss storm (s) | "
              "RSS per node after a loss (GiB) | nginx cores at peak | Redis (cores) |",
              "| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for readers in (100_000, 1_000_000, 10_000_000):
        s = sizing(model, readers, args)
        lines.append(f"| {readers:,} | {s['nodes']} | {s['readers_per_node']:,} | "
                     f"{s['bound_by']} | {s['node_loss_storm_s']:.2f} | "
                     f"{s['node_rss_gib']:.2f} | {s['nginx_cores_at_peak']:.1f} | "
                     f"{s['redis_cores']:.2f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="capacity model: check and sizing",
                                epilog="see docs/capacity.md")
    p.add_argument("--check", action="store_true",
                   help="run one node, then --nodes nodes, and compare")
    p.add_argument("--model", type=Path, help="a result file of --check (--json) to size from")
    p.add_argument("--per-node", type=int, default=10000, help="readers per node")
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--balancer", default="nginx", choices=["nginx", "haproxy"])
    p.add_argument("--tolerance", type=float, default=0.2)
    p.add_argument("--rounds", type=int, default=3,
                   help="one node then the nodes, alternated this many times (medians)")
    p.add_argument("--node-cores", type=int, default=8)
    p.add_argument("--node-gib", type=float, default=16)
    p.add_argument("--peak-items", type=float, default=5.0,
                   help="items per second a node must deliver to all its readers at peak")
    p.add_argument("--cpu-headroom", type=float, default=0.5)
    p.add_argument("--mem-headroom", type=float, default=0.5)
    p.add_argument("--storm-seconds", type=float, default=5.0,
                   help="a lost node's readers must resume on the others within this")
    p.add_argument("--fd-limit", type=int, default=100_000,
                   help="readers per core a worker process may hold (its file limit)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if not args.check and args.model is None:
        p.error("--check, --model FILE, or both")
    if args.nodes < 2:
        p.error("--nodes: 2 or more (a node's loss is part of the check)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check:
        common = ["--servers", "ticker", "--balancer", args.balancer, "--rounds", "1",
                  "--items", "10", "--bursts", "3", "--spreads", "1"]
        after_loss = args.per_node * args.nodes // (args.nodes - 1)
        one_args = fanout.parse_args([*common, "--clients", str(after_loss),
                                      "--phases", "single,burst,storm",
                                      "--storm-fraction", str(1 / args.nodes)])
        many_args = fanout.parse_args([*common, "--clients", str(args.per_node * args.nodes),
                                       "--nodes", str(args.nodes),
                                       "--phases", "single,burst,nodeloss"])
        # Alternated, one node then the nodes, --rounds times: both see the same drift.
        ones, manys = [], []
        for _ in range(args.rounds):
            ones.append(asyncio.run(fanout.run(one_args)))
            manys.append(asyncio.run(fanout.run(many_args)))
        runs = [only_run(x) for x in ones]
        rows = compare(runs, [only_run(x) for x in manys], args.nodes, args.per_node,
                       args.tolerance)
        print(f"### One node with {runs[0]['connected']:,} readers, then {args.nodes} nodes with "
              f"{args.nodes * args.per_node:,} via {args.balancer}, {args.rounds} rounds "
              "(medians)\n")
        print(comparison_table(rows, args.tolerance))
        saved = {"ones": ones, "manys": manys, "comparison": rows}
        if args.json:
            args.json.write_text(json.dumps(saved, indent=1, default=str))
    else:
        saved = json.loads(args.model.read_text())
        runs = [only_run(x) for x in saved["ones"]]
        rows = saved.get("comparison", [])
    print()
    print(model_tables(runs, args))
    return 0 if all(row["within"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
