"""`GET /metrics`: Prometheus text format (0.0.4), from the counters the hub already keeps.

The hub, the reader and the runtime count in plain numbers on their hot paths (no metrics
library call per event or delivery); a scrape reads them through a `prometheus_client`
collector (`WorkerCollector`) into metric families, and `prometheus_client` writes the text
(`generate_latest`, from a private registry: nothing goes into the library's global one).

What is exported (every series has a `worker` label, "0" for a single process):

| metric | type | what |
|---|---|---|
| `ticker_connections{channel,transport}` | gauge | open readers: `ws` or `sse` |
| `ticker_blocked_connections{channel}` | gauge | readers not reading: live frames withheld |
| `ticker_on_air_items{channel}` | gauge | items on air now |
| `ticker_channel_last_event_timestamp_seconds{channel}` | gauge | time of the last applied event |
| `ticker_entries_read_total` | counter | stream entries read from Redis |
| `ticker_events_total` | counter | events applied and fanned out |
| `ticker_frames_total`, `ticker_deliveries_total` | counter | frames encoded; frame writes |
| `ticker_rejected_entries_total` | counter | entries that failed validation |
| `ticker_duplicate_entries_total` | counter | retried publishes (same idem key) not shown |
| `ticker_slow_blocks_total`, `ticker_slow_drops_total` | counter | slow readers blocked; closed |
| `ticker_resumes_total`, `ticker_resets_total` | counter | resumes by cursor; reset snapshots |
| `ticker_pings_missed_total` | counter | readers dropped for a missed ping |
| `ticker_publish_to_write_seconds` | histogram | entry ID time to the write to readers |
| `ticker_reader_up`, `ticker_ready`, `ticker_stale`, `ticker_draining` | gauge | 1/0 |
| `ticker_reader_lag_seconds` | gauge | age of the newest entry at its read |
| `ticker_reader_seconds_since_read` | gauge | since Redis last answered the reader |
| `ticker_redis_errors_total{component}` | counter | reader, reach, deadletter, api |
| `ticker_dead_letters_total` | counter | dead letters this process recorded |
| `ticker_unreplicated_writes_total` | counter | writes answered before enough replicas had them |
| `ticker_dead_letters_pending` | gauge | dead letters waiting for Redis |
| `ticker_reach_unflushed_items` | gauge | reach counts waiting for Redis |
| `ticker_metrics_age_seconds` | gauge | under `--workers N`: age of each worker's series |
| `process_*` | | RSS, virtual memory, CPU seconds, open/max fds, start time (Linux) |

The histogram's buckets are the hub's `LATENCY_BUCKETS` (1 ms to 10 s), its `le` labels
spelt as they always were here ("0.001", "1", "10"). `process_*` is prometheus_client's
`ProcessCollector` (read from /proc; absent where there is no /proc).

With `ticker serve --workers N` a scrape reaches one worker (the port is shared), so every
worker writes its own series to a file in a directory the supervisor owns, once a second
while someone scrapes (a scrape in the last `DEMAND_WINDOW` seconds; the first scrape after a
quiet spell waits one second for them), and whichever worker answers the scrape serves them
all, each with its `worker` label (a restarted worker's counters restart from zero in their
own series, which Prometheus handles). `ticker_metrics_age_seconds{worker}` tells how fresh
each worker's series are. Sum over `worker` (and over nodes: `instance`) in queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    Sample,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from ticker.core.hub import LATENCY_BUCKETS, Counters
from ticker.process import ticks

if TYPE_CHECKING:
    from ticker.node.runtime import Runtime
    from ticker.node.worker import Worker

log = logging.getLogger("ticker.node.metrics")

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
SNAPSHOT_EVERY = 1.0
DEMAND = "scraped"  # its mtime: the last scrape
DEMAND_WINDOW = 300.0

# The `le` label of each latency bucket, spelt as this server has always written it ("1", not
# the library's "1.0"): a label value is part of a series' identity in Prometheus 2.
LATENCY_LE: tuple[str, ...] = (*(f"{bound:g}" for bound in LATENCY_BUCKETS), "+Inf")

# process_* of this process, from /proc (the library's; not registered anywhere: each scrape's
# private registry reaches it through WorkerCollector, which adds the `worker` label).
PROCESS = ProcessCollector(registry=None)


def private_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of our own holding `collectors` (the library's global one stays unused)."""
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return registry


# -- collecting ---------------------------------------------------------------------------


