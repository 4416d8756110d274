"""One SQLite file opened for worker processes on one machine: WAL, one writer at a time.

The queue and the shared limiter keep their state in the same file. Each
opens one connection, shared by threads under a lock, and changes it only in
``BEGIN IMMEDIATE`` transactions (the write lock is taken at the start, so
two processes never both read and then collide on the write). SQLite errors
become :class:`~bulkpush.errors.QueueError`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

from bulkpush.errors import QueueError

__all__ = ["SqliteFile"]

T = TypeVar("T")


class SqliteFile:
    """``path`` opened in WAL mode with ``schema`` applied; ``what`` names it in errors."""

    def __init__(self, path: str, *, schema: str, what: str) -> None:
        self.path = path
        self.what = what
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(schema)
        except sqlite3.Error as exc:
            raise QueueError(f"cannot open {what} {path}: {exc}", retriable=True) from exc

    def __repr__(self) -> str:
        return f"SqliteFile({self.path!r}, what={self.what!r})"

    def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction; blocking (call it in a thread)."""
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(db)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise QueueError(f"{self.what} {self.path}: {exc}", retriable=True) from exc
            return result

    def close(self) -> None:
        with self._lock:
            self._db.close()
