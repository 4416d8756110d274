"""The shared job queue: Redis Streams with a consumer group, for workers on many machines.

Keys (``prefix`` defaults to ``bulkpush:``)::

    {prefix}jobs               ZSET    job id -> created (Unix time)
    {prefix}job:{id}           HASH    spec (JSON), created, nparts, done, cancelled, error,
                                       finished
    {prefix}part:{id}:{n}      HASH    base (the part's ranges, JSON), status, worker, attempts,
                                       offset, line, report (JSON), error, entry
    {prefix}parts              STREAM  one entry per part to run; consumer group "workers"
    {prefix}gcra:{stream}      STRING  the shared rate schedule (see limiter)

A worker takes an entry with ``XREADGROUP``; an entry left pending longer
than the lease TTL (its worker died: heartbeats reset the idle time with
``XCLAIM ... JUSTID``) is reclaimed by another worker with ``XAUTOCLAIM``
(following its cursor through the whole pending list).
Every state change checks, in one Lua script, that the caller still owns
the part, so a worker that lost its lease writes nothing more. A checkpoint
is one ``HSET``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection
from typing import Any

import orjson

from bulkpush._quota import Pacer, Quota
from bulkpush.errors import QueueError
from bulkpush.worker._queue_types import DEFAULT_LEASE_TTL, Lease, LeaseState
from bulkpush.worker._urls import redact_urls
from bulkpush.worker.jobs import (
    JobSpec,
    JobView,
    Part,
    check_target_kind,
    job_status,
    new_job_id,
    plan_parts,
)
from bulkpush.worker.limiter import RedisSlots, SharedPacer

__all__ = ["RedisQueue"]

GROUP = "workers"
# Entries of skipped jobs one lease() call puts back before it gives up.
_MAX_REQUEUED = 8

# KEYS: job, part. ARGV: worker, entry. Returns 1 when the part is now the caller's.
_TAKE = """
local job, part = KEYS[1], KEYS[2]
if redis.call('EXISTS', part) == 0 then return 0 end
if redis.call('HGET', job, 'cancelled') == '1' or redis.call('HGET', job, 'error') then return 0 end
local status = redis.call('HGET', part, 'status')
if status ~= 'queued' and status ~= 'running' then return 0 end
local entry = redis.call('HGET', part, 'entry')
if entry and entry ~= '' and entry ~= ARGV[2] then return 0 end
redis.call('HSET', part, 'status', 'running', 'worker', ARGV[1])
redis.call('HINCRBY', part, 'attempts', 1)
return 1
"""

# KEYS: job, part, stream. ARGV: op, worker, group, entry, then op arguments.
# Returns 'ok', 'lost', 'cancelled' (or 'finished' for a 'done' that ended the job).
_OP = """
local job, part, stream = KEYS[1], KEYS[2], KEYS[3]
local op, worker, group, entry = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local state = 'ok'
local status = redis.call('HGET', part, 'status')
if redis.call('HGET', part, 'worker') ~= worker then return 'lost' end
if status ~= 'running' and status ~= 'cancelled' then return 'lost' end
if status == 'cancelled' or redis.call('HGET', job, 'cancelled') == '1'
    or redis.call('HGET', job, 'error') then
  state = 'cancelled'
end
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000)
if op == 'beat' then
  if state == 'ok' then redis.call('XCLAIM', stream, group, worker, 0, entry, 'JUSTID') end
elseif op == 'cp' then
  if state == 'ok' then
    redis.call('HSET', part, 'offset', ARGV[5], 'line', ARGV[6], 'report', ARGV[7])
    redis.call('XCLAIM', stream, group, worker, 0, entry, 'JUSTID')
  end
elseif op == 'done' then
  redis.call('HSET', part, 'status', 'done', 'report', ARGV[5], 'offset', ARGV[6])
  redis.call('XACK', stream, group, entry)
  local done = redis.call('HINCRBY', job, 'done', 1)
  if state == 'ok' and done >= tonumber(redis.call('HGET', job, 'nparts')) then
    redis.call('HSET', job, 'finished', now)
    return 'finished'
  end
elseif op == 'release' then
  redis.call('XACK', stream, group, entry)
  if state == 'ok' then
    local new = redis.call('XADD', stream, '*', 'job', ARGV[5], 'idx', ARGV[6])
    redis.call('HSET', part, 'status', 'queued', 'worker', '', 'entry', new)
  else
    redis.call('HSET', part, 'status', 'cancelled', 'worker', '')
  end
