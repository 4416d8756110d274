"""Reading processes: the span fast path of a plain NDJSON file spread over the cores.

A plain (uncompressed) NDJSON file is cut into *segments*, byte ranges of
a few tens of MB (the lines whose first byte lies in the range, as
:class:`~bulkpush.sources.FileRange` reads them). Each segment is read,
checked (``bulkpush._spans``), cut into chunks and gzipped in a worker
process (``--workers N``); what comes back is small: each chunk's
compressed body with its line starts, line numbers and offsets, and the
segment's rejections. No product is pickled; the event loop's process
only paces, sends, retries and accounts.

Order: segments are handed out in file order and their results taken in
that order, at most ``workers + 1`` ahead, so chunks still leave in catalog
order and memory holds a few segments' compressed bodies, whatever the
catalog's size. A segment's last chunk is usually short (a segment does not
know where the previous one's chunks ended): segments hold many chunks
(:func:`segment_bytes`) so that short ones are a small share of requests.

Line numbers: a process knows only the lines of its segment; it numbers
them from 0 and reports how many lines the segment holds; the reader adds
the lines of all earlier segments.

A process that dies (killed, out of memory) ends the run like a source
that cannot be read: what was read before is sent, the rest is never read,
and the accounting stays whole.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import io
import multiprocessing
import os
import signal
import stat
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bulkpush._chunking import SpanChunker
from bulkpush._compression import CompressionOptions, StreamCompressor
from bulkpush._records import Record, Rejection
from bulkpush._spans import check_block
from bulkpush._validation import ValidationOptions, Validator
from bulkpush.errors import SourceError
from bulkpush.sources._blocks import Block, read_ndjson_blocks
from bulkpush.sources._framing import peek_first_line
from bulkpush.sources._open import (
    COMPRESSED_MAGIC,
    Format,
    detect_format,
    open_error,
    safe_reader,
)
from bulkpush.sources._ranges import iter_range
from bulkpush.sources._sniff import check_not_binary, check_not_one_document

__all__ = [
    "STREAM_SEGMENT",
    "DataJob",
    "ProcessReader",
    "SegmentChunk",
    "SegmentResult",
    "default_workers",
    "plan_segments",
    "segment_bytes",
    "stream_jobs",
]

#: Segments hold about this many chunks: one short chunk in 17 requests
#: costs about 3 % of a stream's rate when requests are the limit.
CHUNKS_PER_SEGMENT = 16
MIN_SEGMENT = 4 << 20
MAX_SEGMENT = 24 << 20


def default_workers() -> int:
    """Reading processes by default: the cores this process may run on, when there are 3
    or more; else 1 (no extra process).

    Measured on 2 cores (benchmarks/RESULTS.md), one process whose reader
    thread checks and cuts while its gzip threads compress (ISA-L releases
    the GIL) already keeps both cores busy, and pushes faster than 2 reading
    processes: those pay their start-up (about 0.4 CPU-seconds each) and
    memory (about 60 MB each) and gain no core. From 3 cores the reader thread
    is the limit and processes add what it cannot do.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return cores if cores >= 3 else 1


