"""The worker loop: lease a part, push its byte range, checkpoint, repeat until stopped.

A part is pushed by the same :class:`~bulkpush.Engine` and
:class:`~bulkpush.PushOptions` the ``push`` command uses, to the target its
job's kind names (:data:`bulkpush.targets.KINDS`). Its
checkpoint is a *watermark*: the smallest source offset such that every
record before it is accounted (accepted or rejected). Chunks finish out of
order, so :class:`Watermark` keeps the records in read order and moves only
over a contiguous accounted prefix; the part's report is built from those
records only (the *committed* report), so a resumed part adds up exactly.
Only the records above the watermark when a worker dies — the requests in
flight and those answered after the oldest one in flight — are sent twice
(upserts by id: harmless).

Stop with :meth:`Worker.stop`: the worker takes no new part, the part in
hand stops reading (:meth:`~bulkpush.pipeline.Pipeline.stop_reading`), what
was read is sent, the checkpoint is written and the part is given back to
the queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import glob
import itertools
import logging
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, cast

from bulkpush._engine import Engine, PacerFactory
from bulkpush._http import HttpTransport, TransportOptions
from bulkpush._options import PushOptions
from bulkpush._quota import Pacer, Quota
from bulkpush.errors import BulkpushError, ConfigError, QueueError, RunStopped
from bulkpush.pipeline import Event, Pipeline, Source
from bulkpush.records import Outcome, Record, Rejection
from bulkpush.report import Report, merge_reports, redact, write_json_atomic
from bulkpush.sources import FileRange
from bulkpush.targets import target_kind
from bulkpush.worker.limiter import SHARED_RATE_SAFETY
from bulkpush.worker.metrics import Metrics
from bulkpush.worker.queue import JobQueue, Lease, LeaseState, new_worker_id

__all__ = ["Watermark", "Worker", "merge_rejects", "rejects_part_path"]

log = logging.getLogger("bulkpush.worker")


class Watermark:
    """The checkpoint of a part: every record before :attr:`offset` is accounted.

    :meth:`seen` is called (from the reader thread, as the pipeline's
    ``on_record`` hook) with each record in read order, :meth:`account` (on
    the event loop) with each outcome and client rejection. Records are
    matched by identity, not by offset: the events carry the very
    :class:`Record` objects that were seen, and a JSON array's records all
    have offset -1. ``committed`` is the report of the records below the
    watermark only. After record ``r`` the watermark is ``r.offset + 1``,
    line ``r.line + 1``: a range read from there starts at the next line.
    """

    def __init__(self, *, offset: int, line: int, committed: Report) -> None:
        self.offset = offset
        self.line = line
        self.committed = committed
        self._read: collections.deque[Record] = collections.deque()
        self._done: set[int] = set()
        self._pending: dict[int, list[Event]] = {}

    def __repr__(self) -> str:
        return f"Watermark(offset={self.offset}, line={self.line}, open={len(self._read)})"

    def seen(self, record: Record) -> None:
        self._read.append(record)

    def account(self, event: Event) -> bool:
        """Take one event; True when the watermark moved."""
        # id() is a safe key: a record stays alive in _read until it is popped.
        if isinstance(event, Rejection):
            key = id(event.record)
            self._done.add(key)
        else:
            records = event.chunk.records
            if event.not_sent or not records:
                return False  # not delivered: the watermark stays below it
            key = id(records[-1])
            self._done.update(map(id, records))
        self._pending.setdefault(key, []).append(event)
        moved = False
        read, done = self._read, self._done
        while read and id(read[0]) in done:
            r = read.popleft()
            done.discard(id(r))
            for ev in self._pending.pop(id(r), ()):
                self._commit(ev)
            self.offset, self.line = r.offset + 1, r.line + 1
            moved = True
        return moved

    def _commit(self, event: Event) -> None:
        report = self.committed
        if isinstance(event, Rejection):
            report.add_read(1, len(event.record.raw) + 1)
            report.add_rejection(event)
        else:
            records = event.chunk.records
            report.add_read(len(records), sum(len(r.raw) + 1 for r in records))
            report.add_outcome(event)


def rejects_part_path(rejects: str, part: int, attempt: int, first_line: int) -> str:
    """The rejects file of one attempt at a part: ``rejects.partNNNNN-A.lineL``.

    ``first_line`` is the line the attempt starts reading at (its part's
    checkpoint), which :func:`merge_rejects` needs to drop what the attempt
    before it wrote twice.
    """
    return f"{rejects}.part{part:05d}-{attempt}.line{first_line}"


# The names rejects_part_path makes, ``.tmp`` while the attempt writes (or
# after it died); names without ``.lineL`` were made before it was recorded.
_PART_FILE = re.compile(r"\.part(\d+)-(\d+)(?:\.line(\d+))?(?:\.tmp)?")
_LINE_KEY = b',"line":'


def _line_of(line: bytes) -> int | None:
    """The source line a rejects line names: its last key (see ``report.rejects_line``)."""
    at = line.rfind(_LINE_KEY)
    try:
        return int(line[at + len(_LINE_KEY) :].rstrip(b"}\r\n")) if at >= 0 else None
    except ValueError:
        return None


def _complete_lines(name: str) -> Iterator[bytes]:
    """A rejects file's lines, but for the half-written last line of a killed worker."""
    with open(name, "rb") as fh:
        for line in fh:
            if line.endswith(b"\n"):
                yield line


