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
hand stops reading (:meth:`~bulkpush._pipeline.Pipeline.stop_reading`), what
was read is sent, the checkpoint is written and the part is given back to
the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

from bulkpush._engine import Engine, PacerFactory
from bulkpush._http import HttpTransport, TransportOptions
from bulkpush._options import PushOptions
from bulkpush._pipeline import Event, Pipeline, Source
from bulkpush._quota import Pacer, Quota
from bulkpush._records import Outcome
from bulkpush.errors import BulkpushError, ConfigError, QueueError, RunStopped
from bulkpush.report import Report, merge_reports, redact, write_json_atomic
from bulkpush.sources import FileRange
from bulkpush.targets import target_kind
from bulkpush.worker._urls import redact_url, redact_urls
from bulkpush.worker.allow import Admitted, Allowances
from bulkpush.worker.limiter import SHARED_RATE_SAFETY, STORE_OUTAGE_S
from bulkpush.worker.metrics import Metrics
from bulkpush.worker.queue import JobQueue, Lease, LeaseState, new_worker_id
from bulkpush.worker.rejects import check_outputs, merge_rejects, rejects_part_path
from bulkpush.worker.watermark import Watermark

__all__ = ["DEFAULT_TOKEN_WAIT_S", "Watermark", "Worker", "merge_rejects", "rejects_part_path"]

log = logging.getLogger("bulkpush.worker")
T = TypeVar("T")

# How long a part whose token is not set on the workers that take it waits
# for one that has it before its job fails (``bulkpush worker --token-wait``).
DEFAULT_TOKEN_WAIT_S = 300.0
# A worker without a job's token skips that job for this long, doubling.
_TOKEN_BACKOFF_FIRST_S = 1.0
_TOKEN_BACKOFF_CAP_S = 30.0
# Backoff while the queue is out of reach: jittered, doubling up to the cap.
_RETRY_FIRST_S = 0.1
_RETRY_CAP_S = 5.0


def _backoff(delay: float) -> float:
    """The next backoff after ``delay``, jittered: half to all of twice it, capped."""
    return min(_RETRY_CAP_S, random.uniform(delay, 2 * delay))


