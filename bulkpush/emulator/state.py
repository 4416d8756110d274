"""What the emulator remembers: streams, their products and batches, sites.

Pure data and rules, no HTTP: the handlers translate :class:`StateError` into
answers. Every method runs on the event loop thread, so nothing here locks.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from bulkpush.emulator.config import EmulatorConfig, Faults
from bulkpush.emulator.faults import FaultState, stream_rng
from bulkpush.emulator.validation import ErrorAggregate, UploadResult

__all__ = [
    "STREAM_STATUSES",
    "STREAM_TYPES",
    "Batch",
    "Datasource",
    "EmulatorState",
    "LoggedRequest",
    "Process",
    "Site",
    "StateError",
    "Stream",
    "iso_time",
]

STREAM_TYPES = frozenset({"chunked", "referenced"})
# "Response depending from stream status": the documented statuses.
STREAM_STATUSES = frozenset({"active", "disabled", "locked", "locked_upload", "locked_processing"})
# Statuses under which "HTTP app returns 423 Locked" for uploads.
UPLOAD_LOCKED = frozenset({"locked", "locked_upload"})
# Statuses under which the platform does not import the stream.
IMPORT_LOCKED = frozenset({"locked", "locked_processing"})

ProcessStatus = Literal["queued", "running", "success", "failed"]


def iso_time(ts: float) -> str:
    """Unix seconds as the reference writes times: ``2022-11-23T17:07:45+00:00``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class StateError(Exception):
    """Raised when a request breaks a rule; carries the answer's status and title."""

    def __init__(self, status: int, title: str, detail: str | None = None) -> None:
        super().__init__(f"{status} {title}")
        self.status = status
        self.title = title
        self.detail = detail


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request as the emulator saw it.

    Attributes:
        method, path, query: the request line (query string without ``?``).
        status: the status answered; 0 when the connection was dropped unanswered.
        time: Unix time the request arrived.
        duration_s: seconds until the answer was ready.
        size: body bytes read from the wire (compressed size for gzip; 0 when the
            request was refused before its body was read).
        headers: request headers, without ``Authorization`` and ``X-Auth-Token``.
        products: lines (or array elements) in an upload body; 0 otherwise.
        stream_id: the stream in the path, if any.
        batch_id: the batch an upload created, if any.
        timed_out: answered 504 because it outlived ``request_timeout_s``.
    """

    method: str
    path: str
    query: str
    status: int
    time: float
    duration_s: float
    size: int
    headers: Mapping[str, str]
    products: int = 0
    stream_id: str | None = None
    batch_id: str | None = None
    timed_out: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the attributes."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "time": self.time,
            "duration_s": self.duration_s,
            "size": self.size,
            "headers": dict(self.headers),
            "products": self.products,
            "stream_id": self.stream_id,
            "batch_id": self.batch_id,
            "timed_out": self.timed_out,
        }


@dataclass(slots=True)
class Stage:
    """One stage (``upload`` or ``processing``) of a batch."""

    completed_at: float
    status: str  # success | warning | failure
    success_count: int
    error_count: int
    errors: list[ErrorAggregate]

    def to_json(self) -> dict[str, Any]:
        """The documented stage object."""
        return {
            "completedAt": iso_time(self.completed_at),
            "status": self.status,
            "successCount": self.success_count,
            "errorCount": self.error_count,
            "errors": [e.to_json() for e in self.errors],
        }


def _stage_status(success: int, errors: int) -> str:
    # "success - no invalid products were encountered; warning - at least 1 invalid
    # product was encountered; failure - all products were invalid"
    if errors == 0:
        return "success"
    return "failure" if success == 0 else "warning"


@dataclass(slots=True)
class Batch:
    """The record of one upload, as ``GET /streams/{id}/batches/{batchId}`` shows it."""

    id: str
    stream_id: str
    upload: Stage
    processing: Stage | None = None
    # Errors a referenced stream's processing stage will report (see validation).
    pending_processing_errors: dict[str, ErrorAggregate] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``uploaded``, ``processed`` or ``failed`` (reference: "Batches")."""
        if self.upload.status == "failure":
            return "failed"
        if self.processing is None:
            return "uploaded"
        return "failed" if self.processing.status == "failure" else "processed"

    @property
    def error_count(self) -> int:
        """Errors of both stages ("the total number of errors occurred during both stages")."""
        return self.upload.error_count + (self.processing.error_count if self.processing else 0)

    def to_resource(self) -> dict[str, Any]:
        """The JSON:API ``data`` object of the batch (reference Response 3 and 6)."""
        return {
            "type": "batch",
            "id": self.id,
            "attributes": {
                "status": self.status,
                "errorCount": self.error_count,
                "stages": {
                    "upload": self.upload.to_json(),
                    "processing": self.processing.to_json() if self.processing else None,
                },
            },
            "relationships": {"stream": {"data": {"type": "stream", "id": self.stream_id}}},
        }


