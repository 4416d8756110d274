"""The value types of load jobs, and their JSON form (queues hold JSON, never pickles).

A :class:`JobSpec` is what ``bulkpush jobs submit`` asks for: sources, a
:class:`Target` (its kind, stream, API URL, the *name* of the environment
variable holding the token — never the token) and :class:`JobOptions` (the push
options, as the ``push`` command takes them). :func:`plan_parts` cuts the
sources into :class:`Part` s: newline-aligned byte ranges of plain NDJSON
files, one whole-file part for anything else. A :class:`JobView` is what
``jobs show`` prints: status, progress and the merged report.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import orjson

from bulkpush._compression import CompressionOptions
from bulkpush._concurrency import ConcurrencyOptions
from bulkpush._options import PushOptions
from bulkpush._retry import RetryPolicy
from bulkpush._validation import ValidationOptions
from bulkpush.errors import BulkpushError, ConfigError, QueueError
from bulkpush.report import merge_reports
from bulkpush.sources import split_ranges
from bulkpush.targets import KINDS, target_kind
from bulkpush.worker._urls import redact_url

__all__ = [
    "DEFAULT_TARGET_KIND",
    "DEFAULT_TOKEN_ENV",
    "JOB_STATUSES",
    "JobOptions",
    "JobSpec",
    "JobStatus",
    "JobView",
    "Part",
    "PartStatus",
    "Target",
    "check_target_kind",
    "job_status",
    "new_job_id",
    "plan_parts",
]

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
PartStatus = Literal["queued", "running", "done", "failed", "cancelled"]
JOB_STATUSES: tuple[JobStatus, ...] = ("queued", "running", "done", "failed", "cancelled")
DEFAULT_TOKEN_ENV = "BULKPUSH_TOKEN"
# The kinds of target a job may name, each with its default API URL. A stored
# spec without a kind predates kinds: it is a Productsup stream.
DEFAULT_TARGET_KIND = "productsup-stream"
# A part of about this many bytes keeps a worker busy for a few seconds at
# full rate, short enough that several workers share a big catalog.
DEFAULT_PART_BYTES = 64 * 1024 * 1024
MAX_AUTO_PARTS = 256


def new_job_id() -> str:
    """A short, unique, URL-safe job id: a sortable time prefix and random bits."""
    return f"{int(time.time()):x}-{secrets.token_hex(4)}"


def check_target_kind(kind: str) -> None:
    """Raise :class:`ConfigError` unless ``kind`` is a known target kind (named in it)."""
    target_kind(kind)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """Where a job pushes: a stream of the target ``kind``'s API at ``api_url``.

    ``api_url`` left empty is the kind's default (:data:`bulkpush.targets.KINDS`).
    ``token_env`` names the environment variable the worker reads the token
    from; the token itself is never stored in the queue. An unknown ``kind``
    is accepted here, so that a stored spec always parses: queues refuse it
    at submit and a worker fails such a job (:func:`check_target_kind`).
    """

    kind: str = DEFAULT_TARGET_KIND
    stream: str
    stream_type: Literal["chunked", "referenced"] | None = None
    api_url: str = ""
    token_env: str = DEFAULT_TOKEN_ENV
    ca_bundle: str | None = None
    insecure: bool = False
    integration: str | None = None

    def __post_init__(self) -> None:
        if not self.stream:
            raise ConfigError("a job needs a stream id")
        if not self.api_url and self.kind in KINDS:
            object.__setattr__(self, "api_url", KINDS[self.kind].default_api_url)
        if not self.token_env or not self.token_env.replace("_", "").isalnum():
            raise ConfigError(
                f"--token-env must be an environment variable name, not {self.token_env!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class JobOptions:
    """The push options of a job, as the ``push`` command takes them (JSON-able).

    ``bulkpush push`` and ``jobs submit`` parse their shared flags into this
    (:mod:`bulkpush._cli_options`); :meth:`push_options` builds the
    :class:`PushOptions` of a run. ``compression`` None: gzip (as the target
    decides).
    ``max_in_flight`` caps the requests in flight (and so the window a
    reclaimed part may send twice); None keeps the client's default.
    ``rejects``: the job's rejects file (each part writes ``rejects.partNNNNN-A``,
    merged into it when the job is done); ``report``: where the worker that
    finishes the job writes its JSON report. ``request_time``: seconds a
    request should take on the uplink (``PushOptions.request_time_s``).
    """

    format: Literal["ndjson", "json", "csv", "rejects"] | None = None
    csv_delimiter: str | None = None
    compression: Literal["gzip", "none"] | None = None
    gzip_level: int | None = None
    rate: float | None = None
    pinpoint_rejects: bool = False
    validation: Literal["full", "light"] = "full"
    flatten: bool = False
    separator: str = "."
    max_products: int = 10_000
    request_mb: float | None = None
    body_format: Literal["ndjson", "json"] | None = None
    lock_deadline: float = 900.0
    max_attempts: int = 8
    request_time: float = 5.0
    max_in_flight: int | None = None
    rejects: str | None = None
    report: str | None = None

    def push_options(
        self, *, stream_type: str | None = None, rejects_path: str | None = None
    ) -> PushOptions:
        """The :class:`PushOptions` for one part (``rejects_path``: that part's file)."""
        concurrency = ConcurrencyOptions()
        if self.max_in_flight is not None:
            concurrency = ConcurrencyOptions(
                initial=min(concurrency.initial, self.max_in_flight),
                maximum=self.max_in_flight,
            )
        return PushOptions(
            stream_type=stream_type,  # type: ignore[arg-type]
            format=self.format,
            csv_delimiter=self.csv_delimiter,
            body_format=self.body_format,
            validation=ValidationOptions(
                level=self.validation, flatten=self.flatten, separator=self.separator
            ),
            compression=(
                CompressionOptions(codec=self.compression or "gzip", level=self.gzip_level)
                if self.compression or self.gzip_level is not None
                else None
            ),
            max_products_per_request=self.max_products,
            request_bytes=int(self.request_mb * 1_000_000) if self.request_mb else None,
            rate=self.rate,
            retry=RetryPolicy(lock_deadline_s=self.lock_deadline, max_attempts=self.max_attempts),
            concurrency=concurrency,
            rejects_path=rejects_path,
            pinpoint_rejects=self.pinpoint_rejects,
            request_time_s=self.request_time,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """What to load: ``sources`` (paths every worker can read) into ``target``."""

    sources: tuple[str, ...]
    target: Target
    options: JobOptions = field(default_factory=JobOptions)
    parts: int | None = None  # parts per splittable source; None: by size

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("a job needs at least one source")
        if any(s == "-" for s in self.sources):
            raise ConfigError("a job reads files: stdin cannot be queued")
        if self.parts is not None and self.parts < 1:
            raise ConfigError("parts must be at least 1")
        # Fail early on options the push would refuse.
        self.options.push_options(stream_type=self.target.stream_type)

    def to_json(self) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "target": asdict(self.target),
            "options": asdict(self.options),
            "parts": self.parts,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobSpec:
        """Parse :meth:`to_json` output; raises :class:`QueueError` when it is malformed.

        A key this version does not know (in the spec, its target or its
        options) is refused by name: a newer bulkpush may have queued it,
        and running the job without the option would run another job.
        """
        try:
            _known_keys("job spec", data, {"sources", "target", "options", "parts"})
            target = data["target"]
            options = data.get("options") or {}
            _known_keys("target", target, {f.name for f in fields(Target)})
            _known_keys("option", options, {f.name for f in fields(JobOptions)})
            sources = data["sources"]
            if not isinstance(sources, list):
                raise QueueError("malformed job spec: sources must be a list")
            return cls(
                sources=tuple(str(s) for s in sources),
                target=Target(**target),
                options=JobOptions(**options),
                parts=data.get("parts"),
            )
        except QueueError:
            raise
        except (KeyError, TypeError) as exc:
            raise QueueError(f"malformed job spec: {exc}") from exc
        except BulkpushError as exc:
            raise QueueError(f"invalid job spec: {exc}") from exc

    @classmethod
    def from_stored(cls, raw: str | bytes) -> JobSpec:
        """Parse a spec as a queue stores it (JSON text); raises :class:`QueueError`.

        Not JSON, not an object, unknown keys, invalid values: each is a
        :class:`QueueError` naming the problem, never another exception, so
        the queue fails that job alone.
        """
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise QueueError(f"the job spec is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise QueueError("the job spec is not a JSON object")
        return cls.from_json(data)

    @classmethod
    def for_view(cls, raw: str | bytes) -> tuple[JobSpec, str | None]:
        """The stored spec for ``jobs show``/``list``, and why it cannot run (None if it can).

        A spec this version cannot parse is shown as best it can be (its
        sources and stream, if readable), so listing jobs never fails on it.
        """
        try:
            return cls.from_stored(raw), None
        except QueueError as exc:
            reason = str(exc)
        data: Any = None
        with contextlib.suppress(orjson.JSONDecodeError):
            data = orjson.loads(raw)
        doc = data if isinstance(data, dict) else {}
        raw_sources = doc.get("sources")
        sources = [str(s) for s in raw_sources] if isinstance(raw_sources, list) else []
        raw_target = doc.get("target")
        target = raw_target if isinstance(raw_target, dict) else {}
        try:
            shown = Target(
                kind=str(target.get("kind") or DEFAULT_TARGET_KIND),
                stream=str(target.get("stream") or "?"),
                api_url=str(target.get("api_url") or ""),
                token_env=str(target.get("token_env") or DEFAULT_TOKEN_ENV),
            )
        except ConfigError:
            shown = Target(stream=str(target.get("stream") or "?"))
        spec = cls.__new__(cls)  # unchecked: it only shows what was stored
        object.__setattr__(spec, "sources", tuple(sources))
        object.__setattr__(spec, "target", shown)
        object.__setattr__(spec, "options", JobOptions())
        object.__setattr__(spec, "parts", None)
        return spec, reason

    def with_absolute_sources(self) -> JobSpec:
        """The same spec with sources as absolute paths (workers may run elsewhere)."""
        return replace(self, sources=tuple(os.path.abspath(s) for s in self.sources))


@dataclass(frozen=True, slots=True, kw_only=True)
class Part:
    """One unit of work: the lines of ``source`` whose first byte lies in [start, end).

    ``end`` None means the whole source, read as the ``push`` command reads
    it (any format, compressed too); such a part cannot resume mid-file and
    restarts from its beginning. ``offset``/``line`` are the checkpoint:
    every record before ``offset`` is accounted in ``report`` (the committed
    report); a resumed part reads from ``offset``, whose line is ``line``.
    ``waiting_since``/``waiting_attempts``: see :meth:`JobQueue.defer`.
    """

    job_id: str
    index: int
    source: str
    start: int = 0
    end: int | None = None
    first_line: int = 1
    status: PartStatus = "queued"
    offset: int = 0
    line: int = 1
    report: dict[str, Any] | None = None
    attempts: int = 0
    worker: str | None = None
    error: str | None = None
    # Since when (Unix time) the part has waited for a worker that has its
    # job's token, and its ``attempts`` then: a real attempt since resets it.
    waiting_since: float | None = None
    waiting_attempts: int = 0

    @property
    def ranged(self) -> bool:
        return self.end is not None

    @property
    def key(self) -> str:
        return f"{self.job_id}/{self.index}"

    def token_wait(self, now: float) -> float:
        """Seconds the part has been given back by workers without its token, none taking it."""
        if self.waiting_since is None or self.waiting_attempts != self.attempts - 1:
            return 0.0  # never deferred, or a worker ran it since (a leased part counts one)
        return max(0.0, now - self.waiting_since)

    def progress(self) -> float:
        """Share of the part done, 0..1 (by bytes for ranges)."""
        if self.status == "done":
            return 1.0
        if self.end is None or self.end <= self.start:
            return 0.0
        return max(0.0, min(1.0, (self.offset - self.start) / (self.end - self.start)))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Part:
        try:
            return cls(**data)
        except TypeError as exc:
            raise QueueError(f"malformed part: {exc}") from exc


def _known_keys(what: str, data: Any, known: set[str]) -> None:
    if not isinstance(data, dict):
        raise QueueError(f"malformed job spec: the {what} is not a JSON object")
    unknown = sorted(set(data) - known)
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise QueueError(
            f"unknown {what} key{'s' if len(unknown) > 1 else ''} {names}: "
            "queued by a newer bulkpush? Run the job with a worker that knows it"
        )


def _auto_parts(size: int) -> int:
    return max(1, min(MAX_AUTO_PARTS, math.ceil(size / DEFAULT_PART_BYTES)))


def _splittable(path: str) -> bool:
    name = path.lower()
    if name.endswith((".gz", ".zst", ".csv", ".json")):
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return not head.startswith((b"\x1f\x8b", b"\x28\xb5\x2f\xfd", b"["))


def plan_parts(job_id: str, spec: JobSpec) -> list[Part]:
    """Cut a job's sources into parts (reads each plain NDJSON file once).

    A source that cannot be read still gets one whole-file part: the worker
    that takes it fails the job with the reading error, so ``jobs show``
    says what went wrong.
    """
    parts: list[Part] = []
    for source in spec.sources:
        ranges: list[tuple[int, int, int]] | None = None
        if spec.options.format in (None, "ndjson") and _splittable(source):
            try:
                size = Path(source).stat().st_size
                n = spec.parts or _auto_parts(size)
                ranges = split_ranges(source, n)
            except BulkpushError:
                ranges = None
        if ranges is None:
            parts.append(Part(job_id=job_id, index=len(parts), source=source))
            continue
        for start, end, first_line in ranges:
            parts.append(
                Part(
                    job_id=job_id,
                    index=len(parts),
                    source=source,
                    start=start,
                    end=end,
                    first_line=first_line,
                    offset=start,
                    line=first_line,
                )
            )
    return parts


def job_status(cancelled: bool, error: str | None, parts: list[Part]) -> JobStatus:
    """A job's status from its parts: cancelled and failed win, then done, running, queued."""
    if cancelled:
        return "cancelled"
    if error is not None or any(p.status == "failed" for p in parts):
        return "failed"
    if parts and all(p.status == "done" for p in parts):
        return "done"
    if any(p.status in ("running", "done") or p.attempts for p in parts):
        return "running"
    return "queued"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobView:
    """A job as ``jobs show`` prints it: spec, status, parts and the merged report."""

    id: str
    spec: JobSpec
    status: JobStatus
    created: float
    parts: tuple[Part, ...]
    error: str | None = None
    finished: float | None = None

    def report(self) -> dict[str, Any]:
        """The job's report so far: its parts' committed reports merged (``push --report`` keys)."""
        reports = [p.report for p in self.parts if p.report]
        merged = merge_reports(reports)
        merged["stream"] = merged.get("stream") or self.spec.target.stream
        if merged.get("target"):
            merged["target"] = redact_url(str(merged["target"]))
        merged["rejects_file"] = self.spec.options.rejects
        merged["parts"] = len(self.parts)
        return merged

    def progress(self) -> dict[str, Any]:
        done = sum(1 for p in self.parts if p.status == "done")
        share = sum(p.progress() for p in self.parts) / len(self.parts) if self.parts else 0.0
        return {
            "parts": len(self.parts),
            "parts_done": done,
            "parts_running": sum(1 for p in self.parts if p.status == "running"),
            "fraction": round(share, 4),
        }

    def to_json(self, *, with_parts: bool = True) -> dict[str, Any]:
        """The ``jobs show --json`` document."""
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "error": self.error,
            "created": self.created,
            "finished": self.finished,
            "sources": list(self.spec.sources),
            "target": {
                "kind": self.spec.target.kind,
                "stream": self.spec.target.stream,
                "api_url": redact_url(self.spec.target.api_url),
                "token_env": self.spec.target.token_env,
            },
            "progress": self.progress(),
            "report": self.report(),
        }
        if with_parts:
            out["parts"] = [
                {
                    "index": p.index,
                    "source": p.source,
                    "start": p.start,
                    "end": p.end,
                    "status": p.status,
                    "offset": p.offset,
                    "attempts": p.attempts,
                    "worker": p.worker,
                    "error": p.error,
                }
                for p in self.parts
            ]
        return out