def latency_histogram(counters: Counters) -> HistogramMetricFamily:
    """The hub's latency counts (per bucket, not cumulative) as a Prometheus histogram."""
    buckets: list[tuple[str, float]] = []
    total = 0
    for le, n in zip(LATENCY_LE, counters.latency_counts, strict=True):
        total += n
        buckets.append((le, total))
    return HistogramMetricFamily(
        "ticker_publish_to_write_seconds",
        "From an entry's stream ID time to its frame being written to readers.",
        buckets=buckets, sum_value=counters.latency_sum)


def push_families(runtime: Runtime) -> list[Metric]:
    """Web Push: what this node pushed (the node holding the lease does), and the
    subscriptions per edition (the same on every node)."""
    push = runtime.push
    counted = CounterMetricFamily("ticker_push_total",
                                  "Pushes by outcome: sent, withdrawn (a kill), expired "
                                  "(404/410: removed), failed, invalid.", labels=["outcome"])
    for outcome in ("sent", "withdrawn", "expired", "failed", "invalid"):
        counted.add_metric([outcome], push.counts[outcome])
    subs = GaugeMetricFamily("ticker_push_subscriptions", "Readers' push subscriptions.",
                             labels=["edition"])
    for edition, n in sorted(push.subscriptions.items()):
        subs.add_metric([edition], n)
    return [
        counted, subs,
        GaugeMetricFamily("ticker_push_leader", "1 if this process does the pushes.",
                          int(push.leader)),
    ]


def ticker_families(runtime: Runtime, now: float) -> list[Metric]:
    """The ticker_* families of this process, read from the hub, the reader and the runtime
    (without the `worker` label)."""
    hub, reader, c = runtime.hub, runtime.reader, runtime.hub.counters
    connections = GaugeMetricFamily("ticker_connections", "Open reader connections.",
                                    labels=["channel", "transport"])
    blocked = GaugeMetricFamily(
        "ticker_blocked_connections",
        "Readers whose buffer is full: live frames are withheld until it drains.",
        labels=["channel"])
    on_air = GaugeMetricFamily("ticker_on_air_items", "Items on air now.", labels=["channel"])
    last = GaugeMetricFamily(
        "ticker_channel_last_event_timestamp_seconds",
        "Time (from its stream ID) of the last event this process applied.", labels=["channel"])
    now_ms = int(now * 1000)
    for name, ch in hub.channels.items():
        sse_blocked = sum(1 for conn in ch.blocked if conn.sse)
        connections.add_metric([name, "ws"], len(ch.writers) + len(ch.blocked) - sse_blocked)
        connections.add_metric([name, "sse"], len(ch.sse_writers) + sse_blocked)
        blocked.add_metric([name], len(ch.blocked))
        on_air.add_metric([name], len(ch.state.on_air(now_ms)))
        cursor_ms = ch.state.cursor.split("-", 1)[0]
        last.add_metric([name], int(cursor_ms) / 1000 if cursor_ms.isdigit() else 0)
    hooks = runtime.webhooks
    webhook_families: list[CounterMetricFamily | GaugeMetricFamily] = [
        CounterMetricFamily("ticker_webhook_sent_total", "Webhook events accepted (2xx).",
                            labels=["subscription"]),
        CounterMetricFamily("ticker_webhook_failed_attempts_total",
                            "Webhook attempts that failed (each retry counts).",
                            labels=["subscription"]),
        CounterMetricFamily("ticker_webhook_dead_total", "Webhook events given up on.",
                            labels=["subscription"]),
        GaugeMetricFamily("ticker_webhook_retrying",
                          "1 while the subscription's oldest event is being retried.",
                          labels=["subscription"]),
        GaugeMetricFamily("ticker_webhook_oldest_pending_seconds",
                          "Age of the oldest event not yet delivered (0: none).",
                          labels=["subscription"]),
    ]
    # Only the node that delivers a subscription reports it (the totals live in Redis, so
    # they carry over when another node takes over).
    for sub_id, st in sorted(hooks.stats.items()):
        age = max(0.0, now - st.oldest_ms / 1000) if st.oldest_ms is not None else 0.0
        for family, value in zip(webhook_families, (st.sent, st.failed, st.dead,
                                                    int(st.retrying), age), strict=True):
            family.add_metric([sub_id], value)
    errors = CounterMetricFamily("ticker_redis_errors_total",
                                 "Redis commands that failed, by component.",
                                 labels=["component"])
    failures = {"reader": reader.errors, "reach": runtime.reach.errors,
                **runtime.redis_errors}
    for component in sorted(failures):
        errors.add_metric([component], failures[component])
    since = time.monotonic() - reader.last_ok if reader.last_ok else -1.0
    return [
        connections, blocked, on_air, last,
        CounterMetricFamily("ticker_entries_read_total", "Stream entries read from Redis.",
                            c.entries_read),
        CounterMetricFamily("ticker_events_total", "Events applied and fanned out.", c.events),
        CounterMetricFamily("ticker_frames_total",
                            "Frames encoded (one per channel and read batch).", c.frames),
        CounterMetricFamily("ticker_deliveries_total", "Frame writes to readers.",
                            c.deliveries),
        CounterMetricFamily("ticker_rejected_entries_total",
                            "Stream entries that failed validation.", c.rejected),
        CounterMetricFamily("ticker_duplicate_entries_total",
                            "Publishes not shown again (same idempotency key).", c.duplicates),
        CounterMetricFamily("ticker_slow_blocks_total",
                            "Times a reader's buffer filled and live frames were withheld.",
                            c.blocked),
        CounterMetricFamily("ticker_slow_drops_total",
                            "Readers closed for staying blocked too long.", c.slow_dropped),
        CounterMetricFamily("ticker_resumes_total", "Reconnects resumed by cursor.", c.resumes),
        CounterMetricFamily("ticker_resets_total", "Reconnects answered with a reset snapshot.",
                            c.resets),
        CounterMetricFamily("ticker_pings_missed_total",
                            "Readers dropped for not answering a ping.", c.pings_missed),
        latency_histogram(c),
        GaugeMetricFamily("ticker_reader_up", "1 if the last read from Redis succeeded.",
                          1 if reader.connected else 0),
        GaugeMetricFamily("ticker_ready", "1 if /readyz answers 200.",
                          1 if runtime.ready else 0),
        GaugeMetricFamily("ticker_stale",
                          "1 while readers are told the feed is stale (Redis lost).",
                          1 if hub.stale else 0),
        GaugeMetricFamily("ticker_draining", "1 while the process shuts down.",
                          1 if runtime.draining else 0),
        GaugeMetricFamily("ticker_reader_lag_seconds",
                          "Age of the newest entry when it was read (last read that had "
                          "entries).", reader.lag_ms / 1000),
        GaugeMetricFamily("ticker_reader_seconds_since_read",
                          "Seconds since Redis last answered the reader (-1: never).",
                          round(since, 3)),
        errors,
        CounterMetricFamily("ticker_dead_letters_total", "Dead letters this process recorded.",
                            runtime.dead_letters_written),
        CounterMetricFamily("ticker_unreplicated_writes_total",
                            "Writes answered before TICKER_REDIS_WAIT_REPLICAS replicas had "
                            "them (API and desk).", runtime.replication.unreplicated),
        GaugeMetricFamily("ticker_dead_letters_pending", "Dead letters waiting for Redis.",
                          len(runtime.pending_dead)),
        *webhook_families,
        *push_families(runtime),
        GaugeMetricFamily("ticker_webhook_fanout_leader",
                          "1 if this process queues the webhook events (one node does).",
                          int(hooks.fanout_leader)),
        CounterMetricFamily("ticker_webhook_fanout_gaps_total",
                            "Times events were trimmed from history before being queued.",
                            hooks.fanout_gaps),
        GaugeMetricFamily("ticker_reach_unflushed_items",
                          "Reach counts waiting to be written to Redis.",
                          sum(len(v) for v in runtime.reach.carry.values())),
    ]


