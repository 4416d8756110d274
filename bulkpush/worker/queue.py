"""The job queue interface, and :func:`open_queue` to get one from a URL.

Two backends implement :class:`JobQueue` with the same semantics (the same
test suite runs against both):

- ``sqlite:///path/jobs.db`` (:mod:`bulkpush.worker.sqlite_queue`): one file,
  several worker processes on one machine;
- ``redis://host:port/db`` (:mod:`bulkpush.worker.redis_queue`): Redis
  Streams and a consumer group, workers on many machines.

A worker *leases* a part. The lease lasts ``lease_ttl`` seconds and is
extended by every :meth:`JobQueue.heartbeat` and :meth:`JobQueue.checkpoint`;
a part whose lease ran out (its worker died) is leased again by another
worker, which resumes from the part's checkpoint. Every call that needs the
lease returns a :data:`LeaseState`: ``"ok"``, ``"lost"`` (another worker took
the part: stop, write nothing more) or ``"cancelled"`` (the job was
cancelled or failed: stop).
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from bulkpush._quota import Pacer, Quota
from bulkpush.errors import ConfigError
from bulkpush.worker.jobs import JobSpec, JobView, Part

__all__ = [
    "DEFAULT_LEASE_TTL",
    "DEFAULT_QUEUE_PATH",
    "JobQueue",
    "Lease",
    "LeaseState",
    "default_queue_url",
    "new_worker_id",
    "open_queue",
]

LeaseState = Literal["ok", "lost", "cancelled"]
DEFAULT_LEASE_TTL = 30.0
DEFAULT_QUEUE_PATH = Path("~/.local/share/bulkpush/jobs.db")


def default_queue_url() -> str:
    """``$BULKPUSH_QUEUE``, else the SQLite file in the user's data directory."""
    env = os.environ.get("BULKPUSH_QUEUE")
    if env:
        return env
    base = os.environ.get("XDG_DATA_HOME")
    path = Path(base) / "bulkpush" / "jobs.db" if base else DEFAULT_QUEUE_PATH.expanduser()
    return f"sqlite:///{path}"


def new_worker_id() -> str:
    """``host:pid:random``: unique per worker process, readable in ``jobs show``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


@dataclass(frozen=True, slots=True)
class Lease:
    """A part held by ``worker``, with its job's spec. ``entry`` is backend data."""

    part: Part
    spec: JobSpec
    worker: str
    entry: str = ""


class JobQueue(Protocol):
    """Durable jobs and parts; see the module docstring for lease semantics."""

    url: str
    lease_ttl: float

    async def submit(self, spec: JobSpec) -> str:
        """Queue a job (its sources are split into parts now); return its id."""
        ...

    async def lease(self, worker: str) -> Lease | None:
        """Take the next part (a queued one, or one whose lease ran out); None if none."""
        ...

    async def heartbeat(self, lease: Lease) -> LeaseState:
        """Extend the lease."""
        ...

    async def checkpoint(
        self, lease: Lease, *, offset: int, line: int, report: dict[str, Any]
    ) -> LeaseState:
        """Record that every record before ``offset`` (line ``line``) is accounted in ``report``.

        Also extends the lease. Nothing is written unless the state is ``"ok"``.
        """
        ...

    async def complete(self, lease: Lease, report: dict[str, Any]) -> bool:
        """Mark the part done; True when this call finished the job (its last part)."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give the part back (shutdown): queued again, its checkpoint kept."""
        ...

    async def fail(self, lease: Lease, error: str, report: dict[str, Any] | None = None) -> None:
        """Mark the part and its job failed with ``error``; other jobs go on."""
        ...

    async def cancel(self, job_id: str) -> bool:
        """Cancel a job: its parts are no longer leased, running ones stop. False if unknown."""
        ...

    async def get(self, job_id: str) -> JobView | None:
        """The job with its parts, or None."""
        ...

    async def list_jobs(self, limit: int = 100) -> list[JobView]:
        """The newest jobs first."""
        ...

    async def depth(self) -> int:
        """Parts waiting to be leased (queued), for the metrics."""
        ...

    def shared_pacer(self, quota: Quota, rate: float) -> Pacer:
        """A pacer for ``quota`` at ``rate`` shared by every worker of this queue (see limiter)."""
        ...

    async def aclose(self) -> None: ...


def open_queue(url: str | None = None, *, lease_ttl: float = DEFAULT_LEASE_TTL) -> JobQueue:
    """Open the queue at ``url`` (default: :func:`default_queue_url`).

    Raises :class:`ConfigError` for an unknown scheme, :class:`QueueError`
    when the backend cannot be opened.
    """
    url = url or default_queue_url()
    if lease_ttl <= 0:
        raise ConfigError("lease_ttl must be positive")
    if url.startswith("sqlite://"):
        from bulkpush.worker.sqlite_queue import SqliteQueue  # noqa: PLC0415 - lazy

        return SqliteQueue(url, lease_ttl=lease_ttl)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from bulkpush.worker.redis_queue import RedisQueue  # noqa: PLC0415 - lazy: redis is optional

        return RedisQueue(url, lease_ttl=lease_ttl)
    raise ConfigError(
        f"unknown queue URL {url!r}: use sqlite:///path/jobs.db or redis://host:port/db"
    )