def merge_rejects(path: str) -> int:
    """Merge the parts' rejects files (``path.part*``) into ``path``; return its line count.

    Files go in part order, and a part's attempts in the order they ran. An
    attempt that did not finish its part left records above its checkpoint
    to the next attempt, which read them again from its first line (in the
    file's name) and wrote them again if they were still rejected: of each
    attempt but the last, only the lines below the next attempt's first line
    are kept, so a product rejected twice by a resent window is written
    once, with the verdict of the attempt that committed it. A whole-file
    part restarts at line 1, so only its last attempt's lines are kept. The
    half-written last line of a killed worker's file is dropped.

    Memory does not grow with the number of rejects: files are streamed, and
    a line is placed by the position it names, not compared with the others
    (but for the parts of a job queued before positions were recorded in the
    names, whose lines are de-duplicated as wholes). Names that are not part
    files are left alone. Written atomically; the part files are removed.
    """
    found: list[tuple[int, int, int | None, str]] = []
    for name in glob.glob(glob.escape(path) + ".part*"):
        m = _PART_FILE.fullmatch(name, len(path))
        if m is not None:
            first = int(m[3]) if m[3] is not None else None
            found.append((int(m[1]), int(m[2]), first, name))
    found.sort()
    tmp = path + ".merging"
    count = 0
    with open(tmp, "wb") as out:
        for _, group in itertools.groupby(found, key=lambda f: f[0]):
            attempts = list(group)
            legacy = any(first is None for _, _, first, _ in attempts[1:])
            seen: set[bytes] = set()
            for i, (_, _, _, name) in enumerate(attempts):
                below = attempts[i + 1][2] if i + 1 < len(attempts) else None
                for line in _complete_lines(name):
                    if legacy:
                        if line in seen:
                            continue
                        seen.add(line)
                    elif below is not None and (n := _line_of(line)) is not None and n >= below:
                        continue
                    out.write(line)
                    count += 1
    os.replace(tmp, path)
    for *_, name in found:
        with contextlib.suppress(OSError):
            os.remove(name)
    return count


@dataclass(slots=True)
class _Run:
    """One part in hand.

    ``dirty``: the watermark moved (the keeper writes it); ``stop``: leave the
    part (its lease is lost or its job cancelled, or the worker stops a
    whole-file part); ``ended``: the part's pipeline is over, the keeper must
    return (it is told, never cancelled: see :meth:`Worker._keep`).
    """

    lease: Lease
    watermark: Watermark
    prior: dict[str, Any] | None
    pipeline: Pipeline | None = None
    state: LeaseState = "ok"
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def report(self) -> dict[str, Any]:
        current = self.watermark.committed.to_dict()
        if not self.prior:
            return current
        merged = merge_reports([self.prior, current])
        merged.pop("parts", None)
        return merged