def segment_bytes(file_size: int, line_bytes: float, chunk_products: int, workers: int) -> int:
    """Bytes per segment: about :data:`CHUNKS_PER_SEGMENT` chunks of ``chunk_products`` lines of
    ``line_bytes``, within 4-64 MB, and small enough that every process gets work."""
    size = int(CHUNKS_PER_SEGMENT * chunk_products * max(line_bytes, 1.0))
    size = max(MIN_SEGMENT, min(MAX_SEGMENT, size))
    per_worker = -(-file_size // max(2 * workers, 1))
    return max(MIN_SEGMENT, min(size, per_worker))


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentPlan:
    """How to read one file in processes (:func:`plan_segments`)."""

    cap: int
    max_count: int
    max_bytes: int
    target_bytes: int | None
    validation: ValidationOptions
    compression: CompressionOptions
    workers: int
    min_bytes: int


@dataclass(frozen=True, slots=True)
class Job:
    """What a process needs to read one segment (pickled to it: small)."""

    path: str
    source: str
    start: int
    end: int
    plan: SegmentPlan


@dataclass(slots=True)
class SegmentChunk:
    """One chunk of a segment: its gzipped body and where its products came from.

    ``lines`` count from 0 at the segment's first line.
    """

    payload: bytes
    nbytes: int
    starts: NDArray[np.uint32]
    lines: NDArray[np.int64]
    offsets: NDArray[np.int64]


@dataclass(slots=True)
class SegmentResult:
    """What one segment gave: its chunks, its rejections (lines from 0), its size in lines."""

    chunks: list[SegmentChunk] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    read: int = 0
    nlines: int = 0
    nbytes: int = 0
    error: str | None = None


def plan_segments(
    path: str,
    source: str,
    *,
    start: int,
    end: int | None,
    format: Format | None,
    plan: SegmentPlan,
) -> list[Job] | None:
    """The segments of a plain NDJSON file (or of its range ``[start, end)``), or None when
    the file is not one (compressed, another format) or too small to be worth processes.

    Checks what reading it would check first (``SourceError`` for a binary file
    or one JSON document over several lines, when the format is detected).
    """
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            size = st.st_size
            if not stat.S_ISREG(st.st_mode) or size - start < plan.min_bytes:
                return None  # a pipe, a device; or too small to be worth processes
            if f.read(4).startswith(COMPRESSED_MAGIC):
                return None
            f.seek(0)
            read = safe_reader(f, source)
            prefix = peek_first_line(read, plan.cap)
            fmt = format
            if fmt is None:
                whole = start == 0 and end is None
                if whole:  # what reading the whole file checks (a range only detects)
                    check_not_binary(prefix, source, decompressed=False)
                fmt = detect_format(source, prefix)
                if fmt == "ndjson" and whole:
                    check_not_one_document(prefix, read, source)
            if fmt != "ndjson":
                return None
            f.seek(start)
            sample = f.read(1 << 20)
    except OSError as exc:
        raise open_error(source, exc) from exc
    stop = size if end is None else min(end, size)
    if stop - start < plan.min_bytes:
        return None
    line_bytes = len(sample) / max(sample.count(b"\n"), 1)
    step = segment_bytes(stop - start, line_bytes, plan.max_count, plan.workers)
    return [Job(path, source, a, min(a + step, stop), plan) for a in range(start, stop, step)]


class _GzipChunker(SpanChunker):
    """A :class:`SpanChunker` that compresses each chunk's body as its pieces come.

    A reading process sends bodies compressed only: holding each whole
    uncompressed body (10 MB for 10,000 products of 1 KB) to compress it at
    the cut would double the process's memory for nothing. The chunks it
    returns hold the *compressed* body in ``span.body`` (``read_segment``
    moves it to the payload at once).
    """

    def __init__(self, compression: CompressionOptions, **kw: Any) -> None:
        super().__init__(**kw)
        self._compression = compression
        self._stream: StreamCompressor | None = None

    def _keep(self, piece: memoryview | bytes, cut_now: bool) -> None:
        if self._stream is None:
            self._stream = StreamCompressor(self._compression)
        self._stream.add(piece)

    def _take_body(self) -> bytes:
        stream, self._stream = self._stream, None
        return stream.finish() if stream is not None else b""


def _quiet() -> None:
    # The parent alone handles Ctrl-C and SIGTERM (it stops reading, lets its
    # requests end and writes the report; the pool stops with it). A signal to
    # the whole process group must not kill a reading process first, which
    # would end the run as a failure rather than an interruption. A process
    # whose parent is gone ends by itself (its job queue closes).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def read_segment(job: Job) -> SegmentResult:
    """Read, check, cut and gzip one segment of a file (runs in a reading process)."""
    out = SegmentResult()

    def sized(n: int) -> None:
        out.nbytes += n

    try:
        with open(job.path, "rb") as f:
            items = iter_range(
                f,
                job.source,
                "ndjson",
                start=job.start,
                end=job.end,
                first_line=0,
                cap=job.plan.cap,
                on_bytes=sized,
                blocks=True,
            )
            _read_items(items, job.plan, out)
    except (OSError, SourceError) as exc:
        out.error = str(exc)
    return out


def read_data_segment(job: DataJob) -> SegmentResult:
    """Check, cut and gzip whole lines a stream's reader sent (runs in a reading process).

    Its lines are numbered from the stream's own (``job.line``); its bytes were
    counted where the stream was read (``nbytes`` stays 0).
    """
    out = SegmentResult()
    data = io.BytesIO(job.data)
    items = read_ndjson_blocks(
        data.readinto, b"", job.source, cap=job.plan.cap, line_no=job.line, offset=job.offset
    )
    _read_items(items, job.plan, out)
    return out


def _read_items(
    items: Iterator[Block | Record | Rejection], plan: SegmentPlan, out: SegmentResult
) -> None:
    """Check each block, cut the valid products into gzipped chunks; results into ``out``."""
    validator = Validator(plan.validation)
    chunker = _GzipChunker(
        plan.compression,
        max_count=plan.max_count,
        max_bytes=plan.max_bytes,
        target_bytes=plan.target_bytes,
    )

    def emit(chunks: list[Any]) -> None:
        for chunk in chunks:
            span = chunk.span
            out.chunks.append(
                SegmentChunk(
                    span.body,  # compressed already (_GzipChunker)
                    chunk.nbytes,
                    span.starts,
                    span.lines,
                    span.offsets,
                )
            )

    try:
        for item in items:
            if isinstance(item, Block):
                res = check_block(
                    item.data,
                    validator,
                    source=item.source,
                    first_line=item.line,
                    base_offset=item.offset,
                    bom=item.offset == 0,
                    cap=plan.cap,
                )
                item.nlines = len(res.line_starts) - 1
                out.nlines += item.nlines
                out.read += res.read
                out.rejections.extend(res.rejections)
                if len(res.lines):
                    lines = res.lines + item.line
                    offsets = res.line_starts[res.lines] + item.offset
                    emit(chunker.feed(item.source, res.body, res.starts, lines, offsets))
            elif isinstance(item, Record):  # a line over the cap
                out.nlines += 1
                out.read += 1
                rejection = validator(item)
                if rejection is not None:
                    out.rejections.append(rejection)
            else:  # (NDJSON makes none; kept whole should a reader make one)
                out.nlines += 1
                out.read += 1
                out.rejections.append(item)
    finally:
        # What was read before a failure is still sent.
        emit(chunker.flush())


@dataclass(frozen=True, slots=True)
class DataJob:
    """Whole lines of a stream (a compressed file, stdin), read in this process, for a
    reading process to check, cut and gzip; ``line``/``offset``: of its first line."""

    data: bytes
    source: str
    line: int
    offset: int
    plan: SegmentPlan


#: Bytes of decompressed stream per DataJob: less than a file segment, as this process
#: holds a copy of each job until a reading process has taken it.
STREAM_SEGMENT = 8 << 20


def stream_jobs(
    items: Iterator[Block | Record | Rejection], plan: SegmentPlan
) -> Iterator[DataJob]:
    """The blocks of a stream (read in :data:`STREAM_SEGMENT` blocks) as jobs, copied out
    of the reader's buffer; a line over the cap as the part of it a record keeps."""
    for item in items:
        if isinstance(item, Block):
            data = item.data.tobytes()
            item.nlines = int(np.count_nonzero(np.frombuffer(data, np.uint8) == _LF))
            yield DataJob(data, item.source, item.line, item.offset, plan)
        else:  # a line over the cap: its first cap + 1 bytes, rejected there at its line
            record = item if isinstance(item, Record) else item.record
            yield DataJob(record.raw + b"\n", record.source, record.line, record.offset, plan)


_LF = 0x0A


@contextlib.contextmanager
def _main_spared() -> Iterator[None]:
    """While processes start: keep them from re-running the caller's main module.

    multiprocessing prepares a spawned process by importing the parent's
    ``__main__`` (so that functions defined there can be called): for the
    CLI that is all of it (20 MB and 0.3 s per process), for a script
    without an ``if __name__ == "__main__":`` guard its top-level code, run
    again in every process. A reading process calls nothing of the caller's,
    and a main module named ``….__main__`` is one multiprocessing skips.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    had = "__spec__" in vars(main)
    spec = getattr(main, "__spec__", None)
    main.__spec__ = importlib.machinery.ModuleSpec("bulkpush.__main__", None)
    try:
        yield
    finally:
        if had:
            main.__spec__ = spec
        else:  # pragma: no cover - every module has the attribute
            del main.__spec__


def _died(exc: BaseException) -> SourceError:
    error = SourceError(
        f"a reading process ended unexpectedly ({type(exc).__name__}): "
        "the rest of the catalog was not read"
    )
    error.__cause__ = exc
    return error


class ProcessReader:
    """Hands the segments of one file to a pool of processes; results come back in order.

    Iterate :meth:`results` for one :class:`SegmentResult` per segment, in
    file order, each with line numbers already made absolute. ``close``
    stops the pool (also mid-way: segments not yet taken are never read).
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"ProcessReader(workers={self.workers}, started={self._pool is not None})"

    def start(self) -> None:
        """Start the pool (raises ``OSError`` and the like where processes cannot start)."""
        self._start()

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # Spawned, not forked: this process has threads (the event loop's
            # helpers), and a forked child may inherit a lock one of them held.
            # (A fork server would add a process of its own to the memory.)
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=context, initializer=_quiet
            )
        return self._pool

    def results(self, jobs: Iterable[Job | DataJob], first_line: int = 1) -> Any:
        """The jobs' results in order (a generator). A file segment's lines are counted
        from ``first_line`` (the line of the first segment's first line); a stream's
        jobs carry their own line numbers."""
        pool = self._start()
        pending: list[tuple[bool, Future[SegmentResult]]] = []
        todo = iter(jobs)
        base = first_line

        def submit(job: Job | DataJob) -> None:
            with _main_spared():  # processes start as jobs are first submitted
                if isinstance(job, Job):
                    pending.append((True, pool.submit(read_segment, job)))
                else:
                    pending.append((False, pool.submit(read_data_segment, job)))

        failed: BaseException | None = None  # reading the jobs' source failed

        def more() -> None:
            nonlocal failed
            if failed is not None:
                return
            try:
                job = next(todo, None)
            except Exception as exc:  # a stream cut short: what was read still goes
                failed = exc
                return
            if job is not None:
                try:
                    submit(job)
                except BrokenProcessPool as exc:  # a process died: the results come first
                    failed = _died(exc)

        while len(pending) <= self.workers and failed is None:
            before = len(pending)
            more()
            if len(pending) == before:
                break
        while pending:
            relative, future = pending.pop(0)
            try:
                result = future.result()
            except Exception as exc:  # BrokenProcessPool: a process died
                raise _died(exc) from exc
            more()
            if relative:
                for chunk in result.chunks:
                    chunk.lines += base
                for rejection in result.rejections:
                    rejection.record.line += base
                base += result.nlines
            yield result
            if result.error is not None:
                raise SourceError(result.error)
        if failed is not None:
            raise failed

    def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            # Waits for the segments being read (a few tenths of a second at
            # most) so that the processes are reaped and counted by their parent.
            pool.shutdown(wait=True, cancel_futures=True)