@dataclass(slots=True)
class Stream:
    """One stream and everything stored in it."""

    id: str
    name: str
    type: str
    created_at: float
    updated_at: float
    rng: random.Random
    status: str = "active"
    products: dict[str, bytes] = field(default_factory=dict)
    upload_counts: Counter[str] = field(default_factory=Counter)
    batches: dict[str, Batch] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    faults: FaultState | None = None  # None: the emulator's default faults

    def to_resource(self, account_id: str) -> dict[str, Any]:
        """The JSON:API ``data`` object of the stream (reference Response 1)."""
        return {
            "type": "stream",
            "id": self.id,
            "attributes": {
                "name": self.name,
                "type": self.type,
                "createdAt": iso_time(self.created_at),
                "updatedAt": iso_time(self.updated_at),
            },
            "relationships": {"account": {"data": {"type": "account", "id": account_id}}},
        }


@dataclass(slots=True)
class Datasource:
    """A Stream API datasource of a site (Platform API "Site Stream Data Sources")."""

    id: int
    site_id: int
    stream_id: int
    description: str = ""
    import_type: int = 1
    status: str = "active"

    def to_json(self) -> dict[str, Any]:
        """The documented datasource object."""
        return {
            "id": self.id,
            "site_id": self.site_id,
            "description": self.description,
            "source": "",
            "import_type": self.import_type,
            # Assumption: the reference's examples always show import_id 331.
            "import_id": 331,
            "status": self.status,
            "settings": [f"stream : {self.stream_id}"],
        }


@dataclass(slots=True)
class Process:
    """A triggered site process (Platform API "Process data")."""

    pid: str
    site_id: int
    action: str
    status: ProcessStatus = "queued"
    created_at: float = field(default_factory=time.time)


@dataclass(slots=True)
class Site:
    """A site: its stream datasources and processes."""

    id: int
    datasources: dict[int, Datasource] = field(default_factory=dict)  # by stream id
    processes: dict[str, Process] = field(default_factory=dict)  # by pid
    pending: deque[Process] = field(default_factory=deque)  # running first, then queued
    last_trigger: float | None = None  # monotonic, for process_interval_s


