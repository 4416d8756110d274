"""The value types the pipeline stages pass to each other.

``Record`` (one product as read) → ``Chunk`` (an ordered run of records, or
a :class:`Span` of body bytes, that fits the target's limits) → ``Outcome``
(what the API said about one chunk, mapped back to source positions).
``Rejection`` is a record that will not be, or was not, accepted, with the
reason. These types hold no resources and do no I/O.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import orjson
from numpy.typing import NDArray

__all__ = [
    "STAGE_CLIENT",
    "STAGE_UPLOAD",
    "Chunk",
    "Outcome",
    "Record",
    "Rejection",
    "Span",
    "Stage",
    "Unattributed",
]

Stage = Literal["client", "upload"]
STAGE_CLIENT: Stage = "client"  # refused by bulkpush's own validation, never sent
STAGE_UPLOAD: Stage = "upload"  # refused by the API at upload (202 per-line errors, 422)


@dataclass(slots=True)
class Record:
    """One product as read from a source.

    ``line`` is 1-based and means what an editor shows: the line of an NDJSON
    file; for CSV the physical line where the row starts (the header is line
    1, so the first data row is usually line 2); the element number of a JSON
    array (1-based); the item number of an iterable. ``offset`` is the byte
    offset of the record's first byte in the (decompressed) source, or -1
    where a source has no byte positions (iterables). ``raw`` is the product
    exactly as it will be sent: one compact JSON object, no trailing newline.
    ``id`` is the product id as a string when known; :meth:`product_id`
    derives it from ``raw`` when not.
    """

    source: str
    line: int
    offset: int
    raw: bytes
    id: str | None = None

    @property
    def size(self) -> int:
        """The record's size in bytes as sent, without the separator."""
        return len(self.raw)

    def product_id(self) -> str | None:
        """The product id as a string, parsing ``raw`` if needed; None if there is none."""
        if self.id is not None:
            return self.id
        try:
            obj = orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            return None
        if isinstance(obj, dict):
            value = obj.get("id")
            if isinstance(value, bool) or value is None:
                return None
            if isinstance(value, str | int | float):
                self.id = str(value)
                return self.id
        return None


@dataclass(slots=True, frozen=True)
class Rejection:
    """A record that was not accepted, with the stage that refused it and why."""

    record: Record
    stage: Stage
    message: str


@dataclass(slots=True)
class Span:
    """A run of products kept as the bytes of their request body, not as objects.

    ``body`` is the NDJSON body (each product followed by ``\\n``), or None
    when only ``gzipped`` (the same body, one gzip member) was kept.
    ``starts`` (``n + 1`` offsets into the body; product ``k`` is
    ``body[starts[k]:starts[k + 1] - 1]``), ``lines`` and ``offsets`` (each
    product's line number and byte offset in ``source``) map any position the
    API names back to its source. A :class:`Record` is made only for a product
    that is asked for (:meth:`record`): a rejected one, or all of them when a
    caller needs the list.
    """

    source: str
    body: bytes | None
    starts: NDArray[np.uint32]
    lines: NDArray[np.int64]
    offsets: NDArray[np.int64]
    gzipped: bytes | None = None

    def __len__(self) -> int:
        return len(self.lines)

    def data(self) -> bytes:
        """The uncompressed body (decompressed from ``gzipped`` when that is all there is)."""
        if self.body is None:
            if self.gzipped is None:
                raise ValueError("a span holds neither its body nor its gzipped body")
            self.body = zlib.decompress(self.gzipped, 16 + zlib.MAX_WBITS)
        return self.body

    def record(self, k: int) -> Record:
        """Product ``k`` (0-based) as a record."""
        starts = self.starts
        raw = self.data()[int(starts[k]) : int(starts[k + 1]) - 1]
        return Record(self.source, int(self.lines[k]), int(self.offsets[k]), raw)

    def slice(self, a: int, b: int) -> Span:
        """Products ``a`` to ``b - 1`` as a span of their own (a copy of their bytes)."""
        starts = self.starts
        lo, hi = int(starts[a]), int(starts[b])
        return Span(
            self.source,
            self.data()[lo:hi],
            (starts[a : b + 1] - starts[a]).astype(np.uint32),
            self.lines[a:b],
            self.offsets[a:b],
        )