elseif op == 'defer' then
  redis.call('XACK', stream, group, entry)
  if state == 'ok' then
    local attempts = redis.call('HINCRBY', part, 'attempts', -1)
    if not redis.call('HGET', part, 'waiting_since')
        or redis.call('HGET', part, 'waiting_attempts') ~= tostring(attempts) then
      redis.call('HSET', part, 'waiting_since', ARGV[5], 'waiting_attempts', attempts)
    end
    local new = redis.call('XADD', stream, '*', 'job', ARGV[6], 'idx', ARGV[7])
    redis.call('HSET', part, 'status', 'queued', 'worker', '', 'entry', new)
  else
    redis.call('HSET', part, 'status', 'cancelled', 'worker', '')
  end
elseif op == 'fail' then
  redis.call('HSET', part, 'status', 'failed', 'error', ARGV[5])
  if ARGV[6] ~= '' then redis.call('HSET', part, 'report', ARGV[6]) end
  redis.call('HSETNX', job, 'error', ARGV[7])
  redis.call('HSETNX', job, 'finished', now)
  redis.call('XACK', stream, group, entry)
end
return state
"""

# KEYS: part, stream. ARGV: group, entry, job id, part index. An entry of a job
# the caller skips goes to the end of the stream, for another worker.
_REQUEUE = """
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
if redis.call('HGET', KEYS[1], 'entry') == ARGV[2] then
  local new = redis.call('XADD', KEYS[2], '*', 'job', ARGV[3], 'idx', ARGV[4])
  redis.call('HSET', KEYS[1], 'entry', new)
end
return 1
"""

# KEYS: job, then its parts. ARGV: now. Returns 0 when the job does not exist.
_CANCEL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'cancelled', '1')
redis.call('HSETNX', KEYS[1], 'finished', ARGV[1])
for i = 2, #KEYS do
  local st = redis.call('HGET', KEYS[i], 'status')
  if st == 'queued' or st == 'running' then redis.call('HSET', KEYS[i], 'status', 'cancelled') end
end
return 1
"""


def _redis() -> Any:
    try:
        import redis  # noqa: PLC0415 - an optional extra
        import redis.asyncio  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - redis is an optional extra
        raise QueueError("the Redis queue needs redis-py: pip install 'bulkpush[redis]'") from exc
    return redis


