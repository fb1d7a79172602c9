"""Items held back from the stream: scheduled (embargoed) and pending an editor's approval.

Embargoed text must not be in the public stream before its time (anyone who can read Redis
or a resume could see it), so a scheduled item is kept as a *job*: its already validated,
canonical stream fields in the hash `{prefix}:jobs`, its time in the sorted set
`{prefix}:scheduled`. A contributor's submission is a job in `{prefix}:pending` until an
editor approves it (it goes out now, or at its scheduled time) or rejects it.

Exactly once, on any number of nodes: to publish a job, a node first *claims* it with a Lua
script that moves it from `{prefix}:jobs` to `{prefix}:job-claims` (with a lease) only if
it is still there unchanged, so one node wins and the others find nothing. The winner then
writes each channel's entry (with its audit entry, `audit.Journal`) and drops the claim. A
node that dies in between leaves a claim whose lease runs out; any node then finishes it.
Every job's entries carry an idempotency key (`idem`, the job's own if none was given), so
an entry written twice that way is folded once, and a channel whose state already has the
key is skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ticker.core.clock import now_ms
from ticker.newsroom.audit import AUDIT_MAXLEN, Journal
from ticker.process import ticks
from ticker.redis.keys import Keys

log = logging.getLogger("ticker.newsroom.jobs")

KINDS: Final = ("scheduled", "pending")
# Seconds between the scheduler's looks at Redis when nothing happened on this node. The
# node that creates or changes a job wakes its own scheduler at once, which then sleeps
# until the job's time: a job goes out on time from there. The others' polls are the safety
# net for a node that stops: its jobs then go out at most this late.
POLL: Final = 5.0
DUE_BATCH: Final = 50
LEASE_MS: Final = 30_000  # a claim older than this is finished by another node

# KEYS: jobs, scheduled, pending, job-claims, desk-version.
# ARGV: id, JSON as read, lease deadline (ms).
CLAIM: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3] .. '|' .. ARGV[2])
redis.call('INCR', KEYS[5])
return 1
"""
# KEYS: job-claims. ARGV: id, the claim as read, the new lease deadline (ms).
RECLAIM: Final = """
local claim = redis.call('HGET', KEYS[1], ARGV[1])
if claim ~= ARGV[2] then return 0 end
local bar = string.find(claim, '|', 1, true)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3] .. string.sub(claim, bar))
return 1
"""

# KEYS: jobs, the job's zset, audit, desk-version.
# ARGV: id, JSON, score, audit maxlen, audit fields...
CREATE: Final = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', unpack(ARGV, 5))
redis.call('INCR', KEYS[4])
return 1
"""
# KEYS: jobs, scheduled, pending, audit, desk-version.
# ARGV: id, JSON as read, new JSON ('' = delete), new kind, new score, audit maxlen,
#       audit fields...
CHANGE: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  local zset = KEYS[3]
  if ARGV[4] == 'scheduled' then zset = KEYS[2] end
  redis.call('ZADD', zset, ARGV[5], ARGV[1])
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', unpack(ARGV, 7))
redis.call('INCR', KEYS[5])
return 1
"""



