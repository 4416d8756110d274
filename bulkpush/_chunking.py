"""Cut a stream of records into request-sized chunks: pure, no I/O.

:class:`Chunker` is fed records one at a time and hands back the chunks they
complete (the model is elasticsearch-py's ``_ActionChunker``). Sizes are
measured in bytes *as sent*, before compression: :func:`encode_body` of a
chunk is exactly ``chunk.nbytes`` bytes long.

Limits, in order of authority:

1. ``max_count`` and ``max_bytes`` are hard: no chunk ever exceeds them.
2. ``target_bytes`` cuts a chunk as soon as it reaches that size, so requests
   stay short (chunked streams: well under the server's 10 s timeout;
   referenced streams: around 50 MB).
3. ``min_bytes`` (referenced streams: 10 MB): no chunk is smaller. The last
   completed chunk is held back until more records follow it; :meth:`flush`
   balances a small tail against it — merged when the two fit one request,
   otherwise split where the two halves are closest in size. A whole catalog
   under ``min_bytes`` raises :class:`~bulkpush.errors.CatalogTooSmall`; an
   empty catalog gives no chunk at all (nothing to send is not an error).
   ``min_bytes`` needs room to balance: ``max_bytes >= 2 * min_bytes`` is
   required, and a chunk that would have to be cut below ``min_bytes`` — by
   ``max_count``, or by records too large to balance — is a
   :class:`~bulkpush.errors.ConfigError` (give referenced streams a large
   ``max_count``: the 10,000 limit belongs to chunked streams; products of at
   most 1 MB always balance within 10–200 MB). ``min_bytes`` counts the body
   before compression.

Memory: the chunker holds the current chunk and, with ``min_bytes``, one
held-back chunk; nothing else.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from bulkpush._records import Chunk, Record, Span
from bulkpush.errors import CatalogTooSmall, ConfigError
from bulkpush.limits import MB, STREAM_API

__all__ = ["BodyFormat", "Chunker", "Numbering", "SpanChunker", "body_size", "encode_body"]

BodyFormat = Literal["ndjson", "json"]


def body_size(records_bytes: int, count: int, body_format: BodyFormat) -> int:
    """Size in bytes of a request body holding ``count`` records of ``records_bytes`` in total.

    NDJSON is each record followed by ``\\n``; JSON is ``[`` records joined by
    ``,`` ``]`` (``[]`` when empty).
    """
    if body_format == "ndjson":
        return records_bytes + count
    return records_bytes + max(count - 1, 0) + 2


class Numbering:
    """Chunk numbers from 0, shared by the chunkers of one run (records and spans)."""

    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        n = self.next
        self.next += 1
        return n


def encode_body(chunk: Chunk, body_format: BodyFormat) -> bytes:
    """The request body of ``chunk``: exactly ``chunk.nbytes`` bytes for its format."""
    if chunk.span is not None and body_format == "ndjson":
        return chunk.span.data()
    raws = [r.raw for r in chunk.records]
    if body_format == "ndjson":
        return b"\n".join(raws) + b"\n" if raws else b""
    return b"[" + b",".join(raws) + b"]"


class Chunker:
    """Cut records into chunks within count and byte limits (see the module docstring).

    ``feed`` returns the chunks a record completes (usually none, sometimes
    one, two when a held-back chunk is released too); ``flush`` returns the
    rest. Chunks are numbered by ``seq`` from 0 in the order they are returned.

    Raises :class:`ConfigError` for inconsistent limits (at construction) and
    for a record that cannot fit any chunk (validation prevents it: a
    programming error), :class:`CatalogTooSmall` from ``flush``.
    """

    def __init__(
        self,
        *,
        max_count: int = STREAM_API.max_products_per_request,
        max_bytes: int = STREAM_API.max_request_bytes,
        min_bytes: int = 0,
        target_bytes: int | None = None,
        body_format: BodyFormat = "ndjson",
        seq: Numbering | None = None,
    ) -> None:
        if body_format not in ("ndjson", "json"):
            raise ConfigError(f"unknown body format {body_format!r}: use 'ndjson' or 'json'")
        if max_count < 1:
            raise ConfigError(f"max_count must be at least 1, not {max_count}")
        if max_bytes < body_size(2, 1, body_format):
            raise ConfigError(f"max_bytes is too small to hold any record: {max_bytes}")
        if min_bytes < 0:
            raise ConfigError(f"min_bytes must not be negative, not {min_bytes}")
        if min_bytes and max_bytes < 2 * min_bytes:
            raise ConfigError(
                f"max_bytes ({max_bytes}) must be at least twice min_bytes ({min_bytes}) "
                "so that a small last chunk can be balanced"
            )
        if target_bytes is not None and not min_bytes <= target_bytes <= max_bytes:
            raise ConfigError(
                f"target_bytes ({target_bytes}) must lie between min_bytes ({min_bytes}) "
                f"and max_bytes ({max_bytes})"
            )
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.min_bytes = min_bytes
        self.target_bytes = target_bytes
        self.body_format: BodyFormat = body_format
        self._records: list[Record] = []
        self._bytes = 0  # sum of record sizes in _records, separators excluded
        self._held: list[Record] | None = None
        self._held_bytes = 0
        self._seq = seq if seq is not None else Numbering()
        self._extra = 0 if body_format == "ndjson" else 1

    def __repr__(self) -> str:
        return (
            f"<Chunker {self.body_format} max_count={self.max_count} max_bytes={self.max_bytes} "
            f"min_bytes={self.min_bytes} target_bytes={self.target_bytes} "
            f"next_seq={self._seq.next} pending={len(self._records)} "
            f"held={len(self._held or ())}>"
        )

    @property
    def pending(self) -> int:
        """Records fed and not yet returned in a chunk."""
        return len(self._records) + len(self._held or ())

    def _size(self, records_bytes: int, count: int) -> int:
        return body_size(records_bytes, count, self.body_format)

    def _emit(self, records: list[Record], records_bytes: int) -> Chunk:
        return Chunk(
            seq=self._seq.take(), records=records, nbytes=self._size(records_bytes, len(records))
        )

    def _cut(self, *, by_count: bool) -> list[Chunk]:
        """Close the current chunk; return what may be sent now."""
        records, nbytes = self._records, self._bytes
        self._records, self._bytes = [], 0
        if not self.min_bytes:
            return [self._emit(records, nbytes)]
        size = self._size(nbytes, len(records))
        if size < self.min_bytes:
            why = (
                f"max_count={self.max_count} forces it: raise max_count"
                if by_count
                else "the next record is too large for these limits"
            )
            raise ConfigError(
                f"cannot cut a chunk of at least min_bytes={self.min_bytes} bytes "
                f"(this one is {size}): {why}"
            )
        out = [] if self._held is None else [self._emit(self._held, self._held_bytes)]
        self._held, self._held_bytes = records, nbytes
        return out

    def feed(self, record: Record) -> list[Chunk]:
        """Add ``record``; return the chunks it completed, in order."""
        # The hot path (once per product): body_size() inlined. A body of n >= 1
        # records of b bytes is b + n bytes as NDJSON, b + n + 1 as JSON.
        size = len(record.raw)
        extra = self._extra
        if size + 1 + extra > self.max_bytes:
            raise ConfigError(
                f"a record of {size} bytes ({record.source}:{record.line}) cannot fit a request "
                f"of at most {self.max_bytes} bytes"
            )
        count = len(self._records)
        if count and self._bytes + size + count + 1 + extra > self.max_bytes:
            out = self._cut(by_count=False)
            count = 0
        else:
            out = []
        self._records.append(record)
        self._bytes += size
        count += 1
        if count >= self.max_count:
            out += self._cut(by_count=True)
        elif self.target_bytes is not None and self._bytes + count + extra >= self.target_bytes:
            out += self._cut(by_count=False)
        return out

    def flush(self) -> list[Chunk]:
        """Return every chunk not yet returned, the last ones balanced against ``min_bytes``."""
        records, nbytes = self._records, self._bytes
        held, held_bytes = self._held, self._held_bytes
        self._records, self._bytes, self._held, self._held_bytes = [], 0, None, 0
        if not self.min_bytes:
            return [self._emit(records, nbytes)] if records else []
        if held is None:
            if not records:
                return []
            size = self._size(nbytes, len(records))
            if size < self.min_bytes:
                raise CatalogTooSmall(
                    f"the catalog is {size:,} bytes; a referenced stream needs at least "
                    f"{self.min_bytes:,} bytes ({self.min_bytes / MB:g} MB) per request: "
                    "push it to a chunked stream instead",
                    nbytes=size,
                    min_bytes=self.min_bytes,
                )
            return [self._emit(records, nbytes)]
        if not records or self._size(nbytes, len(records)) >= self.min_bytes:
            out = [self._emit(held, held_bytes)]
            if records:
                out.append(self._emit(records, nbytes))
            return out
        both = held + records
        both_bytes = held_bytes + nbytes
        if len(both) <= self.max_count and self._size(both_bytes, len(both)) <= self.max_bytes:
            return [self._emit(both, both_bytes)]
        k, left_bytes = self._balanced_split(both)
        return [self._emit(both[:k], left_bytes), self._emit(both[k:], both_bytes - left_bytes)]

    def _balanced_split(self, records: list[Record]) -> tuple[int, int]:
        """The split point of ``records`` into two valid chunks closest in size."""
        total = sum(r.size for r in records)
        n = len(records)
        best: tuple[int, int, int] | None = None  # (imbalance, k, left_bytes)
        left = 0
        for k in range(1, n):
            left += records[k - 1].size
            a, b = self._size(left, k), self._size(total - left, n - k)
            if (
                k <= self.max_count
                and n - k <= self.max_count
                and self.min_bytes <= a <= self.max_bytes
                and self.min_bytes <= b <= self.max_bytes
                and (best is None or abs(a - b) < best[0])
            ):
                best = (abs(a - b), k, left)
        if best is None:
            raise ConfigError(
                f"cannot balance the last {n} records into chunks of {self.min_bytes} to "
                f"{self.max_bytes} bytes: records are too large for these limits"
            )
        return best[1], best[2]


class SpanChunker:
    """Cut runs of products kept as bytes into :class:`Span` chunks, a chunk at a time.

    The span fast path's :class:`Chunker`: the same ``max_count``,
    ``max_bytes`` and ``target_bytes``, found by a binary search over a
    run's line starts rather than product by product; NDJSON bodies only and
    no ``min_bytes`` (runs that need either take the record path). A chunk
    may take products from several runs (blocks) of one source; a new source
    starts a new chunk. ``feed`` copies what it keeps, so ``body`` may be a
    view of a buffer that is reused afterwards.
    """

    def __init__(
        self,
        *,
        max_count: int = STREAM_API.max_products_per_request,
        max_bytes: int = STREAM_API.max_request_bytes,
        target_bytes: int | None = None,
        seq: Numbering | None = None,
    ) -> None:
        if max_count < 1:
            raise ConfigError(f"max_count must be at least 1, not {max_count}")
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.target_bytes = target_bytes
        self._seq = seq if seq is not None else Numbering()
        self._source = ""
        # The open chunk: pieces of body, and their line starts (without the
        # end), line numbers and offsets.
        self._bodies: list[bytes | memoryview] = []
        self._starts: list[NDArray[np.uint32]] = []
        self._lines: list[NDArray[np.int64]] = []
        self._offsets: list[NDArray[np.int64]] = []
        self._count = 0
        self._bytes = 0

    def __repr__(self) -> str:
        return (
            f"<SpanChunker max_count={self.max_count} max_bytes={self.max_bytes} "
            f"target_bytes={self.target_bytes} pending={self._count}>"
        )

    @property
    def pending(self) -> int:
        """Products fed and not yet in a chunk."""
        return self._count

    def feed(
        self,
        source: str,
        body: bytes | memoryview,
        starts: NDArray[np.uint32],
        lines: NDArray[np.int64],
        offsets: NDArray[np.int64],
    ) -> list[Chunk]:
        """Add a run of ``len(lines)`` products; return the chunks it completed, in order.

        ``starts`` (``n + 1`` offsets into ``body``), ``lines`` and ``offsets``
        as :class:`Span` holds them.
        """
        out: list[Chunk] = []
        if source != self._source:
            out += self.flush()
            self._source = source
        n = len(lines)
        pos = 0
        big = np.asarray(starts, dtype=np.int64)
        while pos < n:
            base = int(big[pos])
            rest = big[pos:]
            # The most products that fit: by count, then by bytes.
            k = min(self.max_count - self._count, n - pos)
            room = self.max_bytes - self._bytes
            by_bytes = int(np.searchsorted(rest, base + room, side="right")) - 1
            full = k <= by_bytes and self._count + k == self.max_count
            if by_bytes < k:
                k, full = by_bytes, True
            if self.target_bytes is not None:
                need = self.target_bytes - self._bytes
                by_target = max(int(np.searchsorted(rest, base + need, side="left")), 1)
                if by_target <= k:
                    k, full = by_target, True
            if k <= 0:
                if self._count == 0:
                    size = int(big[pos + 1]) - base
                    raise ConfigError(
                        f"a product of {size - 1} bytes ({source}:{int(lines[pos])}) cannot fit "
                        f"a request of at most {self.max_bytes} bytes"
                    )
                out.append(self._cut())
                continue
            end = pos + k
            lo, hi = base, int(big[end])
            self._keep(body[lo:hi], full)
            self._starts.append((big[pos:end] - (base - self._bytes)).astype(np.uint32))
            self._lines.append(lines[pos:end])
            self._offsets.append(offsets[pos:end])
            self._count += k
            self._bytes += hi - lo
            pos = end
            if full:
                out.append(self._cut())
        return out

    def _keep(self, piece: memoryview | bytes, cut_now: bool) -> None:
        """Keep a piece of the open chunk's body (a copy, unless it is cut at once)."""
        self._bodies.append(piece if cut_now else bytes(piece))

    def _take_body(self) -> bytes:
        """The open chunk's body, the pieces kept so far let go."""
        body = b"".join(self._bodies)
        self._bodies = []
        return body

    def _cut(self) -> Chunk:
        nbytes = self._bytes
        starts = np.empty(self._count + 1, dtype=np.uint32)
        np.concatenate(self._starts, out=starts[:-1])
        starts[-1] = nbytes
        span = Span(
            self._source,
            self._take_body(),
            starts,
            np.concatenate(self._lines),
            np.concatenate(self._offsets),
        )
        self._starts, self._lines, self._offsets = [], [], []
        self._count = self._bytes = 0
        return Chunk(self._seq.take(), span=span, nbytes=nbytes)

    def flush(self) -> list[Chunk]:
        """The open chunk, if any products are in it."""
        return [self._cut()] if self._count else []
