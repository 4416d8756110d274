"""The reader: the sequential part of a push (read, validate, chunk, encode), one step at a time.

:class:`Reader` runs in a worker thread; each :meth:`Reader.step` reads up to
``STEP_RECORDS`` records (or until a chunk is complete) and hands back what it
read, rejected and cut. ``stop_requested`` ends reading at the next step.
"""

from __future__ import annotations

import itertools
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from bulkpush._chunking import BodyFormat, Chunker, Numbering, SpanChunker, encode_body
from bulkpush._compression import CompressionOptions
from bulkpush._procs import (
    STREAM_SEGMENT,
    Job,
    ProcessReader,
    SegmentPlan,
    SegmentResult,
    plan_segments,
    stream_jobs,
)
from bulkpush._records import Chunk, Record, Rejection, Span
from bulkpush._spans import check_block
from bulkpush._validation import ValidationOptions, Validator, unchecked
from bulkpush.errors import BulkpushError, SourceError
from bulkpush.sources import DEFAULT_MAX_RECORD_BYTES, FileRange, Format, iter_objects
from bulkpush.sources._blocks import SPAN_BLOCK, Block
from bulkpush.sources._open import COMPRESSED_MAGIC
from bulkpush.sources._read import iter_items

__all__ = ["STEP_RECORDS", "PipelineSettings", "Reader", "RecordHook", "Source", "Step"]

Source = str | os.PathLike[str] | IO[bytes] | FileRange | Iterable[Mapping[str, Any] | bytes | str]
RecordHook = Callable[[Record], None]

# How many records one trip to the reader thread handles at most before it
# reports back (keeps progress and client rejections flowing on bad files).
STEP_RECORDS = 20_000

_log = logging.getLogger("bulkpush.pipeline")


def _unexpected(exc: BaseException) -> str:
    """``Type: message``, on one line and short: what an unforeseen error says to a user."""
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:200] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineSettings:
    """How the stages are joined: chunk limits, body format, queue sizes, budget.

    ``read_cap``: the most bytes of one line (CSV row, JSON element) a source
    holds; a longer one is kept cut short, enough to be rejected as too large.
    ``csv_delimiter``: of CSV sources (None: sniffed from each header line).
    ``spans``: read NDJSON as blocks checked and cut as spans of bytes (the
    fast path; used where the body is NDJSON with no minimum size and no
    ``on_record`` hook wants every record); False: a record per product.
    ``workers``: processes that read plain NDJSON files of at least
    ``process_min_bytes`` (``bulkpush._procs``; 1: none, the reader thread
    does it all); they check with ``validation`` and gzip with
    ``compression`` (both needed for processes to be used).
    """

    max_count: int
    max_bytes: int
    read_cap: int = DEFAULT_MAX_RECORD_BYTES
    min_bytes: int = 0
    target_bytes: int | None = None
    body_format: BodyFormat = "ndjson"
    format: Format | None = None
    csv_delimiter: str | None = None
    inflight_bytes: int = 192 * 1024 * 1024
    compress_workers: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    queue_chunks: int = 2
    spans: bool = True
    workers: int = 1
    process_min_bytes: int = 32 << 20
    validation: ValidationOptions | None = None
    compression: CompressionOptions | None = None


@dataclass(slots=True)
class Step:
    read: int = 0
    source_bytes: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    chunks: list[tuple[Chunk, bytes]] = field(default_factory=list)
    done: bool = False
    error: BulkpushError | None = None