@dataclass(frozen=True, slots=True)
class Job:
    """A held-back item: canonical stream `fields` for each of `channels`."""

    id: str
    kind: str
    channels: tuple[str, ...]
    fields: dict[str, str]
    by: str
    created: int
    at: int | None = None  # publish time (epoch ms); None: as soon as approved

    @property
    def text(self) -> str:
        return self.fields.get("text", "")

    def encode(self) -> bytes:
        return json.dumps({"id": self.id, "kind": self.kind, "channels": list(self.channels),
                           "fields": self.fields, "by": self.by, "created": self.created,
                           "at": self.at}, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> Job:
        d = json.loads(raw)
        return cls(id=d["id"], kind=d["kind"], channels=tuple(d["channels"]),
                   fields=dict(d["fields"]), by=d["by"], created=int(d["created"]),
                   at=None if d.get("at") is None else int(d["at"]))

    def public(self) -> dict[str, Any]:
        f = self.fields
        return {"id": self.id, "kind": self.kind, "channels": list(self.channels),
                "text": self.text, "source": f.get("source"), "urgency":
                f.get("urgency", "breaking"), "link": f.get("link"),
                "tags": f["tags"].split(",") if f.get("tags") else [],
                "ttl": int(f["ttl"]) if "ttl" in f else None, "by": self.by,
                "created": self.created, "at": self.at}


def new_id(idem: str | None, by: str) -> str:
    """A job id; the same (author, idempotency key) always gives the same id, so a retried
    submission is stored once."""
    if idem:
        return "j" + hashlib.sha256(f"{by}\x00{idem}".encode()).hexdigest()[:20]
    return "j" + secrets.token_hex(10)


def _flat(audit: dict[str, str | None]) -> list[str]:
    return [x for k, v in audit.items() if v for x in (k, v)]


Seen = Callable[[str, str], str | None]  # (channel, idem) -> the item it published


class Jobs:
    """Held-back items in Redis. `journal` writes them to the streams when they go out;
    `seen` asks this node's folded state whether an idempotency key was already published."""

    def __init__(self, redis: Redis, keys: Keys, journal: Journal, seen: Seen) -> None:
        self.redis = redis
        self.keys = keys
        self.journal = journal
        self.seen = seen
        self._create = redis.register_script(CREATE)
        self._change = redis.register_script(CHANGE)
        self._claim = redis.register_script(CLAIM)
        self._reclaim = redis.register_script(RECLAIM)
        # Set when this node creates or changes a job: the scheduler looks again at once.
        self.changed = asyncio.Event()

    def _zset(self, kind: str) -> str:
        return self.keys.scheduled if kind == "scheduled" else self.keys.pending

    @staticmethod
    def _score(job: Job) -> int:
        # scheduled: by publish time (what `due` reads); pending: by submission time.
        return job.at if job.kind == "scheduled" and job.at is not None else job.created

    async def create(self, job: Job, audit: dict[str, str | None]) -> bool:
        """Store a new job; False if one with its id exists (a retried submission)."""
        created = await self._create(
            keys=[self.keys.jobs, self._zset(job.kind), self.keys.audit, self.keys.desk_version],
            args=[job.id, job.encode(), self._score(job), AUDIT_MAXLEN, *_flat(audit)])
        self.changed.set()
        return bool(created)

    async def get(self, job_id: str) -> tuple[Job, bytes] | None:
        """The job and its JSON as stored (for the compare-and-change scripts)."""
        raw: Any = await self.redis.hget(self.keys.jobs, job_id)
        if raw is None:
            return None
        return Job.decode(raw), raw

    async def held(self, kind: str, limit: int = 200) -> list[Job]:
        """Jobs of `kind` in order: scheduled by time, pending by submission."""
        ids: Any = await self.redis.zrange(self._zset(kind), 0, limit - 1)
        if not ids:
            return []
        raws: Any = await self.redis.hmget(self.keys.jobs, ids)
        return [Job.decode(r) for r in raws if r is not None]

    async def change(self, job: Job, raw: bytes, new: Job | None,
                     audit: dict[str, str | None]) -> bool:
        """Replace (e.g. pending -> scheduled) or delete (`new` None) a job if unchanged."""
        score = 0 if new is None else self._score(new)
        done = await self._change(
            keys=[self.keys.jobs, self.keys.scheduled, self.keys.pending, self.keys.audit,
                  self.keys.desk_version],
            args=[job.id, raw, b"" if new is None else new.encode(),
                  "" if new is None else new.kind, score, AUDIT_MAXLEN, *_flat(audit)])
        self.changed.set()
        return bool(done)

    async def release(self, job: Job, raw: bytes, audit: dict[str, str | None]
                      ) -> list[str] | None:
        """Publish the job to its channels now, once; None if another node has it.

        Returns the item id per channel (in the job's channel order)."""
        claimed = await self._claim(
            keys=[self.keys.jobs, self.keys.scheduled, self.keys.pending, self.keys.job_claims,
                  self.keys.desk_version],
            args=[job.id, raw, now_ms() + LEASE_MS])
        if not claimed:
            return None
        return await self._write(job, audit)

    async def _write(self, job: Job, audit: dict[str, str | None]) -> list[str]:
        ids: list[str] = []
        idem = job.fields.get("idem", "")
        for channel in job.channels:
            earlier = self.seen(channel, idem) if idem else None
            if earlier is not None:
                ids.append(earlier)  # written by a node that died before dropping its claim
                continue
            ids.append(await self.journal.append(channel, job.fields, audit,
                                                 item_is_entry=True))
        await self.redis.hdel(self.keys.job_claims, job.id)
        return ids

    async def recover(self, now: int) -> int:
        """Finish jobs whose claiming node died (lease over); returns how many."""
        claims: Any = await self.redis.hgetall(self.keys.job_claims)
        done = 0
        for job_id, claim in claims.items():
            deadline, _, raw = claim.partition(b"|")
            if not deadline.isdigit() or int(deadline) > now:
                continue
            if not await self._reclaim(keys=[self.keys.job_claims],
                                       args=[job_id, claim, now + LEASE_MS]):
                continue
            job = Job.decode(raw)
            log.warning("finishing job %s: the node that claimed it stopped", job.id)
            await self._write(job, {"user": job.by, "action": "publish", "after": job.text,
                                    "detail": "finished after a node stopped"})
            done += 1
        return done

    async def publish_due(self, now: int) -> int | None:
        """Publish every scheduled job whose time has come; returns the time (ms) of the next
        scheduled job (`now` if a full batch went out and more may be due), or None if there
        is none."""
        upcoming: Any = await self.redis.zrange(self.keys.scheduled, 0, DUE_BATCH - 1,
                                                withscores=True)
        released = 0
        for member, score in upcoming:
            if score > now:
                return int(score)
            job_id = member.decode() if isinstance(member, bytes) else str(member)
            found = await self.get(job_id)
            if found is None:
                continue  # another node claimed it between our two reads
            job, raw = found
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime((job.at or 0) / 1000))
            ids = await self.release(job, raw, {"user": job.by, "action": "publish",
                                                "after": job.text,
                                                "detail": f"scheduled for {when}"})
            if ids is not None:
                released += 1
                log.info("scheduled job %s published to %s as %s", job.id,
                         ",".join(job.channels), ",".join(ids))
        # Again at once only if this pass made progress: a batch of entries that cannot be
        # released (another node is on them) must not spin the loop.
        return now if len(upcoming) == DUE_BATCH and released else None


async def run_scheduler(jobs: Jobs, poll: float = POLL) -> None:
    """Forever: publish jobs when due. Owned and cancelled by the Runtime.

    Sleeps until the earliest scheduled job, a change made on this node, or the next poll
    (aligned with the process's other ticks, ticker.process.ticks), whichever comes first."""
    failing = False
    while True:
        try:
            jobs.changed.clear()  # before reading: a change from here on wakes the next wait
            next_at = await jobs.publish_due(now_ms())
            await jobs.recover(now_ms())
            if failing:
                log.info("scheduler: Redis is back")
            failing = False
            within = None if next_at is None else (next_at - now_ms()) / 1000
            await ticks.tick(poll, jobs.changed, within)
        except asyncio.CancelledError:
            raise
        except RedisError as exc:
            if not failing:
                log.warning("scheduler: Redis error (%s); retrying every second", exc)
            failing = True
            await asyncio.sleep(1.0)
        except Exception:
            log.exception("scheduler error (continuing)")
            await asyncio.sleep(1.0)