class RedisQueue:
    """A :class:`~bulkpush.worker.queue.JobQueue` in Redis (``redis://host:port/db``)."""

    def __init__(
        self, url: str, *, lease_ttl: float = DEFAULT_LEASE_TTL, prefix: str = "bulkpush:"
    ) -> None:
        redis = _redis()
        self.url = url
        self.lease_ttl = lease_ttl
        self.prefix = prefix
        self.stream = f"{prefix}parts"
        self._r = redis.asyncio.Redis.from_url(url, decode_responses=True)
        self._sync: Any = None
        self._take = self._r.register_script(_TAKE)
        self._op = self._r.register_script(_OP)
        self._cancel = self._r.register_script(_CANCEL)
        self._requeue = self._r.register_script(_REQUEUE)
        self._group_ready = False
        self._pacers: dict[tuple[str, float], Pacer] = {}
        self._errors = (redis.RedisError, OSError)

    def __repr__(self) -> str:
        return f"RedisQueue(prefix={self.prefix!r}, lease_ttl={self.lease_ttl})"

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _part_key(self, job_id: str, idx: int) -> str:
        return f"{self.prefix}part:{job_id}:{idx}"

    def _fail(self, exc: BaseException) -> QueueError:
        text = redact_urls(f"{type(exc).__name__}: {exc}")
        return QueueError(f"the Redis queue failed: {text}", retriable=True)

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._r.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except self._errors as exc:
            if "BUSYGROUP" not in str(exc):
                raise self._fail(exc) from exc
        self._group_ready = True

    # --- parts --------------------------------------------------------------------

    @staticmethod
    def _part(h: dict[str, str]) -> Part:
        try:
            return RedisQueue._parse_part(h)
        except (KeyError, ValueError, TypeError) as exc:
            raise QueueError(f"malformed part: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _parse_part(h: dict[str, str]) -> Part:
        data = orjson.loads(h["base"])
        data.update(
            status=h.get("status", "queued"),
            worker=h.get("worker") or None,
            attempts=int(h.get("attempts", 0)),
            offset=int(h.get("offset", data.get("offset", 0))),
            line=int(h.get("line", data.get("line", 1))),
            report=orjson.loads(h["report"]) if h.get("report") else None,
            error=h.get("error") or None,
            waiting_since=float(h["waiting_since"]) if h.get("waiting_since") else None,
            waiting_attempts=int(h.get("waiting_attempts", 0)),
        )
        return Part.from_json(data)

    async def submit(self, spec: JobSpec) -> str:
        check_target_kind(spec.target.kind)
        await self._ensure_group()
        job_id = new_job_id()
        parts = await asyncio.to_thread(plan_parts, job_id, spec)
        try:
            async with self._r.pipeline(transaction=True) as tx:
                tx.hset(
                    self._job_key(job_id),
                    mapping={
                        "spec": orjson.dumps(spec.to_json()).decode(),
                        "created": repr(time.time()),
                        "nparts": len(parts),
                        "done": 0,
                    },
                )
                tx.zadd(f"{self.prefix}jobs", {job_id: time.time()})
                for p in parts:
                    tx.hset(
                        self._part_key(job_id, p.index),
                        mapping={
                            "base": orjson.dumps(p.to_json()).decode(),
                            "status": "queued",
                            "attempts": 0,
                            "offset": p.offset,
                            "line": p.line,
                        },
                    )
                await tx.execute()
            for p in parts:
                entry = await self._r.xadd(self.stream, {"job": job_id, "idx": p.index})
                await self._r.hset(self._part_key(job_id, p.index), "entry", entry)
        except self._errors as exc:
            raise self._fail(exc) from exc
        return job_id

    async def lease(self, worker: str, *, skip: Collection[str] = ()) -> Lease | None:
        await self._ensure_group()
        requeued = 0
        try:
            for _ in range(64):  # skip entries of cancelled/failed/finished jobs
                entries = await self._reclaim(worker)
                if not entries:
                    got = await self._r.xreadgroup(
                        GROUP, worker, {self.stream: ">"}, count=1, block=200
                    )
                    if not got:
                        return None
                    entries = list(got[0][1])
                    if not entries:
                        return None
                entry_id, fields = entries[0]
                if not fields:
                    await self._r.xack(self.stream, GROUP, entry_id)
                    continue
                job_id, idx = fields["job"], int(fields["idx"])
                job_key, part_key = self._job_key(job_id), self._part_key(job_id, idx)
                if job_id in skip:
                    await self._requeue(
                        keys=[part_key, self.stream], args=[GROUP, entry_id, job_id, idx]
                    )
                    requeued += 1
                    if requeued >= _MAX_REQUEUED:
                        return None  # only skipped jobs are waiting: do not spin on them
                    continue
                if not await self._take(keys=[job_key, part_key], args=[worker, entry_id]):
                    await self._r.xack(self.stream, GROUP, entry_id)
                    continue
                h = await self._r.hgetall(part_key)
                try:
                    spec = JobSpec.from_stored(await self._r.hget(job_key, "spec") or "")
                    part = self._part(h)
                except QueueError as exc:
                    # A job this version cannot read fails alone, with the reason.
                    reason = str(exc)
                    await self._op(
                        keys=[job_key, part_key, self.stream],
                        args=["fail", worker, GROUP, entry_id, reason, "", f"part {idx}: {reason}"],
                    )
                    continue
                return Lease(part, spec, worker, entry_id)
        except self._errors as exc:
            raise self._fail(exc) from exc
        return None

    async def _reclaim(self, worker: str) -> list[Any]:
        """One pending entry idle longer than the lease TTL (its worker died), claimed; or none.

        ``XAUTOCLAIM`` looks at ``10 × COUNT`` pending entries a call and
        returns a cursor: it is followed to the end, or a dead worker's part
        behind ten live ones would never be reclaimed.
        """
        start = "0-0"
        while True:
            reply = await self._r.xautoclaim(
                self.stream,
                GROUP,
                worker,
                min_idle_time=int(self.lease_ttl * 1000),
                start_id=start,
                count=1,
            )
            cursor, claimed = reply[0], list(reply[1])
            if claimed or cursor in ("0-0", b"0-0"):
                return claimed
            start = cursor

    async def _call(self, lease: Lease, op: str, *args: Any) -> str:
        p = lease.part
        try:
            result = await self._op(
                keys=[self._job_key(p.job_id), self._part_key(p.job_id, p.index), self.stream],
                args=[op, lease.worker, GROUP, lease.entry, *args],
            )
        except self._errors as exc:
            raise self._fail(exc) from exc
        return str(result)

    async def heartbeat(self, lease: Lease) -> LeaseState:
        return _state(await self._call(lease, "beat"))

    async def checkpoint(
        self, lease: Lease, *, offset: int, line: int, report: dict[str, Any]
    ) -> LeaseState:
        return _state(await self._call(lease, "cp", offset, line, orjson.dumps(report).decode()))

    async def complete(self, lease: Lease, report: dict[str, Any]) -> bool:
        end = lease.part.end if lease.part.end is not None else lease.part.offset
        result = await self._call(lease, "done", orjson.dumps(report).decode(), end)
        return result == "finished"

    async def release(self, lease: Lease) -> None:
        await self._call(lease, "release", lease.part.job_id, lease.part.index)

    async def defer(self, lease: Lease, *, now: float) -> None:
        await self._call(lease, "defer", repr(now), lease.part.job_id, lease.part.index)

    async def fail(self, lease: Lease, error: str, report: dict[str, Any] | None = None) -> None:
        message = f"part {lease.part.index} ({lease.part.source}): {error}"
        body = orjson.dumps(report).decode() if report is not None else ""
        await self._call(lease, "fail", error, body, message)

    async def cancel(self, job_id: str) -> bool:
        try:
            nparts = await self._r.hget(self._job_key(job_id), "nparts")
            if nparts is None:
                return False
            keys = [self._job_key(job_id)] + [self._part_key(job_id, i) for i in range(int(nparts))]
            return bool(await self._cancel(keys=keys, args=[repr(time.time())]))
        except self._errors as exc:
            raise self._fail(exc) from exc

    # --- views --------------------------------------------------------------------

    async def get(self, job_id: str) -> JobView | None:
        try:
            h = await self._r.hgetall(self._job_key(job_id))
            if not h:
                return None
            # The job and its parts read at one instant (MULTI/EXEC): a part's
            # failure and the job's error are written by one script, and a view
            # must not show the one without the other.
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._job_key(job_id))
                for i in range(int(h["nparts"])):
                    pipe.hgetall(self._part_key(job_id, i))
                h, *rows = await pipe.execute()
        except self._errors as exc:
            raise self._fail(exc) from exc
        if not h:
            return None  # removed in between
        parts = []
        for row in rows:
            with contextlib.suppress(QueueError):
                parts.append(self._part(row))
        spec, unreadable = JobSpec.for_view(h.get("spec", ""))
        error = h.get("error") or None
        if error is None and unreadable is not None:
            error = f"job spec: {unreadable}"
        return JobView(
            id=job_id,
            spec=spec,
            status=job_status(h.get("cancelled") == "1", h.get("error") or None, parts),
            created=float(h["created"]),
            parts=tuple(parts),
            error=error,
            finished=float(h["finished"]) if h.get("finished") else None,
        )

    async def list_jobs(self, limit: int = 100) -> list[JobView]:
        try:
            ids = await self._r.zrevrange(f"{self.prefix}jobs", 0, limit - 1)
        except self._errors as exc:
            raise self._fail(exc) from exc
        views = [await self.get(i) for i in ids]
        return [v for v in views if v is not None]

    async def depth(self) -> int:
        total = 0
        for view in await self.list_jobs(200):
            if view.status in ("queued", "running"):
                total += sum(1 for p in view.parts if p.status == "queued")
        return total

    def shared_pacer(self, quota: Quota, rate: float) -> Pacer:
        key = (quota.key, rate)
        pacer = self._pacers.get(key)
        if pacer is None:
            if self._sync is None:
                self._sync = _redis().Redis.from_url(self.url)
            store = RedisSlots(self._sync, prefix=self.prefix)
            pacer = self._pacers[key] = SharedPacer(
                rate, store=store, key=quota.key, windows=quota.windows
            )
        return pacer

    async def aclose(self) -> None:
        await self._r.aclose()
        if self._sync is not None:
            self._sync.close()


def _state(value: str) -> LeaseState:
    if value == "ok":
        return "ok"
    if value == "cancelled":
        return "cancelled"
    return "lost"
