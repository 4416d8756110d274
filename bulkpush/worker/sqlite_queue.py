"""The embedded job queue: one SQLite file, shared by worker processes on one machine.

WAL mode; every change is one ``BEGIN IMMEDIATE`` transaction (one writer at
a time, readers never blocked). A lease is a row's ``worker`` and
``lease_until`` (Unix time): a part whose lease ran out is leased again by
the next worker that asks, exactly as Redis reclaims an idle entry. Calls run
in a thread (``asyncio.to_thread``) on one connection guarded by a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

import orjson

from bulkpush._quota import Pacer, Quota
from bulkpush.errors import ConfigError, QueueError
from bulkpush.worker._queue_types import DEFAULT_LEASE_TTL, Lease, LeaseState
from bulkpush.worker.jobs import (
    JobSpec,
    JobView,
    Part,
    check_target_kind,
    job_status,
    new_job_id,
    plan_parts,
)
from bulkpush.worker.limiter import SharedPacer, SqliteSlots
from bulkpush.worker.sqlite_file import SqliteFile

__all__ = ["SqliteQueue"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created REAL NOT NULL,
    cancelled INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    finished REAL,
    nparts INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS parts (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    status TEXT NOT NULL,
    worker TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS parts_status ON parts (status, seq);
"""


def _path_of(url: str) -> str:
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"a SQLite queue URL is sqlite:///path/jobs.db, not {url!r}")
    # As SQLAlchemy: sqlite:///relative/jobs.db, sqlite:////absolute/jobs.db.
    return str(Path(url[len("sqlite:///") :]).expanduser())