class Chunk:
    """An ordered run of products sent in one request.

    ``seq`` numbers chunks from 0 in the order they were cut. ``nbytes`` is the
    size of the request body before compression. A chunk holds either
    ``records`` or a :class:`Span` (the fast path: bytes and positions, no
    object per product); :attr:`records` makes the records of a span when
    first asked for. Line ``n`` of the request (1-based, as the API's
    ``lineNumber`` counts) is :meth:`record` ``(n - 1)``. ``payload``, when
    set, is the request body already compressed (by a reading process).
    """

    __slots__ = ("_made", "_records", "nbytes", "payload", "seq", "span")

    def __init__(
        self,
        seq: int,
        records: list[Record] | None = None,
        nbytes: int = 0,
        *,
        span: Span | None = None,
        payload: bytes | None = None,
    ) -> None:
        if (records is None) == (span is None):
            raise ValueError("a chunk holds records or a span, one of the two")
        self.seq = seq
        self.nbytes = nbytes
        self.span = span
        self.payload = payload
        self._records = records
        self._made: dict[int, Record] = {}

    def __repr__(self) -> str:
        kind = "span" if self.span is not None else "records"
        return f"Chunk(seq={self.seq}, {kind}, n={len(self)}, nbytes={self.nbytes})"

    def __len__(self) -> int:
        if self._records is not None:
            return len(self._records)
        assert self.span is not None
        return len(self.span)

    def record(self, k: int) -> Record:
        """Product ``k`` (0-based); the same object every time it is asked for."""
        if self._records is not None:
            return self._records[k]
        made = self._made.get(k)
        if made is None:
            assert self.span is not None
            made = self._made[k] = self.span.record(k)
        return made

    @property
    def records(self) -> list[Record]:
        """Every product as a record (made once for a span, reusing those already made)."""
        if self._records is None:
            self._records = [self.record(k) for k in range(len(self))]
        return self._records

    @property
    def source(self) -> str:
        return self.span.source if self.span is not None else self.first.source

    @property
    def first(self) -> Record:
        return self.record(0)

    @property
    def last(self) -> Record:
        return self.record(len(self) - 1)

    @property
    def first_line(self) -> int:
        return int(self.span.lines[0]) if self.span is not None else self.first.line

    @property
    def last_line(self) -> int:
        return int(self.span.lines[-1]) if self.span is not None else self.last.line


@dataclass(slots=True, frozen=True)
class Unattributed:
    """Rejections the API counted but did not name.

    The Stream API returns one example per error message per request; when a
    message has more occurrences than examples, the other rejected products
    of that request are unknown. ``count`` of them are somewhere between
    ``first_line`` and ``last_line`` of ``source``.
    """

    message: str
    count: int
    source: str
    first_line: int
    last_line: int
    batch_id: str | None = None


@dataclass(slots=True)
class Outcome:
    """What the API said about one chunk, mapped back to source positions.

    ``accepted + len(rejections) + unattributed_count + not_sent == len(chunk)``.
    ``status`` is the final HTTP status (0 when no answer was ever received).
    ``attempts`` counts every request made for this chunk, the first included;
    ``throttled`` how many of them were answered 429, ``timed_out`` how many
    the server ended for taking too long; ``pinpoint_requests``
    and ``pinpoint_bytes`` what finding its unnamed rejections cost.
    """

    chunk: Chunk
    status: int = 0
    batch_id: str | None = None
    accepted: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    unattributed: list[Unattributed] = field(default_factory=list)
    not_sent: int = 0
    attempts: int = 0
    throttled: int = 0
    bytes_sent: int = 0
    timed_out: int = 0
    error: str | None = None
    pinpoint_requests: int = 0
    pinpoint_bytes: int = 0

    @property
    def unattributed_count(self) -> int:
        return sum(u.count for u in self.unattributed)

    @property
    def rejected(self) -> int:
        """Rejected products, named or not."""
        return len(self.rejections) + self.unattributed_count