class Worker:
    """Runs parts from ``queue`` until :meth:`stop`.

    ``environ`` is where tokens are read (default ``os.environ``);
    ``poll_s`` how long to wait when the queue is empty.
    """

    def __init__(
        self,
        queue: JobQueue,
        *,
        worker_id: str | None = None,
        poll_s: float = 0.5,
        metrics: Metrics | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.queue = queue
        self.id = worker_id or new_worker_id()
        self.poll_s = poll_s
        self.metrics = metrics or Metrics()
        self.environ = environ if environ is not None else dict(os.environ)
        self._stopping = asyncio.Event()
        self._current: _Run | None = None

    def __repr__(self) -> str:
        part = self._current.lease.part.key if self._current else None
        return f"Worker(id={self.id!r}, part={part!r}, stopping={self._stopping.is_set()})"

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Take no new part; the part in hand stops reading, sends what it read, checkpoints."""
        self._stopping.set()
        run = self._current
        if run is not None and run.pipeline is not None:
            run.pipeline.stop_reading()

    async def run(self) -> None:
        """Lease and push parts until stopped."""
        log.info("worker %s: started on %s", self.id, self.queue.url)
        while not self._stopping.is_set():
            try:
                self.metrics.set_depth(await self.queue.depth())
                lease = await self.queue.lease(self.id)
            except QueueError as exc:
                log.warning("worker %s: queue unavailable: %s", self.id, exc)
                lease = None
            if lease is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_s):
                        await self._stopping.wait()
                continue
            await self.run_part(lease)
        log.info("worker %s: stopped", self.id)

    async def run_part(self, lease: Lease) -> None:
        """Push one leased part; end it done, failed, or given back. Never raises a part's error."""
        part, spec = lease.part, lease.spec
        stream = spec.target.stream
        self.metrics.part_started(stream)
        status = "released"
        try:
            status = await self._push(lease)
        except QueueError as exc:
            log.warning("worker %s: part %s: queue failed: %s", self.id, part.key, exc)
        finally:
            self._current = None
            self.metrics.part_ended(stream, status)

    def _committed(self, lease: Lease) -> Report:
        return Report(stream=lease.spec.target.stream, target=lease.spec.target.api_url)

    async def _push(self, lease: Lease) -> str:
        part, spec = lease.part, lease.spec
        try:
            # Queues refuse unknown kinds at submit; a spec queued before a kind
            # was dropped (or written by hand) fails its job here, alone.
            target_kind(spec.target.kind)
        except ConfigError as exc:
            await self.queue.fail(lease, str(exc))
            return "failed"
        token = self.environ.get(spec.target.token_env, "")
        if not token:
            await self.queue.fail(
                lease,
                f"environment variable {spec.target.token_env} is not set on worker {self.id}",
            )
            return "failed"
        # A whole-file part (compressed, CSV, JSON) cannot resume mid-file: it restarts.
        ranged = part.end is not None
        prior = part.report if ranged and part.offset > part.start else None
        run = _Run(
            lease=lease,
            watermark=Watermark(
                offset=part.offset if ranged else 0,
                line=part.line if ranged else 1,
                committed=self._committed(lease),
            ),
            prior=prior,
        )
        self._current = run
        rejects = None
        if spec.options.rejects:
            rejects = rejects_part_path(
                spec.options.rejects, part.index, part.attempts, run.watermark.line
            )
        options = spec.options.push_options(
            stream_type=spec.target.stream_type, rejects_path=rejects
        )
        try:
            outcome = await self._drive(run, token, options)
        except BulkpushError as exc:
            cause = exc.cause if isinstance(exc, RunStopped) and exc.cause else exc
            message = redact(str(cause))
            log.warning("worker %s: part %s failed: %s", self.id, part.key, message)
            await self.queue.fail(lease, message, run.report())
            return "failed"
        if outcome == "done":
            finished = await self.queue.complete(lease, run.report())
            if finished:
                await self._finish_job(lease)
            return "done"
        if outcome == "released":
            if ranged:
                await self.queue.checkpoint(
                    lease, offset=run.watermark.offset, line=run.watermark.line, report=run.report()
                )
            await self.queue.release(lease)
            return "released"
        return outcome  # lost / cancelled: nothing more to write

    async def _finish_job(self, lease: Lease) -> None:
        """The job's last part is done: merge the rejects files, write the report file."""
        options = lease.spec.options
        try:
            if options.rejects:
                await asyncio.to_thread(merge_rejects, options.rejects)
            if options.report:
                view = await self.queue.get(lease.part.job_id)
                if view is not None:
                    write_json_atomic(options.report, view.report())
        except OSError as exc:
            log.warning("worker %s: job %s: %s", self.id, lease.part.job_id, exc)

    def _pacer_factory(self, api_url: str) -> PacerFactory:
        def make(quota: Quota, rate: float) -> Pacer:
            # Workers together aim at SHARED_RATE_SAFETY of the quota's published
            # rate unless the job asked for a rate of its own.
            if rate == quota.rate:
                rate = replace(quota, safety=SHARED_RATE_SAFETY).rate
            return self.queue.shared_pacer(replace(quota, key=f"{api_url}#{quota.key}"), rate)

        return make

    async def _drive(self, run: _Run, token: str, options: PushOptions) -> str:
        lease = run.lease
        part, target = lease.part, lease.spec.target
        source: Source = part.source
        if part.end is not None:
            source = FileRange(part.source, start=part.offset, end=part.end, first_line=part.line)
        # Any kind of target: its auth headers and its Target from the registry.
        kind = target_kind(target.kind)
        engine = Engine(
            HttpTransport(
                target.api_url,
                auth_headers=kind.auth(token),
                options=TransportOptions(
                    verify_tls=not target.insecure,
                    ca_bundle=target.ca_bundle,
                    integration=target.integration,
                ),
            ),
            pacer_factory=self._pacer_factory(target.api_url),
        )
        async with engine:
            pipeline = await engine.open_push(
                kind.target(target.stream),
                source,
                options=options,
                on_record=run.watermark.seen,
            )
            run.pipeline = pipeline
            if self._stopping.is_set():
                pipeline.stop_reading()
            keeper = asyncio.create_task(self._keep(run))
            try:
                events = cast(AsyncGenerator[Event, None], pipeline.events())
                async with contextlib.aclosing(events):
                    await self._consume(run, events)
            finally:
                run.ended.set()
                # The cancel cuts a slow queue call short; when it is lost
                # (see _keep), ``ended`` still makes the keeper return.
                keeper.cancel()
                await asyncio.wait([keeper])
            if not keeper.cancelled() and (error := keeper.exception()) is not None:
                raise error
        if run.state != "ok":
            if run.state == "cancelled":
                await self.queue.release(lease)
            return run.state
        if pipeline.reading_stopped:
            return "released"
        if part.end is None and self._stopping.is_set() and run.stop.is_set():
            return "released"
        return "done"

    async def _consume(self, run: _Run, events: AsyncIterator[Event]) -> None:
        stream = run.lease.spec.target.stream
        whole_file = run.lease.part.end is None
        async for event in events:
            if isinstance(event, Outcome):
                self.metrics.outcome(stream, event)
            else:
                self.metrics.rejected(stream)
            if run.watermark.account(event):
                run.dirty.set()
            if run.stop.is_set() or (whole_file and self._stopping.is_set()):
                run.stop.set()
                return

    async def _keep(self, run: _Run) -> None:
        """Write the checkpoint whenever it moved; heartbeat when it did not; end with the part.

        The part's end cancels it *and* sets ``run.ended``, checked after
        every queue call: a cancellation can be lost inside the queue client
        (redis-py sends with ``asyncio.wait_for``, which on Python 3.11 drops
        a cancel that lands as the send completes), and a keeper that lost
        it used to heartbeat its finished part forever: the part stayed
        ``running`` with every record accounted, and the job never ended.
        A queue error is logged and retried at the next beat: the lease
        outlives a short outage, and a lease lost meanwhile is reported by
        the next call.
        """
        lease, queue = run.lease, self.queue
        beat = max(0.05, queue.lease_ttl / 3)
        ranged = lease.part.end is not None
        while not run.ended.is_set():
            try:
                async with asyncio.timeout(beat):
                    await run.dirty.wait()
            except TimeoutError:
                moved = False
            else:
                if run.ended.is_set():
                    return
                run.dirty.clear()
                moved = ranged
            try:
                if moved:
                    wm = run.watermark
                    state = await queue.checkpoint(
                        lease, offset=wm.offset, line=wm.line, report=run.report()
                    )
                else:
                    state = await queue.heartbeat(lease)
            except QueueError as exc:
                log.warning("worker %s: part %s: queue failed: %s", self.id, lease.part.key, exc)
                if moved:
                    run.dirty.set()  # write it at the next try
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(beat):
                        await run.ended.wait()
                continue
            if state != "ok":
                run.state = state
                run.stop.set()
                if run.pipeline is not None:
                    run.pipeline.stop_reading()
                return