class SqliteQueue:
    """A :class:`~bulkpush.worker.queue.JobQueue` in one SQLite file (``sqlite:///path``)."""

    def __init__(self, url: str, *, lease_ttl: float = DEFAULT_LEASE_TTL) -> None:
        self.url = url
        self.lease_ttl = lease_ttl
        self.path = _path_of(url)
        self._pacers: dict[tuple[str, float], Pacer] = {}
        self._slots: SqliteSlots | None = None
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Jobs name files and token variables: the queue is its owner's alone
            # (SQLite gives its -wal and -shm files the same mode).
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError as exc:
            raise QueueError(f"cannot open the queue {self.path}: {exc}") from exc
        self._file = SqliteFile(self.path, schema=_SCHEMA, what="the queue")

    def __repr__(self) -> str:
        return f"SqliteQueue({self.path!r}, lease_ttl={self.lease_ttl})"

    # --- plumbing ---------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._file.transaction, fn)

    @staticmethod
    def _part(row: Any) -> Part:
        data = orjson.loads(row[0])
        data["status"] = row[1]
        data["worker"] = row[2]
        return Part.from_json(data)

    @staticmethod
    def _save(db: sqlite3.Connection, part: Part) -> None:
        db.execute(
            "UPDATE parts SET data = ?, status = ?, worker = ? WHERE job_id = ? AND idx = ?",
            (orjson.dumps(part.to_json()), part.status, part.worker, part.job_id, part.index),
        )

    def _owned(self, db: sqlite3.Connection, lease: Lease) -> tuple[Part | None, LeaseState]:
        row = db.execute(
            "SELECT p.data, p.status, p.worker, j.cancelled, j.error FROM parts p "
            "JOIN jobs j ON j.id = p.job_id WHERE p.job_id = ? AND p.idx = ?",
            (lease.part.job_id, lease.part.index),
        ).fetchone()
        if row is None or row[2] != lease.worker or row[1] not in ("running", "cancelled"):
            return None, "lost"
        part = self._part(row)
        if row[3] or row[4] is not None or row[1] == "cancelled":
            return part, "cancelled"
        return part, "ok"

    # --- the interface ------------------------------------------------------------

    async def submit(self, spec: JobSpec) -> str:
        check_target_kind(spec.target.kind)
        job_id = new_job_id()
        parts = await asyncio.to_thread(plan_parts, job_id, spec)
        created = time.time()

        def tx(db: sqlite3.Connection) -> None:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM parts").fetchone()[0]
            db.execute(
                "INSERT INTO jobs (id, spec, created, nparts) VALUES (?, ?, ?, ?)",
                (job_id, orjson.dumps(spec.to_json()), created, len(parts)),
            )
            db.executemany(
                "INSERT INTO parts (job_id, idx, seq, data, status) VALUES (?, ?, ?, ?, ?)",
                [
                    (job_id, p.index, seq + 1 + p.index, orjson.dumps(p.to_json()), p.status)
                    for p in parts
                ],
            )

        await self._run(tx)
        return job_id

    async def lease(self, worker: str, *, skip: Collection[str] = ()) -> Lease | None:
        skipped = sorted(skip)
        not_in = f"AND p.job_id NOT IN ({', '.join('?' * len(skipped))}) " if skipped else ""

        def tx(db: sqlite3.Connection) -> Lease | None:
            now = time.time()
            while True:
                row = db.execute(
                    "SELECT p.data, p.status, p.worker, j.spec, p.job_id, p.idx FROM parts p "
                    "JOIN jobs j ON j.id = p.job_id "
                    "WHERE j.cancelled = 0 AND j.error IS NULL AND "
                    "(p.status = 'queued' OR (p.status = 'running' AND p.lease_until < ?)) "
                    f"{not_in}ORDER BY p.seq LIMIT 1",
                    (now, *skipped),
                ).fetchone()
                if row is None:
                    return None
                try:
                    spec = JobSpec.from_stored(row[3])
                    part = self._part(row)
                except QueueError as exc:
                    # A job this version cannot read fails alone, with the reason;
                    # the next part is leased in the same transaction.
                    self._fail_unreadable(db, row[4], row[5], str(exc), now)
                    continue
                part = Part.from_json(
                    {
                        **part.to_json(),
                        "status": "running",
                        "worker": worker,
                        "attempts": part.attempts + 1,
                    }
                )
                self._save(db, part)
                db.execute(
                    "UPDATE parts SET lease_until = ? WHERE job_id = ? AND idx = ?",
                    (now + self.lease_ttl, part.job_id, part.index),
                )
                return Lease(part, spec, worker)

        return await self._run(tx)

    @staticmethod
    def _fail_unreadable(
        db: sqlite3.Connection, job_id: str, idx: int, error: str, now: float
    ) -> None:
        db.execute(
            "UPDATE parts SET status = 'failed', worker = NULL WHERE job_id = ? AND idx = ?",
            (job_id, idx),
        )
        db.execute(
            "UPDATE jobs SET error = COALESCE(error, ?), finished = COALESCE(finished, ?) "
            "WHERE id = ?",
            (f"part {idx}: {error}", now, job_id),
        )

    def _extend(self, db: sqlite3.Connection, lease: Lease) -> None:
        db.execute(
            "UPDATE parts SET lease_until = ? WHERE job_id = ? AND idx = ?",
            (time.time() + self.lease_ttl, lease.part.job_id, lease.part.index),
        )

    async def heartbeat(self, lease: Lease) -> LeaseState:
        def tx(db: sqlite3.Connection) -> LeaseState:
            _, state = self._owned(db, lease)
            if state == "ok":
                self._extend(db, lease)
            return state

        return await self._run(tx)

    async def checkpoint(
        self, lease: Lease, *, offset: int, line: int, report: dict[str, Any]
    ) -> LeaseState:
        def tx(db: sqlite3.Connection) -> LeaseState:
            part, state = self._owned(db, lease)
            if state != "ok" or part is None:
                return state
            data = {**part.to_json(), "offset": offset, "line": line, "report": report}
            self._save(db, Part.from_json(data))
            self._extend(db, lease)
            return state

        return await self._run(tx)

    async def complete(self, lease: Lease, report: dict[str, Any]) -> bool:
        def tx(db: sqlite3.Connection) -> bool:
            part, state = self._owned(db, lease)
            if state == "lost" or part is None:
                return False
            end = part.end if part.end is not None else part.offset
            data = {**part.to_json(), "status": "done", "offset": end, "report": report}
            self._save(db, Part.from_json(data))
            db.execute("UPDATE jobs SET done = done + 1 WHERE id = ?", (part.job_id,))
            row = db.execute(
                "SELECT done, nparts, cancelled, error FROM jobs WHERE id = ?", (part.job_id,)
            ).fetchone()
            if row[0] >= row[1] and not row[2] and row[3] is None:
                db.execute("UPDATE jobs SET finished = ? WHERE id = ?", (time.time(), part.job_id))
                return True
            return False

        return await self._run(tx)

    async def release(self, lease: Lease) -> None:
        def tx(db: sqlite3.Connection) -> None:
            part, state = self._owned(db, lease)
            if state == "lost" or part is None:
                return
            status = "cancelled" if state == "cancelled" else "queued"
            self._save(db, Part.from_json({**part.to_json(), "status": status, "worker": None}))
            db.execute(
                "UPDATE parts SET lease_until = 0 WHERE job_id = ? AND idx = ?",
                (part.job_id, part.index),
            )

        await self._run(tx)

    async def defer(self, lease: Lease, *, now: float) -> None:
        def tx(db: sqlite3.Connection) -> None:
            part, state = self._owned(db, lease)
            if state == "lost" or part is None:
                return
            if state == "cancelled":
                status, attempts = "cancelled", part.attempts
            else:
                status, attempts = "queued", part.attempts - 1
            data = {**part.to_json(), "status": status, "worker": None, "attempts": attempts}
            if part.waiting_since is None or part.waiting_attempts != attempts:
                data.update(waiting_since=now, waiting_attempts=attempts)
            self._save(db, Part.from_json(data))
            db.execute(
                "UPDATE parts SET lease_until = 0 WHERE job_id = ? AND idx = ?",
                (part.job_id, part.index),
            )

        await self._run(tx)

    async def fail(self, lease: Lease, error: str, report: dict[str, Any] | None = None) -> None:
        def tx(db: sqlite3.Connection) -> None:
            part, state = self._owned(db, lease)
            if state == "lost" or part is None:
                return
            data = {**part.to_json(), "status": "failed", "error": error}
            if report is not None:
                data["report"] = report
            self._save(db, Part.from_json(data))
            db.execute(
                "UPDATE jobs SET error = COALESCE(error, ?), finished = COALESCE(finished, ?) "
                "WHERE id = ?",
                (f"part {part.index} ({part.source}): {error}", time.time(), part.job_id),
            )

        await self._run(tx)

    async def cancel(self, job_id: str) -> bool:
        def tx(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT finished FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return False
            db.execute(
                "UPDATE jobs SET cancelled = 1, finished = COALESCE(finished, ?) WHERE id = ?",
                (time.time(), job_id),
            )
            db.execute(
                "UPDATE parts SET status = 'cancelled' WHERE job_id = ? "
                "AND status IN ('queued', 'running')",
                (job_id,),
            )
            return True

        return await self._run(tx)

    def _view(self, db: sqlite3.Connection, row: Any) -> JobView:
        parts = []
        for r in db.execute(
            "SELECT data, status, worker FROM parts WHERE job_id = ? ORDER BY idx", (row[0],)
        ):
            with contextlib.suppress(QueueError, orjson.JSONDecodeError):
                parts.append(self._part(r))
        spec, unreadable = JobSpec.for_view(row[1])
        error = row[4] if row[4] is not None or unreadable is None else f"job spec: {unreadable}"
        return JobView(
            id=row[0],
            spec=spec,
            status=job_status(bool(row[3]), row[4], parts),
            created=row[2],
            parts=tuple(parts),
            error=error,
            finished=row[5],
        )

    async def get(self, job_id: str) -> JobView | None:
        def tx(db: sqlite3.Connection) -> JobView | None:
            row = db.execute(
                "SELECT id, spec, created, cancelled, error, finished FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
            return None if row is None else self._view(db, row)

        return await self._run(tx)

    async def list_jobs(self, limit: int = 100) -> list[JobView]:
        def tx(db: sqlite3.Connection) -> list[JobView]:
            rows = db.execute(
                "SELECT id, spec, created, cancelled, error, finished FROM jobs "
                "ORDER BY created DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [self._view(db, r) for r in rows]

        return await self._run(tx)

    async def depth(self) -> int:
        def tx(db: sqlite3.Connection) -> int:
            return int(
                db.execute(
                    "SELECT COUNT(*) FROM parts p JOIN jobs j ON j.id = p.job_id "
                    "WHERE p.status = 'queued' AND j.cancelled = 0 AND j.error IS NULL"
                ).fetchone()[0]
            )

        return await self._run(tx)

    def shared_pacer(self, quota: Quota, rate: float) -> Pacer:
        key = (quota.key, rate)
        pacer = self._pacers.get(key)
        if pacer is None:
            if self._slots is None:
                self._slots = SqliteSlots(self.path)
            pacer = self._pacers[key] = SharedPacer(
                rate, store=self._slots, key=quota.key, windows=quota.windows
            )
        return pacer

    async def aclose(self) -> None:
        self._file.close()
        if self._slots is not None:
            self._slots.close()
