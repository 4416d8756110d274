"""The target protocol: what the engine asks of an API it pushes to.

The engine (reading, validating, chunking, compressing, pacing, retrying,
accounting, rejects, progress) names no API. A target answers four questions:

- :meth:`Target.prepare`: does the destination exist and take this push? And
  the :class:`Plan`: products and bytes per request, the smallest payload,
  the body format, the compression, the largest product, the quota.
- :meth:`Target.upload`: the :class:`~bulkpush._http.Request` that carries
  one chunk's body (its bytes as encoded and compressed per the plan).
- :meth:`Target.classify`: what an upload's answer means, as a
  :data:`~bulkpush._retry.Verdict`; per-product errors name positions in the
  request (1-based line or item), which the engine maps back to source lines.

A target never sees per-product objects: it builds requests from body bytes
and reports positions, so chunks can be spans of the source's own bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bulkpush._chunking import BodyFormat
from bulkpush._compression import CompressionOptions
from bulkpush._quota import Quota
from bulkpush.errors import ConfigError

if TYPE_CHECKING:
    from bulkpush._http import Request, Response
    from bulkpush._options import PushOptions
    from bulkpush._retry import Executor, Verdict

__all__ = ["Plan", "Target"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """How one push to one destination is cut, encoded, compressed and paced.

    ``max_count`` products and ``max_bytes`` of body (before compression) per
    request at most, cut at ``target_bytes``; no request under ``min_bytes``
    (the chunker balances the last two). ``max_record_bytes``: the largest
    product the API takes (larger ones are rejected before sending).
    ``upserts``: sending a product twice is harmless (pinpointing unnamed
    rejections and resumed parts re-send products). ``destination`` is its
    id as the report shows it (``stream``), ``label`` its name in messages
    (default: the destination). ``inflight_bytes``:
    the least in-flight byte budget the plan needs (two of its largest
    requests), None for the options' own.
    """

    destination: str
    quota: Quota
    label: str = ""
    max_count: int
    max_bytes: int
    max_record_bytes: int
    compression: CompressionOptions
    target_bytes: int | None = None
    min_bytes: int = 0
    body_format: BodyFormat = "ndjson"
    upserts: bool = True
    inflight_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_count < 1 or self.max_bytes < 1 or self.max_record_bytes < 1:
            raise ConfigError(f"the plan for {self.name} has an empty limit: {self!r}")

    @property
    def name(self) -> str:
        """How messages name the destination."""
        return self.label or self.destination


class Target(Protocol):
    """An API the engine pushes catalogs to (see the module docstring).

    ``kind`` names the target in job specs (``"productsup-stream"``).
    """

    kind: str

    async def prepare(
        self, executor: Executor, *, options: PushOptions, total_bytes: int | None
    ) -> Plan:
        """Check the destination (raise :class:`~bulkpush.errors.BulkpushError` if it cannot
        take this push) and return the plan. ``total_bytes``: the catalog's size when known."""
        ...

    def upload(self, body: bytes, plan: Plan) -> Request:
        """The request that sends one chunk's ``body`` (encoded and compressed per ``plan``)."""
        ...

    def classify(self, resp: Response) -> Verdict:
        """What an upload's answer means."""
        ...