def labelled(families: Iterable[Metric], worker: str) -> list[Metric]:
    """`families`, every sample given the `worker` label. In place: a collector makes new
    families, samples and label dicts each time it is asked."""
    out = list(families)
    for family in out:
        for sample in family.samples:
            sample.labels["worker"] = worker
    return out


class WorkerCollector(Collector):
    """This process's series: ticker_* read from the counters the hub, the reader and the
    runtime keep, then process_*; every sample labelled with this worker."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> list[Metric]:
        families = [*ticker_families(self.runtime, time.time()), *PROCESS.collect()]
        return labelled(families, self.runtime.worker.label)


def merge(groups: Iterable[Iterable[Metric]]) -> list[Metric]:
    """One family per name, in the order names first appear, with every group's samples
    (the exposition format wants each family once). Extends the first group's families."""
    merged: dict[str, Metric] = {}
    for families in groups:
        for family in families:
            first = merged.setdefault(family.name, family)
            if first is not family:
                first.samples.extend(family.samples)
    return list(merged.values())


class ScrapeCollector(Collector):
    """What one GET /metrics answers: this worker's series and, under `--workers N`, every
    other worker's from its snapshot file, plus `ticker_metrics_age_seconds`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> list[Metric]:
        mine = WorkerCollector(self.runtime).collect()
        shared = SharedMetrics.of(self.runtime.worker)
        if shared is None:
            return mine
        now = time.time()
        workers = sorted([(self.runtime.worker.index, now, mine), *shared.others()],
                         key=lambda worker: worker[0])
        ages = GaugeMetricFamily(
            "ticker_metrics_age_seconds",
            "Age of each worker's series in this answer (0: the answering worker).",
            labels=["worker"])
        for index, at, _ in workers:
            ages.add_metric([str(index)], round(max(0.0, now - at), 3))
        return merge([*(families for _, _, families in workers), [ages]])


def exposition(runtime: Runtime) -> bytes:
    """The text of one scrape: this process's series plus, under `--workers N`, every other
    worker's."""
    return generate_latest(private_registry(ScrapeCollector(runtime)))


