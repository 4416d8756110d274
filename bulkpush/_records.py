"""The value types the pipeline stages pass to each other.

``Record`` (one product as read) → ``Chunk`` (an ordered run of records that
fits the target's limits) → ``Outcome`` (what the API said about one chunk,
mapped back to source positions). ``Rejection`` is a record that will not be,
or was not, accepted, with the reason. These types hold no resources and do
no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import orjson

__all__ = [
    "STAGE_CLIENT",
    "STAGE_UPLOAD",
    "Chunk",
    "Outcome",
    "Record",
    "Rejection",
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
class Chunk:
    """An ordered run of records sent in one request.

    ``seq`` numbers chunks from 0 in the order they were cut. ``nbytes`` is the
    size of the request body before compression. Line ``n`` of the request
    (1-based, as the API's ``lineNumber`` counts) is ``records[n - 1]``.
    """

    seq: int
    records: list[Record]
    nbytes: int

    def __len__(self) -> int:
        return len(self.records)

    @property
    def first(self) -> Record:
        return self.records[0]

    @property
    def last(self) -> Record:
        return self.records[-1]


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
    ``throttled`` how many of them were answered 429; ``pinpoint_requests``
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
