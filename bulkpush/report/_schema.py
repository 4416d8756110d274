"""The JSON report's schema, typed: every key written down once, in the order it is written.

:class:`ReportData` has one field per key of the JSON report (docs/report.md,
"The JSON report"); :meth:`Report.to_dict <bulkpush.report.Report.to_dict>`
builds one, :func:`~bulkpush.report.merge_reports` reads and builds them,
and the summary renders one, so a key is spelled only here and mypy checks
every use. Fields marked as contract keys make :data:`CONTRACT_KEYS`.
The nested entries are ``TypedDict``s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypedDict

from bulkpush._records import STAGE_CLIENT, STAGE_UPLOAD
from bulkpush._version import __version__

__all__ = [
    "CONTRACT_KEYS",
    "MB",
    "ChunkErrorEntry",
    "ErrorEntry",
    "Example",
    "Pinpoint",
    "ReportData",
    "UnattributedEntry",
    "rate",
]

MB = 1_000_000  # reports use decimal megabytes, as network rates do

_CONTRACT = {"contract": True}  # scripts depend on these keys: never remove or rename one


class Example(TypedDict):
    """Where one product refused for a message is: ``line`` 1-based; ``id`` None if it has none."""

    source: str
    line: int
    id: str | None


class ErrorEntry(TypedDict):
    """One aggregated error: products refused at ``stage`` for ``message``."""

    stage: str
    message: str
    occurrences: int
    examples: list[Example]


class UnattributedEntry(TypedDict):
    """Products the API counted under ``message`` in one request but did not name."""

    message: str
    count: int
    source: str
    first_line: int
    last_line: int
    batch_id: str | None


class ChunkErrorEntry(TypedDict):
    """A request that ended in an error (a 422, a stopping 403, retries exhausted)."""

    seq: int
    status: int
    error: str
    source: str | None
    first_line: int | None
    last_line: int | None
    products: int
    not_sent: int
    batch_id: str | None


class Pinpoint(TypedDict):
    """What ``--pinpoint-rejects`` cost (already counted in ``requests``/``bytes_sent``)."""

    requests: int
    bytes_sent: int


def _by_stage() -> dict[str, int]:
    return {STAGE_CLIENT: 0, STAGE_UPLOAD: 0}


def _pinpoint() -> Pinpoint:
    return {"requests": 0, "bytes_sent": 0}


@dataclass(slots=True)
class ReportData:
    """The JSON report of a run, or of a job's merged parts; keys and meanings in docs/report.md.

    :meth:`to_dict` writes the fields in this order (``parts`` only when
    set); :meth:`from_dict` reads a report dict back, a missing or ``null``
    key taking its default (reports written by older versions merge too).
    """

    # -- contract keys
    read: int = field(default=0, metadata=_CONTRACT)
    accepted: int = field(default=0, metadata=_CONTRACT)
    rejected: int = field(default=0, metadata=_CONTRACT)
    not_sent: int = field(default=0, metadata=_CONTRACT)
    requests: int = field(default=0, metadata=_CONTRACT)
    retries: int = field(default=0, metadata=_CONTRACT)
    throttled: int = field(default=0, metadata=_CONTRACT)
    batches: list[str] = field(default_factory=list, metadata=_CONTRACT)
    bytes_read: int = field(default=0, metadata=_CONTRACT)
    bytes_sent: int = field(default=0, metadata=_CONTRACT)
    duration_s: float = field(default=0.0, metadata=_CONTRACT)
    errors: list[ErrorEntry] = field(default_factory=list, metadata=_CONTRACT)
    # -- extras
    balanced: bool = True
    timed_out: int = 0
    link_mb_per_s: float = 0.0
    rejected_by_stage: dict[str, int] = field(default_factory=_by_stage)
    unattributed_total: int = 0
    unattributed: list[UnattributedEntry] = field(default_factory=list)
    pinpoint: Pinpoint = field(default_factory=_pinpoint)
    chunk_errors: list[ChunkErrorEntry] = field(default_factory=list)
    chunk_errors_total: int = 0
    anomalies: list[str] = field(default_factory=list)
    stopped: str | None = None
    dry_run: bool = False
    would_send: int = 0
    would_send_requests: int = 0
    would_send_bytes: int = 0
    stream: str | None = None
    target: str | None = None
    rejects_file: str | None = None
    rejects_written: int | None = None
    products_per_s: float = 0.0
    mb_per_s_sent: float = 0.0
    version: str = __version__
    # -- merged job reports only
    parts: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as the JSON object written to disk (the values themselves, not copies)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.parts is None:
            del d["parts"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReportData:
        """Read a report dict; unknown keys are ignored, missing or ``null`` ones defaulted."""
        return cls(**{k: v for k, v in d.items() if k in _FIELDS and v is not None})


_FIELDS = frozenset(f.name for f in fields(ReportData))

#: The keys every JSON report has; scripts depend on them, never remove one.
CONTRACT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(ReportData) if f.metadata)


def rate(amount: float, seconds: float) -> float:
    """``amount`` per second, rounded as the report writes rates; 0.0 for no duration."""
    return round(amount / seconds, 3) if seconds > 0 else 0.0
