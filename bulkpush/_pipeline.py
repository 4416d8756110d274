"""The bounded pipeline that joins the stages.

::

    sources ─► validate ─► chunk ─► encode      (one worker thread, sequential)
                                      │  queue (bounded)
                                      ▼
                               compress × N     (thread pool, off the event loop)
                                      │  queue (bounded)
                                      ▼
                  byte budget ─► send × adaptive (event loop: pacing, retries)
                                      │
                               events ─► report, rejects file, progress, caller

Reading is back-pressured by sending: the queues are small and the byte
budget caps the chunks held in flight, so memory does not grow with the
catalog. The event loop does I/O only; reading, validation, chunking and
encoding run in one worker thread (a sequential generator), compression in a
thread pool (ISA-L and zlib release the GIL).

Every record read ends in exactly one bucket of the :class:`Report`:
``accepted``, ``rejected`` or ``not_sent``, also when the run stops early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

from bulkpush._compression import Compressor
from bulkpush._concurrency import ByteBudget
from bulkpush._progress import Progress, make_progress
from bulkpush._reader import PipelineSettings, Reader, RecordHook, Source
from bulkpush._records import Chunk, Outcome, Rejection
from bulkpush._validation import Validator
from bulkpush.errors import BulkpushError, ChunkFailed, Interrupted, RunStopped, SourceError
from bulkpush.report import RejectsWriter, Report

__all__ = [
    "Event",
    "Pipeline",
    "PipelineSettings",
    "RecordHook",
    "Sender",
    "Source",
]

Event = Outcome | Rejection

_log = logging.getLogger("bulkpush.pipeline")


class Sender(Protocol):
    """What the pipeline needs of a target: send one chunk's payload.

    ``send`` returns one outcome per request that carried the chunk's
    products (a 413 split makes two); raises :class:`ChunkFailed` when the
    run must stop. After ``halt`` no new request leaves: a chunk that has not
    been sent yet comes back with its products ``not_sent``.
    """

    async def send(self, chunk: Chunk, payload: bytes) -> list[Outcome]: ...

    def halt(self) -> None: ...


class Pipeline:
    """One push run: reads ``sources`` and delivers every chunk through ``sender``.

    Use :meth:`events` for the streaming form (each chunk's :class:`Outcome`
    and each client-side :class:`Rejection` as they happen) or :meth:`run`
    for the final :class:`Report`. Either raises :class:`RunStopped` (with
    the report attached) when the run stopped before every record was sent.
    A source that fails mid-way (a truncated gzip file) stops reading; the
    records read before the failure are still sent, then the run raises
    :class:`RunStopped` caused by the :class:`SourceError`. An unexpected
    exception while reading (a bug, never a product's content) does the same,
    as a ``SourceError`` saying ``reading SOURCE failed unexpectedly (Type:
    message)``; one from validating a product rejects that product alone
    ("The product could not be checked: an unexpected Type").

    ``on_record``, when given, is called with every record read, in read
    order, before it is validated — also with the record of a
    :class:`Rejection` the source itself made (a broken CSV row) — so the
    same :class:`Record` objects later arrive in the events. It runs in the
    reader thread: keep it short and thread-safe; an exception from it stops
    the run like an unexpected error while reading. :meth:`stop_reading`
    ends a run early but cleanly (a graceful drain).
    """

    def __init__(
        self,
        sources: Iterable[Source],
        *,
        sender: Sender,
        compressor: Compressor,
        validator: Validator,
        settings: PipelineSettings,
        report: Report,
        rejects_path: str | os.PathLike[str] | None = None,
        progress: Progress | None = None,
        total_bytes: int | None = None,
        on_record: RecordHook | None = None,
    ) -> None:
        self.sources = sources
        self.sender = sender
        self.compressor = compressor
        self.validator = validator
        self.settings = settings
        self.report = report
        self.rejects_path = rejects_path
        self.progress = progress or make_progress(enabled=False)
        self.total_bytes = total_bytes
        self.on_record = on_record
        self.stop_cause: BulkpushError | None = None
        self._stop_reading = threading.Event()
        # interrupt(): no new request starts; after the grace period the run stops.
        self._interrupted: Interrupted | None = None
        self._fail_now: Callable[[BulkpushError], None] | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._reader: Reader | None = None
        self._source_error: SourceError | None = None

    def __repr__(self) -> str:
        return f"Pipeline(read={self.report.read}, stopped={self.stop_cause is not None})"

    def stop_reading(self) -> None:
        """Read no further: what was read is still chunked, sent and accounted.

        The run then ends normally (no :class:`RunStopped`): every record read
        is ``accepted`` or ``rejected``, and nothing is counted ``not_sent``
        for the rest of the sources, which were never read. Reading stops at
        the end of the reader's current step, so at most about one more
        chunk is read. Safe to call at any time, more than once, before the
        run starts too; see :attr:`reading_stopped`.
        """
        self._stop_reading.set()

    def interrupt(self, reason: str, *, grace_s: float = 10.0) -> None:
        """Stop the run soon, cleanly: read no further, start no new request, let the
        requests in flight end for up to ``grace_s`` seconds, then stop.

        The run then raises :class:`RunStopped` whose cause is an
        :class:`Interrupted` with ``reason``; everything read and not answered
        is ``not_sent``, the rejects file and the report are complete. Calling
        it again (a second Ctrl-C) with ``grace_s=0`` stops at once. Call it
        from the event loop's thread (e.g. a signal handler added with
        ``loop.add_signal_handler``).
        """
        self._stop_reading.set()
        self.sender.halt()
        if self._interrupted is None:
            self._interrupted = Interrupted(reason)
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        fail = self._fail_now
        if fail is None:
            return  # not running yet: the run starts stopped
        if grace_s <= 0:
            fail(self._interrupted)
        else:
            self._grace = asyncio.get_running_loop().call_later(grace_s, fail, self._interrupted)

    @property
    def reading_stopped(self) -> bool:
        """True when :meth:`stop_reading` ended reading before the sources were exhausted."""
        return self._reader is not None and self._reader.stopped_early

    async def run(self) -> Report:
        async for _ in self.events():
            pass
        return self.report

    async def events(self) -> AsyncIterator[Event]:
        """Yield every chunk outcome and client rejection as it comes."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=1024)

        async def runner() -> None:
            try:
                await self._drive(queue.put)
            except asyncio.CancelledError:
                raise
            except BaseException:
                await queue.put(None)
                raise
            await queue.put(None)

        task = asyncio.create_task(runner())
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _drive(self, emit: Callable[[Event], Awaitable[None]]) -> None:
        rejects = RejectsWriter(self.rejects_path) if self.rejects_path else None
        self.progress.start(total_bytes=self.total_bytes)
        try:
            await self._run_stages(emit, rejects)
        finally:
            if self._grace is not None:
                self._grace.cancel()
            if self.stop_cause is None and self._interrupted is not None:
                # Everything in flight ended within the grace period: the run
                # still stopped before the end of its sources.
                self.stop_cause = self._interrupted
            if self.stop_cause is None and self._source_error is not None:
                # A source failed mid-way: what was read before it was sent.
                self.stop_cause = self._source_error
            self.progress.close()
            await self.compressor.aclose()
            if rejects is not None:
                rejects.close()
                self.report.set_rejects_file(rejects.path, rejects.count)
            stopped = str(self.stop_cause) if self.stop_cause is not None else None
            self.report.finish(stopped=stopped)
        if self.stop_cause is not None:
            raise RunStopped(
                f"the run stopped: {self.stop_cause}", report=self.report, cause=self.stop_cause
            ) from self.stop_cause

    async def _run_stages(
        self,
        emit: Callable[[Event], Awaitable[None]],
        rejects: RejectsWriter | None,
    ) -> None:
        settings = self.settings
        report = self.report
        progress = self.progress
        reader = self._reader = Reader(
            self.sources,
            settings,
            self.validator,
            on_record=self.on_record,
            stop_requested=self._stop_reading,
        )
        Item = tuple[int, Chunk, bytes]
        encoded: asyncio.Queue[Item | None] = asyncio.Queue(settings.queue_chunks)
        ready: asyncio.Queue[Item | None] = asyncio.Queue(settings.queue_chunks)
        budget = ByteBudget(settings.inflight_bytes)
        stop = asyncio.Event()
        senders: set[asyncio.Task[None]] = set()
        # Every chunk from its cut until its outcome is recorded, by ticket:
        # what is still here when the run ends was never answered: not_sent.
        held: dict[int, Chunk] = {}
        tickets = iter(range(1 << 62))

        def fail(cause: BulkpushError) -> None:
            if self.stop_cause is None:
                self.stop_cause = cause
            stop.set()

        self._fail_now = fail
        if self._interrupted is not None and self._grace is None:
            fail(self._interrupted)  # interrupted before it started

        def account(outcomes: list[Outcome]) -> None:
            for outcome in outcomes:
                report.add_outcome(outcome)
                if outcome.pinpoint_requests:
                    report.add_pinpoint_cost(outcome.pinpoint_requests, outcome.pinpoint_bytes)
                if rejects is not None:
                    rejects.write_all(outcome.rejections)
                progress.advance(
                    accepted=outcome.accepted,
                    rejected=outcome.rejected,
                    bytes_sent=outcome.bytes_sent,
                )

        async def produce() -> None:
            try:
                while not stop.is_set():
                    st = await asyncio.to_thread(reader.step)
                    report.add_read(st.read, st.source_bytes)
                    progress.advance(
                        records=st.read, source_bytes=st.source_bytes, rejected=len(st.rejections)
                    )
                    for rej in st.rejections:
                        report.add_rejection(rej)
                        if rejects is not None:
                            rejects.write(rej)
                    for chunk, body in st.chunks:
                        ticket = next(tickets)
                        held[ticket] = chunk
                        if not stop.is_set():
                            await encoded.put((ticket, chunk, body))
                    for rej in st.rejections:
                        await emit(rej)
                    if isinstance(st.error, SourceError):
                        # The reader flushed what it read: let it be sent, then stop.
                        self._source_error = st.error
                    elif st.error is not None:
                        fail(st.error)
                    if st.done:
                        return
            finally:
                await end(encoded)

        async def end(queue: asyncio.Queue[Item | None]) -> None:
            # The end-of-stream marker; after a stop nobody may be reading
            # any more, so never block on a full queue then.
            if stop.is_set():
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)
            else:
                await queue.put(None)

        async def compress() -> None:
            try:
                while (item := await encoded.get()) is not None:
                    ticket, chunk, body = item
                    if stop.is_set():
                        continue
                    payload = chunk.payload
                    if payload is None:  # (a reading process compressed it already)
                        payload = await self.compressor.compress(body)
                        span = chunk.span
                        if span is not None and payload is not body:
                            # Keep only the compressed body while the request is in
                            # flight: the products the API names are read from it.
                            span.gzipped, span.body = payload, None
                    await ready.put((ticket, chunk, payload))
                await end(encoded)  # let the other compressors see the end
            finally:
                await end(ready)

        def held_bytes(chunk: Chunk, payload: bytes) -> int:
            # What a chunk in flight holds: its request body, and the records a
            # record chunk keeps (a span chunk keeps only the compressed body).
            return len(payload) if chunk.span is not None else chunk.nbytes + len(payload)

        async def send_one(ticket: int, chunk: Chunk, payload: bytes) -> None:
            outcomes = [Outcome(chunk=chunk, not_sent=len(chunk), error="cancelled")]
            try:
                outcomes = await self.sender.send(chunk, payload)
            except ChunkFailed as exc:
                outcomes = [exc.outcome]
                fail(exc.cause)
            finally:
                budget.release(held_bytes(chunk, payload))
                held.pop(ticket, None)
                account(outcomes)
            for outcome in outcomes:
                await emit(outcome)

        async def dispatch() -> None:
            ended = 0
            while ended < settings.compress_workers:
                item = await ready.get()
                if item is None:
                    ended += 1
                    continue
                ticket, chunk, payload = item
                if stop.is_set() or self._interrupted is not None:
                    continue  # never sent: still held, so counted not_sent
                await budget.acquire(held_bytes(chunk, payload))
                task = asyncio.create_task(send_one(ticket, chunk, payload))
                senders.add(task)
                task.add_done_callback(senders.discard)

        producer = asyncio.create_task(produce())
        workers = [asyncio.create_task(compress()) for _ in range(settings.compress_workers)]
        dispatcher = asyncio.create_task(dispatch())
        stages = [producer, *workers, dispatcher]
        stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            pending: set[asyncio.Future[Any]] = set(stages)
            while pending and not stop.is_set():
                done, pending = await asyncio.wait(
                    pending | {stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(stopper)
                for t in done:
                    exc = None if t is stopper or t.cancelled() else t.exception()
                    if exc is not None:
                        raise exc  # a stage's unexpected error
            if stop.is_set():
                # Stop taking work. The reader finishes its step by itself (a
                # thread cannot be cancelled); the rest is cancelled, and
                # whatever it held is counted below.
                for t in [*workers, dispatcher, *senders]:
                    t.cancel()
            # Wait for every stage itself (a gather of them ends early when
            # one is cancelled): the producer's last step must be counted.
            await asyncio.gather(*stages, return_exceptions=True)
            while senders:
                # The last requests in flight; a stop meanwhile (a second
                # Ctrl-C, a fatal answer) cancels them rather than waiting.
                await asyncio.wait([*senders, stopper], return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    for t in senders:
                        t.cancel()
                    await asyncio.gather(*senders, return_exceptions=True)
        except BaseException:
            for t in [producer, *workers, dispatcher, *senders]:
                t.cancel()
            await asyncio.gather(producer, *workers, dispatcher, *senders, return_exceptions=True)
            raise
        finally:
            stopper.cancel()
            reader.close()
            not_sent = sum(len(c) for c in held.values()) + (reader.fed - reader.cut)
            if not_sent:
                report.add_not_sent(not_sent)
            held.clear()
