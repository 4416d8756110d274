"""The queue's shared types: :class:`JobQueue`, :class:`Lease`, :data:`LeaseState`.

They live apart from :mod:`bulkpush.worker.queue` so that the backends
(:mod:`~bulkpush.worker.sqlite_queue`, :mod:`~bulkpush.worker.redis_queue`)
import them without importing the module that opens them: ``queue`` imports
the backends, the backends import this module, nothing imports back. Import
them from :mod:`bulkpush.worker.queue`, which re-exports them; see its
docstring for the lease semantics.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bulkpush._quota import Pacer, Quota
from bulkpush.worker.jobs import JobSpec, JobView, Part

__all__ = ["DEFAULT_LEASE_TTL", "JobQueue", "Lease", "LeaseState"]

LeaseState = Literal["ok", "lost", "cancelled"]
DEFAULT_LEASE_TTL = 30.0


@dataclass(frozen=True, slots=True)
class Lease:
    """A part held by ``worker``, with its job's spec. ``entry`` is backend data."""

    part: Part
    spec: JobSpec
    worker: str
    entry: str = ""


class JobQueue(Protocol):
    """Durable jobs and parts; see :mod:`bulkpush.worker.queue` for lease semantics."""

    url: str
    lease_ttl: float

    async def submit(self, spec: JobSpec) -> str:
        """Queue a job (its sources are split into parts now); return its id.

        Raises :class:`~bulkpush.errors.ConfigError` when the target's kind is
        unknown (:func:`~bulkpush.worker.jobs.check_target_kind`).
        """
        ...

    async def lease(self, worker: str, *, skip: Collection[str] = ()) -> Lease | None:
        """Take the next part (a queued one, or one whose lease ran out); None if none.

        Parts of the jobs in ``skip`` (ids) are left for other workers.
        """
        ...

    async def defer(self, lease: Lease, *, now: float) -> None:
        """Give the part back untried: this worker cannot run it (its token is not set here).

        The lease does not count as an attempt. The first deferral after a
        real attempt (or ever) sets the part's ``waiting_since`` to ``now``;
        later ones keep it, so :meth:`Part.token_wait` measures how long no
        worker that could run the part took it.
        """
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
