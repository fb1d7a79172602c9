"""`GET /metrics`: Prometheus text format (0.0.4), from the counters the hub already keeps.

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
| `ticker_dead_letters_pending` | gauge | dead letters waiting for Redis |
| `ticker_reach_unflushed_items` | gauge | reach counts waiting for Redis |
| `process_*` | | RSS, CPU seconds, open/max fds, start time |

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
import math
import os
import resource
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from ticker import ticks

if TYPE_CHECKING:
    from ticker.runtime import Runtime

log = logging.getLogger("ticker.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SNAPSHOT_EVERY = 1.0
DEMAND = "scraped"  # its mtime: the last scrape
DEMAND_WINDOW = 300.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = resource.getpagesize()
STARTED = time.time()

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]  # (name suffix, labels, value)


@dataclass(frozen=True, slots=True)
class Worker:
    """Which worker this process is (0 when it is the only one), and the directory where the
    workers of one `ticker serve --workers N` share their series (None: a single process)."""

    index: int = 0
    shared_dir: Path | None = None


@dataclass(slots=True)
class Family:
    """One metric: its name, type, help and samples."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: list[Sample]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "help": self.help,
                "samples": [[s, list(map(list, labels)), v] for s, labels, v in self.samples]}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Family:
        samples: list[Sample] = [
            (str(s), tuple((str(k), str(v)) for k, v in labels), float(value))
            for s, labels, value in raw["samples"]
        ]
        return cls(str(raw["name"]), str(raw["kind"]), str(raw["help"]), samples)


def gauge(name: str, help: str, value: float, **labels: str) -> Family:
    return Family(name, "gauge", help, [("", tuple(labels.items()), value)])


def counter(name: str, help: str, value: float) -> Family:
    return Family(name, "counter", help, [("", (), value)])


# -- collecting ---------------------------------------------------------------------------


def collect(runtime: Runtime, now: float | None = None) -> list[Family]:
    """Every family of this process, read from the hub, the reader and the runtime."""
    now = time.time() if now is None else now
    hub, reader, c = runtime.hub, runtime.reader, runtime.hub.counters
    connections = Family("ticker_connections", "gauge", "Open reader connections.", [])
    blocked = Family("ticker_blocked_connections", "gauge",
                     "Readers whose buffer is full: live frames are withheld until it drains.",
                     [])
    on_air = Family("ticker_on_air_items", "gauge", "Items on air now.", [])
    last = Family("ticker_channel_last_event_timestamp_seconds", "gauge",
                  "Time (from its stream ID) of the last event this process applied.", [])
    now_ms = int(now * 1000)
    for name, ch in hub.channels.items():
        sse_blocked = sum(1 for conn in ch.blocked if conn.sse)
        ws = len(ch.writers) + len(ch.blocked) - sse_blocked
        sse = len(ch.sse_writers) + sse_blocked
        connections.samples += [("", (("channel", name), ("transport", "ws")), ws),
                                ("", (("channel", name), ("transport", "sse")), sse)]
        blocked.samples.append(("", (("channel", name),), len(ch.blocked)))
        on_air.samples.append(("", (("channel", name),), len(ch.state.on_air(now_ms))))
        cursor_ms = ch.state.cursor.split("-", 1)[0]
        last.samples.append(("", (("channel", name),),
                             int(cursor_ms) / 1000 if cursor_ms.isdigit() else 0))
    latency = Family("ticker_publish_to_write_seconds", "histogram",
                     "From an entry's stream ID time to its frame being written to readers.", [])
    for bound, count in c.latency.cumulative():
        latency.samples.append(("_bucket", (("le", fmt(bound)),), count))
    latency.samples += [("_bucket", (("le", "+Inf"),), c.latency.count),
                        ("_sum", (), c.latency.sum), ("_count", (), c.latency.count)]
    errors = Family("ticker_redis_errors_total", "counter",
                    "Redis commands that failed, by component.", [])
    failures = {"reader": reader.errors, "reach": runtime.reach.errors,
                **runtime.redis_errors}
    for component in sorted(failures):
        errors.samples.append(("", (("component", component),), failures[component]))
    since = now_mono() - reader.last_ok if reader.last_ok else -1.0
    families = [
        connections, blocked, on_air, last,
        counter("ticker_entries_read_total", "Stream entries read from Redis.", c.entries_read),
        counter("ticker_events_total", "Events applied and fanned out.", c.events),
        counter("ticker_frames_total", "Frames encoded (one per channel and read batch).",
                c.frames),
        counter("ticker_deliveries_total", "Frame writes to readers.", c.deliveries),
        counter("ticker_rejected_entries_total", "Stream entries that failed validation.",
                c.rejected),
        counter("ticker_duplicate_entries_total",
                "Publishes not shown again (same idempotency key).", c.duplicates),
        counter("ticker_slow_blocks_total",
                "Times a reader's buffer filled and live frames were withheld.", c.blocked),
        counter("ticker_slow_drops_total", "Readers closed for staying blocked too long.",
                c.slow_dropped),
        counter("ticker_resumes_total", "Reconnects resumed by cursor.", c.resumes),
        counter("ticker_resets_total", "Reconnects answered with a reset snapshot.", c.resets),
        counter("ticker_pings_missed_total", "Readers dropped for not answering a ping.",
                c.pings_missed),
        latency,
        gauge("ticker_reader_up", "1 if the last read from Redis succeeded.",
              1 if reader.connected else 0),
        gauge("ticker_ready", "1 if /readyz answers 200.", 1 if runtime.ready else 0),
        gauge("ticker_stale", "1 while readers are told the feed is stale (Redis lost).",
              1 if hub.stale else 0),
        gauge("ticker_draining", "1 while the process shuts down.",
              1 if runtime.draining else 0),
        gauge("ticker_reader_lag_seconds",
              "Age of the newest entry when it was read (last read that had entries).",
              reader.lag_ms / 1000),
        gauge("ticker_reader_seconds_since_read",
              "Seconds since Redis last answered the reader (-1: never).", round(since, 3)),
        errors,
        counter("ticker_dead_letters_total", "Dead letters this process recorded.",
                runtime.dead_letters_written),
        gauge("ticker_dead_letters_pending", "Dead letters waiting for Redis.",
              len(runtime.pending_dead)),
        gauge("ticker_reach_unflushed_items", "Reach counts waiting to be written to Redis.",
              sum(len(v) for v in runtime.reach.carry.values())),
    ]
    return families + process_families()