# -- sharing between workers ----------------------------------------------------------------


def family_to_json(family: Metric) -> dict[str, Any]:
    """A collected family as JSON (stdlib json: it writes and reads Infinity and NaN too)."""
    return {"name": family.name, "type": family.type, "help": family.documentation,
            "samples": [[s.name, s.labels, s.value] for s in family.samples]}


def family_from_json(raw: dict[str, Any]) -> Metric:
    """The family `family_to_json` wrote (ValueError, KeyError, TypeError or AttributeError if
    it is not one). A plain `Metric`: a family read back may be of any type, and the
    exposition needs only its name, type, help and samples."""
    family = Metric(str(raw["name"]), str(raw["help"]), str(raw["type"]))
    family.samples = [Sample(str(name), {str(k): str(v) for k, v in labels.items()}, float(value))
                      for name, labels, value in raw["samples"]]
    return family


class SharedMetrics:
    """Each worker's collected families as a JSON file in one directory (written atomically),
    with the worker's index and when it wrote them."""

    def __init__(self, directory: Path, index: int) -> None:
        self.directory = directory
        self.index = index

    @classmethod
    def of(cls, worker: Worker) -> SharedMetrics | None:
        """The worker's files, under `--workers N`; None for a single process."""
        return cls(worker.shared_dir, worker.index) if worker.shared_dir is not None else None

    def path(self, index: int) -> Path:
        return self.directory / f"worker-{index}.json"

    def wanted(self, now: float | None = None) -> bool:
        """Whether someone scraped in the last DEMAND_WINDOW seconds (the series are then
        written every second; otherwise not at all: an unscraped worker pays nothing)."""
        try:
            scraped = (self.directory / DEMAND).stat().st_mtime
        except OSError:
            return False
        return scraped > (time.time() if now is None else now) - DEMAND_WINDOW

    def demand(self) -> bool:
        """Mark a scrape; True if the other workers were not writing until now."""
        idle = not self.wanted()
        try:
            (self.directory / DEMAND).touch()
        except OSError as exc:
            log.warning("metrics demand not marked (%s)", exc)
        return idle

    def write(self, families: Iterable[Metric], now: float | None = None) -> None:
        """Replace this worker's file with `families`."""
        body = {"worker": self.index, "at": time.time() if now is None else now,
                "families": [family_to_json(family) for family in families]}
        tmp = self.directory / f".worker-{self.index}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(body, separators=(",", ":")))
        os.replace(tmp, self.path(self.index))

    def others(self) -> list[tuple[int, float, list[Metric]]]:
        """(worker, written at, families) of every other worker with a file, by index."""
        out: list[tuple[int, float, list[Metric]]] = []
        for path in sorted(self.directory.glob("worker-*.json")):
            try:
                raw = json.loads(path.read_text())
                worker = int(raw["worker"])
                if worker == self.index:
                    continue
                out.append((worker, float(raw["at"]),
                            [family_from_json(family) for family in raw["families"]]))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("metrics snapshot %s unreadable (%s); skipped", path.name, exc)
        return sorted(out, key=lambda worker: worker[0])

    def remove(self, index: int) -> None:
        with contextlib.suppress(OSError):
            self.path(index).unlink()

    async def run(self, runtime: Runtime, interval: float = SNAPSHOT_EVERY) -> None:
        """Write this worker's snapshot every `interval` seconds until cancelled."""
        collector = WorkerCollector(runtime)
        while True:
            try:
                if self.wanted():
                    self.write(collector.collect())
            except OSError as exc:
                log.warning("metrics snapshot not written (%s)", exc)
            await ticks.tick(interval)


async def endpoint(request: Request) -> Response:
    """GET /metrics."""
    runtime: Runtime = request.state.ticker
    shared = SharedMetrics.of(runtime.worker)
    if shared is not None and shared.demand():
        # The other workers write their series only while someone scrapes: give each one
        # tick (they check once a second) to write a fresh file.
        await asyncio.sleep(SNAPSHOT_EVERY + 0.2)
    return Response(exposition(runtime), media_type=CONTENT_TYPE,
                    headers={"Cache-Control": "no-store"})