class Reader:
    """The sequential part, run in a worker thread one step at a time.

    ``fed - cut`` records sit in the chunker, read but not yet in a chunk.
    ``stop_requested`` (set from the event loop) ends reading at the next
    step; ``stopped_early`` says it did before the sources were exhausted.
    """

    def __init__(
        self,
        sources: Iterable[Source],
        settings: PipelineSettings,
        validator: Validator,
        *,
        on_record: RecordHook | None = None,
        stop_requested: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.validator = validator
        numbering = self.numbering = Numbering()
        self.chunker = Chunker(
            max_count=settings.max_count,
            max_bytes=settings.max_bytes,
            min_bytes=settings.min_bytes,
            target_bytes=settings.target_bytes,
            body_format=settings.body_format,
            seq=numbering,
        )
        self.spans = SpanChunker(
            max_count=settings.max_count,
            max_bytes=settings.max_bytes,
            target_bytes=settings.target_bytes,
            seq=numbering,
        )
        self.use_spans = (
            settings.spans
            and on_record is None
            and settings.body_format == "ndjson"
            and settings.min_bytes == 0
        )
        self.procs: ProcessReader | None = None
        self.segment_plan: SegmentPlan | None = None
        if (
            self.use_spans
            and settings.workers > 1
            and settings.validation is not None
            and settings.compression is not None
        ):
            self.segment_plan = SegmentPlan(
                cap=settings.read_cap,
                max_count=settings.max_count,
                max_bytes=settings.max_bytes,
                target_bytes=settings.target_bytes,
                validation=settings.validation,
                compression=settings.compression,
                workers=settings.workers,
                min_bytes=settings.process_min_bytes,
            )
        items = self._items(sources)
        # Only a run that asked for the hook pays for the extra generator (and
        # it reads records: no blocks, no segments, see use_spans).
        self.items = items if on_record is None else _observed(items, on_record)  # type: ignore[arg-type]
        self.stop_requested = stop_requested or threading.Event()
        self.stopped_early = False
        self.fed = 0
        self.cut = 0
        self.bytes_read = 0
        self.source_name = "the catalog"  # the source being read, for an unexpected error

    def _count(self, nbytes: int) -> None:
        self.bytes_read += nbytes

    def _items(
        self, sources: Iterable[Source]
    ) -> Iterator[Record | Rejection | Block | SegmentResult]:
        cap = self.settings.read_cap
        fmt = self.settings.format
        delimiter = self.settings.csv_delimiter
        blocks = self.use_spans
        # Files count every byte read (blank lines too) as they read them.
        count = self._count
        for src in sources:
            self.source_name = _source_name(src)
            jobs = self._segments(src)
            if jobs is not None and self._pool_ready():
                assert self.procs is not None
                first_line = src.first_line if isinstance(src, FileRange) else 1
                yield from self.procs.results(jobs, first_line)
            elif isinstance(src, FileRange):
                yield from src.items(
                    format=fmt,
                    max_record_bytes=cap,
                    csv_delimiter=delimiter,
                    on_bytes=count,
                    blocks=blocks,
                )
            elif isinstance(src, str | os.PathLike) or hasattr(src, "read"):
                streamed = self._streamed(src)
                items = iter_items(
                    src,  # type: ignore[arg-type]
                    format=fmt,
                    max_record_bytes=cap,
                    csv_delimiter=delimiter,
                    on_bytes=count,
                    blocks=blocks,
                    block_size=STREAM_SEGMENT if streamed else SPAN_BLOCK,
                )
                yield from self._to_processes(items) if streamed else items
            else:
                # Python objects have no bytes: count them as the NDJSON lines they make.
                for item in iter_objects(src, max_record_bytes=cap):
                    record = item.record if isinstance(item, Rejection) else item
                    self.bytes_read += len(record.raw) + 1
                    yield item

    def _segments(self, src: Source) -> list[Job] | None:
        """The segments of ``src`` for the reading processes, or None (read it here)."""
        plan = self.segment_plan
        if plan is None:
            return None
        if isinstance(src, FileRange):
            if src.path == "-":
                return None
            path, start, end = src.path, src.start, src.end
        elif isinstance(src, str | os.PathLike) and src != "-":
            path, start, end = os.fspath(src), 0, None
        else:
            return None
        return plan_segments(
            path, path, start=start, end=end, format=self.settings.format, plan=plan
        )

    def _streamed(self, src: Source) -> bool:
        """Whether a stream (a compressed file, stdin, a file object) goes, decompressed
        here, to the reading processes in segments (when it turns out to be NDJSON)."""
        plan = self.segment_plan
        if plan is None:
            return False
        if not isinstance(src, str | os.PathLike) or src == "-":
            return True  # stdin, a file object: of unknown size
        try:
            if not stat.S_ISREG(os.stat(src).st_mode):
                return True  # a pipe (<(zcat ...)), a device: a stream; not read here
            with open(src, "rb") as f:
                compressed = f.read(4).startswith(COMPRESSED_MAGIC)
                size = os.fstat(f.fileno()).st_size
        except OSError:
            return False  # reading it says why
        # A compressed catalog is several times its size (gzip: 4-8x for products).
        return compressed and size * 4 >= plan.min_bytes

    def _to_processes(
        self, items: Iterator[Record | Rejection | Block]
    ) -> Iterator[Record | Rejection | Block | SegmentResult]:
        """A stream's blocks as segments for the reading processes; another format's
        records (the first item says which) as they are."""
        first = next(items, None)
        if first is None:
            return
        plan = self.segment_plan
        if not isinstance(first, Block) or plan is None or not self._pool_ready():
            yield first
            yield from items
            return
        assert self.procs is not None
        yield from self.procs.results(stream_jobs(itertools.chain([first], items), plan))

    def _pool_ready(self) -> bool:
        """Start the reading processes if need be; False (and read here from now on,
        said once) where this system cannot start them."""
        if self.segment_plan is None:
            return False
        if self.procs is None:
            self.procs = ProcessReader(self.settings.workers)
        try:
            self.procs.start()
        except (OSError, NotImplementedError, ImportError) as exc:
            # (A sandbox without /dev/shm, where multiprocessing has no semaphores.)
            _log.warning(
                "the reading processes (--workers %d) could not start (%s): "
                "reading in this process",
                self.settings.workers,
                _unexpected(exc),
            )
            self.segment_plan = None
            self.procs = None
            return False
        return True

    def close(self) -> None:
        """Stop the reading processes, if any (segments not yet read never are)."""
        if self.procs is not None:
            self.procs.close()

    def _segment(self, st: Step, result: SegmentResult) -> None:
        """A segment read by a process: its chunks come compressed, its rejections made."""
        if self.chunker.pending or self.spans.pending:
            self._encode(st, self._flush())
        st.read += result.read
        self.bytes_read += result.nbytes
        st.rejections.extend(result.rejections)
        gzipped = self.settings.compression is not None and (
            self.settings.compression.codec == "gzip"
        )
        for part in result.chunks:
            span = Span(
                self.source_name,
                None if gzipped else part.payload,
                part.starts,
                part.lines,
                part.offsets,
                gzipped=part.payload if gzipped else None,
            )
            chunk = Chunk(
                self.numbering.take(), span=span, nbytes=part.nbytes, payload=part.payload
            )
            self.fed += len(chunk)
            self.cut += len(chunk)
            st.chunks.append((chunk, b""))

    def _encode(self, st: Step, chunks: list[Chunk]) -> None:
        for chunk in chunks:
            self.cut += len(chunk)
            st.chunks.append((chunk, encode_body(chunk, self.settings.body_format)))

    def step(self) -> Step:
        st = Step()
        bytes_before = self.bytes_read
        try:
            self._step(st)
        finally:
            st.source_bytes = self.bytes_read - bytes_before
        return st

    def _step(self, st: Step) -> None:
        validator = self.validator
        feed = self.chunker.feed
        try:
            if self.stop_requested.is_set():
                # Checked per step, not per record: the hot loop stays as it is,
                # and at most one step (one chunk) is read after the request.
                self.stopped_early = True
                st.done = True
                self._encode(st, self._flush())
                return
            for item in self.items:
                if isinstance(item, SegmentResult):
                    self._segment(st, item)
                    return
                if isinstance(item, Block):
                    self._block(st, item)
                    if st.chunks or st.read >= STEP_RECORDS:
                        return
                    continue
                st.read += 1
                if isinstance(item, Rejection):
                    st.rejections.append(item)
                else:
                    try:
                        rejection = validator(item)
                    except Exception as exc:
                        # One crafted product must not end the run: it alone is rejected.
                        rejection = unchecked(item, exc)
                    if rejection is not None:
                        st.rejections.append(rejection)
                    else:
                        if self.spans.pending:
                            self._encode(st, self.spans.flush())
                        self.fed += 1
                        done = feed(item)
                        if done:
                            self._encode(st, done)
                if st.chunks or st.read >= STEP_RECORDS:
                    return
            st.done = True
            self._encode(st, self._flush())
        except OSError as exc:
            self._source_failed(st, SourceError(f"reading the catalog failed: {exc}"))
        except SourceError as exc:
            self._source_failed(st, exc)
        except BulkpushError as exc:
            st.error = exc
        except Exception as exc:
            # A reader's (or on_record's) own failure, which no content should
            # cause: stop as for an unreadable source, with one line, not a
            # traceback; what was read before it is still sent and reported.
            _log.debug("reading %s failed", self.source_name, exc_info=True)
            name = self.source_name
            msg = f"reading {name} failed unexpectedly ({_unexpected(exc)})"
            self._source_failed(st, SourceError(msg, source=name))

    def _flush(self) -> list[Chunk]:
        return self.chunker.flush() + self.spans.flush()

    def _block(self, st: Step, block: Block) -> None:
        """Check a block of whole lines as one span; feed its valid products as bytes."""
        res = check_block(
            block.data,
            self.validator,
            source=block.source,
            first_line=block.line,
            base_offset=block.offset,
            bom=block.offset == 0,
            cap=self.settings.read_cap,
        )
        block.nlines = len(res.line_starts) - 1
        st.read += res.read
        st.rejections.extend(res.rejections)
        kept = len(res.lines)
        if not kept:
            return
        if self.chunker.pending:
            self._encode(st, self.chunker.flush())  # records before this block leave first
        self.fed += kept
        lines = res.lines + block.line
        offsets = res.line_starts[res.lines] + block.offset
        self._encode(st, self.spans.feed(block.source, res.body, res.starts, lines, offsets))

    def _source_failed(self, st: Step, exc: SourceError) -> None:
        # What was read before the failure (the intact part of a truncated
        # file) is still chunked and sent; the run then stops with the error.
        st.done = True
        st.error = exc
        self._encode(st, self._flush())


def _source_name(src: Source) -> str:
    if isinstance(src, FileRange):
        return src.path
    if isinstance(src, str | os.PathLike):
        return "<stdin>" if src == "-" else os.fspath(src)
    if hasattr(src, "read"):
        name = getattr(src, "name", None)
        return name if isinstance(name, str) and name else "<stream>"
    return "<iterable>"


def _observed(
    items: Iterator[Record | Rejection], on_record: RecordHook
) -> Iterator[Record | Rejection]:
    for item in items:
        on_record(item if isinstance(item, Record) else item.record)
        yield item