class EmulatorState:
    """All of the emulator's data, and the rules that change it."""

    def __init__(self, config: EmulatorConfig, *, account_id: str = "1") -> None:
        self.config = config
        self.account_id = account_id
        self.streams: dict[str, Stream] = {}
        self.reserved_names: dict[str, float] = {}  # name -> Unix time it is free again
        self.sites: dict[int, Site] = {}
        self.default_faults = FaultState(config.faults)
        self.request_log: deque[LoggedRequest] = deque(maxlen=config.request_log_size)
        self.counters: Counter[str] = Counter()
        self._next_stream_id = 124_773  # the reference's example id
        self._next_datasource_id = 1

    # -- streams ---------------------------------------------------------------

    def _check_name(self, name: object, *, exclude: str | None = None) -> str:
        if not isinstance(name, str):
            raise StateError(422, "Invalid attribute", "name is required and must be a string")
        # "Stream naming": length from 3 to 255 characters, unique.
        if not 3 <= len(name) <= 255:
            raise StateError(422, "Invalid attribute", "name must be from 3 to 255 characters long")
        now = time.time()
        for stream in self.streams.values():
            if stream.name == name and stream.id != exclude:
                raise StateError(409, "Conflict", f"a stream named {name!r} already exists")
        free_at = self.reserved_names.get(name)
        if free_at is not None:
            if free_at > now:
                # "its name remains reserved" for 7 days after a deletion.
                raise StateError(409, "Conflict", f"the name {name!r} is reserved")
            del self.reserved_names[name]
        return name

    def create_stream(self, name: object, stream_type: object) -> Stream:
        """Create a stream; raises :class:`StateError` 422 (invalid) or 409 (name taken)."""
        if stream_type not in STREAM_TYPES:
            raise StateError(422, "Invalid attribute", "type must be 'chunked' or 'referenced'")
        checked = self._check_name(name)
        # Assumption: deleted streams whose names are still reserved do not count.
        if len(self.streams) >= self.config.max_streams:
            # Assumption: the 101st stream is a 422 (the reference gives no status).
            raise StateError(
                422,
                "Stream limit reached",
                f"an account can have at most {self.config.max_streams} streams",
            )
        sid = str(self._next_stream_id)
        self._next_stream_id += 1
        now = time.time()
        stream = Stream(
            id=sid,
            name=checked,
            type=str(stream_type),
            created_at=now,
            updated_at=now,
            rng=stream_rng(self.config.seed, sid),
        )
        self.streams[sid] = stream
        return stream

    def get_stream(self, sid: str) -> Stream:
        """The stream, or :class:`StateError` 404."""
        stream = self.streams.get(sid)
        if stream is None:
            raise StateError(404, "Not Found", f"stream {sid} does not exist")
        return stream

    def list_streams(self) -> list[Stream]:
        """Every stream, oldest first."""
        return sorted(self.streams.values(), key=lambda s: int(s.id))

    def rename_stream(self, sid: str, name: object, stream_type: object = None) -> Stream:
        """Rename; the type cannot change (422). Raises 404, 409, 422."""
        stream = self.get_stream(sid)
        if stream_type is not None and stream_type != stream.type:
            raise StateError(422, "Invalid attribute", "the type of a stream cannot be changed")
        if name is not None:
            stream.name = self._check_name(name, exclude=sid)
        stream.updated_at = time.time()
        return stream

    def delete_stream(self, sid: str) -> None:
        """Delete the stream and its data; its name stays reserved. Raises 404."""
        stream = self.get_stream(sid)
        del self.streams[sid]
        self.reserved_names[stream.name] = time.time() + self.config.name_reservation_s

    def set_status(self, sid: str, status: str) -> None:
        """Set a stream's status (one of :data:`STREAM_STATUSES`); raises 404 or 422."""
        if status not in STREAM_STATUSES:
            raise StateError(
                422, "Invalid status", f"status must be one of {sorted(STREAM_STATUSES)}"
            )
        self.get_stream(sid).status = status

    def faults_of(self, stream: Stream) -> FaultState:
        """The faults in force for the stream."""
        return stream.faults if stream.faults is not None else self.default_faults

    def set_faults(self, sid: str | None, faults: Faults) -> None:
        """Set one stream's faults, or the default of all streams (``sid=None``)."""
        state = FaultState(faults)
        if sid is None:
            self.default_faults = state
        else:
            self.get_stream(sid).faults = state

    # -- uploads -----------------------------------------------------------------

    def record_upload(self, stream: Stream, result: UploadResult) -> Batch:
        """Store a fully read upload's valid products and create its batch."""
        now = time.time()
        errors = list(result.errors.values())
        error_count = result.rejected_count
        upload = Stage(
            completed_at=now,
            status=_stage_status(result.accepted_count, error_count),
            success_count=result.accepted_count,
            error_count=error_count,
            errors=errors,
        )
        batch = Batch(
            id=str(uuid.uuid4()),
            stream_id=stream.id,
            upload=upload,
            pending_processing_errors=result.processing_errors,
        )
        stream.batches[batch.id] = batch
        if result.accepted:
            # Upserts: a later upload of an id replaces it ("updates the corresponding products").
            stream.products.update(result.accepted)
            stream.upload_counts.update(pid for pid, _ in result.accepted)
        counters = stream.counters
        counters["uploads"] += 1
        counters["products_accepted"] += result.accepted_count
        counters["products_rejected"] += error_count
        return batch

    def delete_products(self, stream: Stream, ids: Iterable[str]) -> int:
        """Delete products by id; returns how many existed."""
        products = stream.products
        deleted = 0
        for pid in ids:
            if products.pop(pid, None) is not None:
                deleted += 1
        stream.counters["products_deleted"] += deleted
        return deleted

    def delete_all_products(self, stream: Stream) -> int:
        """Delete every product of the stream; returns how many there were."""
        deleted = len(stream.products)
        stream.products.clear()
        stream.counters["products_deleted"] += deleted
        return deleted

    # -- sites ---------------------------------------------------------------------

    def site(self, site_id: int) -> Site:
        """The site with this id, created on first use."""
        # Assumption: every positive site id exists; sites are not managed here.
        site = self.sites.get(site_id)
        if site is None:
            site = self.sites[site_id] = Site(site_id)
        return site

    def add_datasource(
        self,
        site_id: int,
        stream_id: int,
        *,
        description: str = "",
        import_type: int = 1,
        status: str = "active",
    ) -> Datasource:
        """Link a stream to a site; raises 404 (no such stream) or 422 (already linked)."""
        if str(stream_id) not in self.streams:
            raise StateError(404, "The requested resource could not be found.")
        site = self.site(site_id)
        if stream_id in site.datasources:
            raise StateError(422, "The stream datasource for the site already exists.")
        ds = Datasource(
            id=self._next_datasource_id,
            site_id=site_id,
            stream_id=stream_id,
            description=description,
            import_type=import_type,
            status=status,
        )
        self._next_datasource_id += 1
        site.datasources[stream_id] = ds
        return ds

    def import_site(self, site: Site) -> bool:
        """Import the site's active stream datasources; ``False`` if it fails.

        Every ``uploaded`` batch of each linked stream moves to ``processed``
        (or ``failed``) with a processing stage. Assumptions: a disabled stream
        is skipped ("the platform doesn't trigger import"); a stream locked for
        processing (``locked``, ``locked_processing``) makes the process fail
        without importing anything.
        """
        streams = []
        for ds in site.datasources.values():
            stream = self.streams.get(str(ds.stream_id))
            if ds.status != "active" or stream is None or stream.status == "disabled":
                continue
            if stream.status in IMPORT_LOCKED:
                return False
            streams.append(stream)
        now = time.time()
        for stream in streams:
            for batch in stream.batches.values():
                if batch.status != "uploaded":
                    continue
                errors = list(batch.pending_processing_errors.values())
                error_count = sum(e.occurrences for e in errors)
                success = max(0, batch.upload.success_count - error_count)
                batch.processing = Stage(
                    completed_at=now,
                    status=_stage_status(success, error_count),
                    success_count=success,
                    error_count=error_count,
                    errors=errors,
                )
                batch.pending_processing_errors = {}
                stream.counters["batches_processed"] += 1
        return True
