"""The reader: the sequential part of a push (read, validate, chunk, encode), one step at a time.

:class:`Reader` runs in a worker thread; each :meth:`Reader.step` reads up to
``STEP_RECORDS`` records (or until a chunk is complete) and hands back what it
read, rejected and cut. ``stop_requested`` ends reading at the next step.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from bulkpush._chunking import BodyFormat, Chunker, encode_body
from bulkpush._records import STAGE_CLIENT, Chunk, Record, Rejection
from bulkpush._validation import Validator
from bulkpush.errors import BulkpushError, SourceError
from bulkpush.sources import (
    DEFAULT_MAX_RECORD_BYTES,
    FileRange,
    Format,
    iter_objects,
    iter_records,
)

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
        self.chunker = Chunker(
            max_count=settings.max_count,
            max_bytes=settings.max_bytes,
            min_bytes=settings.min_bytes,
            target_bytes=settings.target_bytes,
            body_format=settings.body_format,
        )
        items = self._items(sources)
        # Only a run that asked for the hook pays for the extra generator.
        self.items = items if on_record is None else _observed(items, on_record)
        self.stop_requested = stop_requested or threading.Event()
        self.stopped_early = False
        self.fed = 0
        self.cut = 0
        self.bytes_read = 0
        self.source_name = "the catalog"  # the source being read, for an unexpected error

    def _count(self, nbytes: int) -> None:
        self.bytes_read += nbytes

    def _items(self, sources: Iterable[Source]) -> Iterator[Record | Rejection]:
        cap = self.settings.read_cap
        fmt = self.settings.format
        delimiter = self.settings.csv_delimiter
        # Files count every byte read (blank lines too) as they read them.
        count = self._count
        for src in sources:
            self.source_name = _source_name(src)
            if isinstance(src, FileRange):
                yield from src.records(
                    format=fmt, max_record_bytes=cap, csv_delimiter=delimiter, on_bytes=count
                )
            elif isinstance(src, str | os.PathLike) or hasattr(src, "read"):
                yield from iter_records(
                    src,  # type: ignore[arg-type]
                    format=fmt,
                    max_record_bytes=cap,
                    csv_delimiter=delimiter,
                    on_bytes=count,
                )
            else:
                # Python objects have no bytes: count them as the NDJSON lines they make.
                for item in iter_objects(src, max_record_bytes=cap):
                    record = item.record if isinstance(item, Rejection) else item
                    self.bytes_read += len(record.raw) + 1
                    yield item

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
                self._encode(st, self.chunker.flush())
                return
            for item in self.items:
                st.read += 1
                if isinstance(item, Rejection):
                    st.rejections.append(item)
                else:
                    try:
                        rejection = validator(item)
                    except Exception as exc:
                        # One crafted product must not end the run: it alone is rejected.
                        rejection = self._unchecked(item, exc)
                    if rejection is not None:
                        st.rejections.append(rejection)
                    else:
                        self.fed += 1
                        done = feed(item)
                        if done:
                            self._encode(st, done)
                if st.chunks or st.read >= STEP_RECORDS:
                    return
            st.done = True
            self._encode(st, self.chunker.flush())
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

    @staticmethod
    def _unchecked(record: Record, exc: Exception) -> Rejection:
        _log.debug("checking %s line %d failed", record.source, record.line, exc_info=True)
        message = f"The product could not be checked: an unexpected {type(exc).__name__}"
        return Rejection(record, STAGE_CLIENT, message)

    def _source_failed(self, st: Step, exc: SourceError) -> None:
        # What was read before the failure (the intact part of a truncated
        # file) is still chunked and sent; the run then stops with the error.
        st.done = True
        st.error = exc
        self._encode(st, self.chunker.flush())


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