def _outage(exc: BaseException) -> bool:
    """True when ``exc`` (or the cause of the run it stopped) is the queue out of reach."""
    if isinstance(exc, RunStopped) and exc.cause is not None:
        exc = exc.cause
    return isinstance(exc, QueueError) and exc.retriable


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
    ``poll_s`` how long to wait when the queue is empty. The queue out of
    reach is an outage, not a failure: the loop backs off (one warning per
    outage), a part's last queue calls are retried for up to ``outage_s``
    seconds, and a part whose push the outage stopped is given back at its
    checkpoint (or, if the queue stays away, left to be reclaimed when its
    lease runs out). A part whose job's token variable is not set here is
    left to a worker that has it, and fails once it has waited
    ``token_wait_s`` seconds without one taking it.

    ``allow`` is what its jobs may use (:class:`~bulkpush.worker.allow.Allowances`;
    default: the least, on this queue); a job asking for more fails, alone,
    before its token is read or anything is sent, read or written.
    """

    def __init__(
        self,
        queue: JobQueue,
        *,
        worker_id: str | None = None,
        poll_s: float = 0.5,
        metrics: Metrics | None = None,
        environ: dict[str, str] | None = None,
        outage_s: float = STORE_OUTAGE_S,
        token_wait_s: float = DEFAULT_TOKEN_WAIT_S,
        allow: Allowances | None = None,
    ) -> None:
        self.queue = queue
        self.id = worker_id or new_worker_id()
        self.poll_s = poll_s
        self.metrics = metrics or Metrics()
        self.environ = environ if environ is not None else dict(os.environ)
        self.outage_s = outage_s
        self.token_wait_s = token_wait_s
        self.allow = (allow or Allowances()).for_queue(queue.url)
        # Jobs whose token is not set here: skipped until (monotonic), and the backoff.
        self._token_backoff: dict[str, tuple[float, float]] = {}
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

    async def _idle(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the worker is stopped meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def run(self) -> None:
        """Lease and push parts until stopped."""
        log.info("worker %s: started on %s", self.id, redact_url(self.queue.url))
        log.info("worker %s: %s", self.id, self.allow.summary())
        backoff: float | None = None  # set while the queue is out of reach
        while not self._stopping.is_set():
            try:
                self.metrics.set_depth(await self.queue.depth())
                lease = await self.queue.lease(self.id, skip=self._skipped_jobs())
            except QueueError as exc:
                if backoff is None:
                    log.warning(
                        "worker %s: queue unavailable, retrying with backoff: %s", self.id, exc
                    )
                    backoff = _RETRY_FIRST_S
                backoff = _backoff(backoff)
                await self._idle(backoff)
                continue
            if backoff is not None:
                log.warning("worker %s: queue available again", self.id)
                backoff = None
            if lease is None:
                await self._idle(self.poll_s)
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
            log.warning(
                "worker %s: part %s: queue failed, the part is left to be reclaimed: %s",
                self.id,
                part.key,
                exc,
            )
        except Exception as exc:
            # A bug or a job this version cannot run: that job fails, alone.
            log.exception("worker %s: part %s: unexpected error", self.id, part.key)
            status = "failed"
            reason = _reason(exc)
            with contextlib.suppress(QueueError):
                await self._retry(lambda: self.queue.fail(lease, reason))
        finally:
            self._current = None
            self.metrics.part_ended(stream, status)

    async def _retry(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` retried with backoff while the queue is out of reach, up to ``outage_s``."""
        deadline = time.monotonic() + self.outage_s
        delay = _RETRY_FIRST_S
        while True:
            try:
                return await call()
            except QueueError as exc:
                if not exc.retriable or time.monotonic() + delay > deadline:
                    raise
            delay = _backoff(delay)
            await asyncio.sleep(delay)

    async def _without_token(self, lease: Lease) -> str:
        """Leave a part whose token is not set here to a worker that has it; fail it after a while.

        The part is deferred (given back, not counted as an attempt) and
        its job skipped by this worker for a backoff that doubles up to
        :data:`_TOKEN_BACKOFF_CAP_S`. Once the part has waited ``token_wait_s``
        without any worker taking it, the job fails with the reason.
        """
        part, env = lease.part, lease.spec.target.token_env
        now = time.time()
        waited = part.token_wait(now)
        if waited >= self.token_wait_s:
            reason = (
                f"environment variable {env} is not set on the workers that took the job "
                f"for {waited:.0f} s (--token-wait {self.token_wait_s:g}; last: worker {self.id})"
            )
            log.warning("worker %s: part %s failed: %s", self.id, part.key, reason)
            await self._retry(lambda: self.queue.fail(lease, reason))
            return "failed"
        first = part.job_id not in self._token_backoff
        if first:
            log.warning(
                "worker %s: job %s needs $%s, which is not set here: left for a worker that "
                "has it (it fails if none takes it within %g s)",
                self.id,
                part.job_id,
                env,
                self.token_wait_s,
            )
        _, delay = self._token_backoff.get(part.job_id, (0.0, _TOKEN_BACKOFF_FIRST_S / 2))
        delay = min(delay * 2, _TOKEN_BACKOFF_CAP_S, max(self.token_wait_s / 4, 0.05))
        self._token_backoff[part.job_id] = (time.monotonic() + delay, delay)
        await self._retry(lambda: self.queue.defer(lease, now=now))
        return "deferred"

    def _skipped_jobs(self) -> set[str]:
        now = time.monotonic()
        return {job for job, (until, _) in self._token_backoff.items() if until > now}

    async def _give_back(self, run: _Run) -> None:
        """Write the part's checkpoint and give it back to the queue (retried through an outage)."""
        lease, wm = run.lease, run.watermark
        if lease.part.end is not None:
            report = run.report()
            await self._retry(
                lambda: self.queue.checkpoint(lease, offset=wm.offset, line=wm.line, report=report)
            )
        await self._retry(lambda: self.queue.release(lease))

    def _committed(self, lease: Lease) -> Report:
        target = lease.spec.target
        return Report(stream=target.stream, target=redact_url(target.api_url))

    async def _push(self, lease: Lease) -> str:
        part, spec = lease.part, lease.spec
        try:
            # Queues refuse unknown kinds at submit; a spec queued before a kind
            # was dropped (or written by hand) fails its job here, alone.
            target_kind(spec.target.kind)
        except ConfigError as exc:
            await self.queue.fail(lease, str(exc))
            return "failed"
        # The operator's allowances, before the token is read or a file touched.
        try:
            admitted = await asyncio.to_thread(self.allow.admit, spec, source=part.source)
        except ConfigError as exc:
            refused = str(exc)
            log.warning("worker %s: part %s failed: %s", self.id, part.key, refused)
            await self._retry(lambda: self.queue.fail(lease, refused))
            return "failed"
        token = self.environ.get(spec.target.token_env, "")
        if not token:
            return await self._without_token(lease)
        self._token_backoff.pop(part.job_id, None)
        # The files the job writes at its end: checked before anything is sent.
        reason = await asyncio.to_thread(
            check_outputs, rejects=admitted.rejects, report=admitted.report
        )
        if reason:
            log.warning("worker %s: part %s failed: %s", self.id, part.key, reason)
            await self._retry(lambda: self.queue.fail(lease, reason))
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
        if admitted.rejects:
            rejects = rejects_part_path(
                admitted.rejects, part.index, part.attempts, run.watermark.line
            )
        options = spec.options.push_options(
            stream_type=spec.target.stream_type, rejects_path=rejects
        )
        try:
            outcome = await self._drive(run, token, options, admitted)
        except BulkpushError as exc:
            if _outage(exc):
                log.warning(
                    "worker %s: part %s: the queue is out of reach, giving the part back "
                    "at its checkpoint: %s",
                    self.id,
                    part.key,
                    exc,
                )
                await self._give_back(run)
                return "released"
            message = _reason(exc)
            log.warning("worker %s: part %s failed: %s", self.id, part.key, message)
            report = run.report()
            await self._retry(lambda: self.queue.fail(lease, message, report))
            return "failed"
        if outcome == "done":
            report = run.report()
            if await self._retry(lambda: self.queue.complete(lease, report)):
                await self._finish_job(lease, admitted)
            return "done"
        if outcome == "released":
            await self._give_back(run)
            return "released"
        return outcome  # lost / cancelled: nothing more to write

    async def _finish_job(self, lease: Lease, admitted: Admitted) -> None:
        """The job's last part is done: merge the rejects files, write the report file."""
        try:
            if admitted.rejects:
                await asyncio.to_thread(merge_rejects, admitted.rejects)
            if admitted.report:
                view = await self.queue.get(lease.part.job_id)
                if view is not None:
                    write_json_atomic(admitted.report, view.report())
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

    async def _drive(self, run: _Run, token: str, options: PushOptions, admitted: Admitted) -> str:
        lease = run.lease
        part, target = lease.part, lease.spec.target
        source: Source = admitted.source
        if part.end is not None:
            source = FileRange(
                admitted.source, start=part.offset, end=part.end, first_line=part.line
            )
        # Any kind of target: its auth headers and its Target from the registry.
        kind = target_kind(target.kind)
        engine = Engine(
            HttpTransport(
                target.api_url,
                auth_headers=kind.auth(token),
                options=TransportOptions(
                    verify_tls=not target.insecure,
                    ca_bundle=admitted.ca_bundle,
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


def _reason(exc: BaseException) -> str:
    """Why a part failed, for ``jobs show``: the stopping cause, credentials masked."""
    if isinstance(exc, RunStopped) and exc.cause is not None:
        exc = exc.cause
    text = str(exc) if isinstance(exc, BulkpushError) else f"{type(exc).__name__}: {exc}"
    return redact(redact_urls(text))
