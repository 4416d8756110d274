"""The bulk-load worker: durable load jobs, split into parts, pushed by many workers.

See ``docs/worker.md``. :func:`open_queue` opens a job queue from its URL
(``sqlite:///path/jobs.db`` or ``redis://host:port/db``); :class:`Worker`
runs parts from it until stopped.
"""

from __future__ import annotations

from bulkpush.worker.jobs import JobOptions, JobSpec, JobView, Part, Target
from bulkpush.worker.queue import JobQueue, Lease, open_queue

__all__ = ["JobOptions", "JobQueue", "JobSpec", "JobView", "Lease", "Part", "Target", "open_queue"]
