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

The interface itself lives in :mod:`bulkpush.worker._queue_types`, which the
backends import; this module re-exports it and imports the backends (Redis
lazily: ``redis`` is an optional dependency), so no two modules import each
other.
"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path

from bulkpush.errors import ConfigError
from bulkpush.worker._queue_types import DEFAULT_LEASE_TTL, JobQueue, Lease, LeaseState
from bulkpush.worker._urls import redact_url
from bulkpush.worker.sqlite_queue import SqliteQueue

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


def open_queue(url: str | None = None, *, lease_ttl: float = DEFAULT_LEASE_TTL) -> JobQueue:
    """Open the queue at ``url`` (default: :func:`default_queue_url`).

    Raises :class:`ConfigError` for an unknown scheme, :class:`QueueError`
    when the backend cannot be opened.
    """
    url = url or default_queue_url()
    if lease_ttl <= 0:
        raise ConfigError("lease_ttl must be positive")
    if url.startswith("sqlite://"):
        return SqliteQueue(url, lease_ttl=lease_ttl)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from bulkpush.worker.redis_queue import RedisQueue  # noqa: PLC0415 - lazy: redis is optional

        return RedisQueue(url, lease_ttl=lease_ttl)
    raise ConfigError(
        f"unknown queue URL {redact_url(url)!r}: use sqlite:///path/jobs.db or redis://host:port/db"
    )