def now_mono() -> float:
    return time.monotonic()


def process_families() -> list[Family]:
    """The standard process_* metrics (Linux /proc; absent elsewhere)."""
    out: list[Family] = []
    times = os.times()
    out.append(counter("process_cpu_seconds_total", "User and system CPU seconds.",
                       round(times.user + times.system, 3)))
    with contextlib.suppress(OSError, ValueError, IndexError):
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        out.append(gauge("process_resident_memory_bytes", "Resident memory.", pages * PAGE_SIZE))
    with contextlib.suppress(OSError):
        out.append(gauge("process_open_fds", "Open file descriptors (sockets included).",
                         len(os.listdir("/proc/self/fd"))))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    out.append(gauge("process_max_fds", "The open file limit (ulimit -n).",
                     soft if soft != resource.RLIM_INFINITY else math.inf))
    out.append(gauge("process_start_time_seconds", "When the process started (epoch s).",
                     round(STARTED, 3)))
    return out


# -- sharing between workers ----------------------------------------------------------------


class SharedMetrics:
    """Each worker's families as a JSON file in one directory (written atomically)."""

    def __init__(self, directory: Path, index: int) -> None:
        self.directory = directory
        self.index = index

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

    def write(self, families: Sequence[Family], now: float | None = None) -> None:
        body = {"worker": self.index, "at": time.time() if now is None else now,
                "families": [f.to_json() for f in families]}
        tmp = self.directory / f".worker-{self.index}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(body, separators=(",", ":")))
        os.replace(tmp, self.path(self.index))

    def others(self) -> list[tuple[str, float, list[Family]]]:
        """(worker, written at, families) of every other worker with a snapshot."""
        out: list[tuple[str, float, list[Family]]] = []
        for path in sorted(self.directory.glob("worker-*.json")):
            try:
                raw = json.loads(path.read_text())
                if int(raw["worker"]) == self.index:
                    continue
                out.append((str(raw["worker"]), float(raw["at"]),
                            [Family.from_json(f) for f in raw["families"]]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("metrics snapshot %s unreadable (%s); skipped", path.name, exc)
        return out

    def remove(self, index: int) -> None:
        with contextlib.suppress(OSError):
            self.path(index).unlink()

    async def run(self, runtime: Runtime, interval: float = SNAPSHOT_EVERY) -> None:
        """Write this worker's snapshot every `interval` seconds until cancelled."""
        while True:
            try:
                if self.wanted():
                    self.write(collect(runtime))
            except OSError as exc:
                log.warning("metrics snapshot not written (%s)", exc)
            await ticks.tick(interval)


# -- rendering ------------------------------------------------------------------------------


def fmt(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(workers: Iterable[tuple[str, Sequence[Family]]]) -> str:
    """The exposition text: each family once (HELP, TYPE), with every worker's samples."""
    order: list[str] = []
    meta: dict[str, Family] = {}
    lines_of: dict[str, list[str]] = {}
    for worker, families in workers:
        for family in families:
            if family.name not in meta:
                order.append(family.name)
                meta[family.name] = family
                lines_of[family.name] = []
            lines = lines_of[family.name]
            for suffix, labels, value in family.samples:
                pairs = [*labels, ("worker", worker)]
                text = ",".join(f'{k}="{escape(v)}"' for k, v in pairs)
                lines.append(f"{family.name}{suffix}{{{text}}} {fmt(value)}")
    out: list[str] = []
    for name in order:
        family = meta[name]
        out.append(f"# HELP {name} {family.help}")
        out.append(f"# TYPE {name} {family.kind}")
        out.extend(lines_of[name])
    return "\n".join(out) + "\n"


def exposition(runtime: Runtime) -> str:
    """This process's series plus, under `--workers N`, every other worker's."""
    now = time.time()
    mine = collect(runtime, now)
    index = str(runtime.worker.index)
    shared = runtime.shared_metrics
    if shared is None:
        return render([(index, mine)])

    def age(seconds: float) -> Family:
        return gauge("ticker_metrics_age_seconds",
                     "Age of each worker's series in this answer (0: the answering worker).",
                     round(max(0.0, seconds), 3))

    workers: list[tuple[str, Sequence[Family]]] = [(index, [*mine, age(0.0)])]
    for worker, at, families in shared.others():
        workers.append((worker, [*families, age(now - at)]))
    return render(sorted(workers, key=lambda w: int(w[0])))


async def endpoint(request: Request) -> Response:
    """GET /metrics."""
    runtime: Runtime = request.state.ticker
    shared = runtime.shared_metrics
    if shared is not None and shared.demand():
        # The other workers write their series only while someone scrapes: give each one
        # tick (they check once a second) to write a fresh file.
        await asyncio.sleep(SNAPSHOT_EVERY + 0.2)
    return Response(exposition(runtime), media_type=CONTENT_TYPE,
                    headers={"Cache-Control": "no-store"})
