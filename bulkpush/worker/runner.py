"""The worker loop: lease a part, push its byte range, checkpoint, repeat until stopped.

A part is pushed with the same :class:`~bulkpush.client.StreamClient` and
:class:`~bulkpush.client.PushOptions` the ``push`` command builds. Its
checkpoint is a *watermark*: the smallest source offset such that every
record before it is accounted (accepted or rejected). Chunks finish out of
order, so :class:`Watermark` keeps the records in read order and moves only
over a contiguous accounted prefix; the part's report is built from those
records only (the *committed* report), so a resumed part adds up exactly.
Only the records above the watermark when a worker dies — the requests in
flight and those answered after the oldest one in flight — are sent twice
(upserts by id: harmless).

Stop with :meth:`Worker.stop`: the worker takes no new part, the part in
hand stops reading at a line boundary, what was read is sent, the checkpoint
is written and the part is given back to the queue.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import glob
import io
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import IO, Any, cast

from bulkpush.client import PushOptions, StreamClient
from bulkpush.errors import BulkpushError, QueueError, RunStopped, SourceError
from bulkpush.limits import STREAM_API
from bulkpush.pipeline import Event, Source
from bulkpush.records import Outcome, Record, Rejection
from bulkpush.report import Report, merge_reports, redact, write_json_atomic
from bulkpush.targets.productsup_stream import RATE_SAFETY
from bulkpush.transport import TransportOptions
from bulkpush.validation import Validator
from bulkpush.worker.metrics import Metrics
from bulkpush.worker.queue import JobQueue, Lease, LeaseState, new_worker_id

__all__ = ["RangeReader", "Watermark", "Worker", "merge_rejects"]

log = logging.getLogger("bulkpush.worker")

_BLOCK = 1 << 20


class RangeReader(io.RawIOBase):
    """The lines of a plain file whose first byte lies in ``[start, end)``, as a stream.

    Reading starts at the first line that begins at or after ``start`` (its
    offset is :attr:`base`), so a checkpoint anywhere inside a line resumes at
    the next one. Every read returns whole lines, so :meth:`stop` ends the
    stream at a line boundary: the reader sees a clean end of file.
    ``name`` is the path (records carry it as their ``source``).
    """

    def __init__(self, path: str, start: int, end: int) -> None:
        super().__init__()
        self.name = path
        try:
            self._f: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed in close()
            self.base = self._seek_line_start(start)
        except OSError as exc:
            detail = exc.strerror or str(exc)
            raise SourceError(f"cannot read {path}: {detail}", source=path) from exc
        self._pos = self.base
        self._end = end
        self.stopped = False

    def _seek_line_start(self, start: int) -> int:
        if start <= 0:
            return 0
        self._f.seek(start - 1)
        pos = start - 1
        while True:
            block = self._f.read(_BLOCK)
            if not block:
                return pos
            i = block.find(b"\n")
            if i >= 0:
                self._f.seek(pos + i + 1)
                return pos + i + 1
            pos += len(block)

    def stop(self) -> None:
        """End the stream after the lines already returned."""
        self.stopped = True

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.stopped or self._pos >= self._end:
            return b""
        want = self._end - self._pos if size is None or size < 0 else size
        data = self._f.read(max(1, min(want, self._end - self._pos)))
        if not data:
            return b""
        if self._pos + len(data) < self._end:
            cut = data.rfind(b"\n")
            if cut >= 0:
                data = data[: cut + 1]
            else:  # one line longer than the block: finish it
                data += self._f.readline()
        self._pos += len(data)
        self._f.seek(self._pos)
        return data

    def readinto(self, buffer: Any) -> int:  # pragma: no cover - read() is what the reader uses
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


class Watermark:
    """The checkpoint of a part: every record before :attr:`offset` is accounted.

    :meth:`seen` is called (from the reader thread) with each record in read
    order, :meth:`account` (on the event loop) with each outcome and client
    rejection. ``committed`` is the report of the records below the
    watermark only. ``base``/``base_line`` shift records read from a
    :class:`RangeReader` (offsets and lines relative to its start) to their
    place in the file.
    """

    def __init__(
        self, *, offset: int, line: int, base: int, base_line: int, committed: Report
    ) -> None:
        self.offset = offset
        self.line = line
        self.base = base
        self.base_line = base_line
        self.committed = committed
        self._read: collections.deque[Record] = collections.deque()
        self._done: set[int] = set()
        self._pending: dict[int, list[Event]] = {}

    def __repr__(self) -> str:
        return f"Watermark(offset={self.offset}, line={self.line}, open={len(self._read)})"

    def seen(self, record: Record, source: str) -> None:
        record.offset += self.base
        record.line += self.base_line - 1
        record.source = source
        self._read.append(record)

    def account(self, event: Event) -> bool:
        """Take one event; True when the watermark moved."""
        if isinstance(event, Rejection):
            key = event.record.offset
            self._done.add(key)
        else:
            records = event.chunk.records
            if event.not_sent or not records:
                return False  # not delivered: the watermark stays below it
            key = records[-1].offset
            self._done.update(r.offset for r in records)
        self._pending.setdefault(key, []).append(event)
        moved = False
        read, done = self._read, self._done
        while read and read[0].offset in done:
            r = read.popleft()
            done.discard(r.offset)
            for ev in self._pending.pop(r.offset, ()):
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


class _TrackingValidator(Validator):
    """The push's own validator, telling the watermark of every record first.

    A stopgap hook: the pipeline has no per-record callback, so the worker
    swaps ``Pipeline.validator`` (called once per record, in read order).
    """

    def __init__(self, inner: Validator, watermark: Watermark, source: str) -> None:
        super().__init__(inner.options)
        self._inner = inner
        self._watermark = watermark
        self._source = source

    def __call__(self, record: Record) -> Rejection | None:
        self._watermark.seen(record, self._source)
        return self._inner(record)


def merge_rejects(path: str) -> int:
    """Merge the parts' rejects files (``path.part*``) into ``path``; return its line count.

    Lines repeated by a resumed part are written once; the half-written last
    line of a killed worker's file is dropped. Written atomically.
    """
    files = sorted(glob.glob(glob.escape(path) + ".part*"))
    seen: set[bytes] = set()
    tmp = path + ".merging"
    count = 0
    with open(tmp, "wb") as out:
        for name in files:
            with open(name, "rb") as fh:
                for line in fh:
                    if not line.endswith(b"\n") or line in seen:
                        continue
                    seen.add(line)
                    out.write(line)
                    count += 1
    os.replace(tmp, path)
    for name in files:
        with contextlib.suppress(OSError):
            os.remove(name)
    return count


@dataclass(slots=True)
class _Run:
    """One part in hand."""

    lease: Lease
    watermark: Watermark
    prior: dict[str, Any] | None
    reader: RangeReader | None = None
    state: LeaseState = "ok"

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
        self.parts_done = 0
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
        if run is not None and run.reader is not None:
            run.reader.stop()

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
                base=0,
                base_line=1,
                committed=self._committed(lease),
            ),
            prior=prior,
        )
        self._current = run
        rejects = None
        if spec.options.rejects:
            rejects = f"{spec.options.rejects}.part{part.index:05d}-{part.attempts}"
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
            self.parts_done += 1
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

    async def _drive(self, run: _Run, token: str, options: PushOptions) -> str:
        lease = run.lease
        part, target = lease.part, lease.spec.target
        watermark = run.watermark
        source: Source
        if part.end is not None:
            run.reader = RangeReader(part.source, part.offset, part.end)
            watermark.base = run.reader.base
            watermark.base_line = part.line
            source = run.reader
            if self._stopping.is_set():
                run.reader.stop()
        else:
            source = part.source
        client = StreamClient(
            token=token,
            api_url=target.api_url,
            transport_options=TransportOptions(
                verify_tls=not target.insecure,
                ca_bundle=target.ca_bundle,
                integration=target.integration,
            ),
        )
        dirty = asyncio.Event()
        stop = asyncio.Event()
        try:
            async with client:
                rate = options.rate or STREAM_API.products_rate_per_s * RATE_SAFETY
                # Stopgap until StreamClient takes a pacer factory: the client keeps
                # this pacer because its rate matches the push's.
                client._pacers[target.stream] = self.queue.shared_pacer(
                    f"{target.api_url}#{target.stream}", rate
                )
                pipeline = await client.open_push(source, stream=target.stream, options=options)
                # Stopgap until the pipeline offers a per-record hook.
                pipeline.validator = _TrackingValidator(pipeline.validator, watermark, part.source)
                keeper = asyncio.create_task(self._keep(run, dirty, stop))
                try:
                    events = cast(AsyncGenerator[Event, None], pipeline.events())
                    async with contextlib.aclosing(events):
                        await self._consume(run, events, dirty, stop)
                finally:
                    keeper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await keeper
        finally:
            if run.reader is not None:
                run.reader.close()
        if run.state != "ok":
            if run.state == "cancelled":
                await self.queue.release(lease)
            return run.state
        if run.reader is not None and run.reader.stopped:
            return "released"
        if part.end is None and self._stopping.is_set() and stop.is_set():
            return "released"
        return "done"

    async def _consume(
        self, run: _Run, events: AsyncIterator[Event], dirty: asyncio.Event, stop: asyncio.Event
    ) -> None:
        stream = run.lease.spec.target.stream
        whole_file = run.lease.part.end is None
        async for event in events:
            if isinstance(event, Outcome):
                self.metrics.outcome(stream, event)
            else:
                self.metrics.rejected(stream)
            if run.watermark.account(event):
                dirty.set()
            if stop.is_set() or (whole_file and self._stopping.is_set()):
                stop.set()
                return

    async def _keep(self, run: _Run, dirty: asyncio.Event, stop: asyncio.Event) -> None:
        """Write the checkpoint whenever it moved; heartbeat when it did not."""
        lease, queue = run.lease, self.queue
        beat = max(0.05, queue.lease_ttl / 3)
        ranged = lease.part.end is not None
        while True:
            try:
                # asyncio.timeout, not wait_for: no inner task to lose a cancellation in.
                async with asyncio.timeout(beat):
                    await dirty.wait()
            except TimeoutError:
                state = await queue.heartbeat(lease)
            else:
                dirty.clear()
                if ranged:
                    wm = run.watermark
                    state = await queue.checkpoint(
                        lease, offset=wm.offset, line=wm.line, report=run.report()
                    )
                else:
                    state = await queue.heartbeat(lease)
            if state != "ok":
                run.state = state
                stop.set()
                if run.reader is not None:
                    run.reader.stop()
                return
