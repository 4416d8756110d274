"""The checkpoint of a part: the watermark below which every record is accounted.

See :class:`Watermark`, and "Checkpoints and what may be sent twice" in
``docs/worker.md``.
"""

from __future__ import annotations

import collections

from bulkpush._pipeline import Event
from bulkpush._records import Record, Rejection
from bulkpush.report import Report

__all__ = ["Watermark"]


class Watermark:
    """The checkpoint of a part: every record before :attr:`offset` is accounted.

    :meth:`seen` is called (from the reader thread, as the pipeline's
    ``on_record`` hook) with each record in read order, :meth:`account` (on
    the event loop) with each outcome and client rejection. Records are
    matched by identity, not by offset: the events carry the very
    :class:`Record` objects that were seen, and a JSON array's records all
    have offset -1. ``committed`` is the report of the records below the
    watermark only. After record ``r`` the watermark is ``r.offset + 1``,
    line ``r.line + 1``: a range read from there starts at the next line.
    """

    def __init__(self, *, offset: int, line: int, committed: Report) -> None:
        self.offset = offset
        self.line = line
        self.committed = committed
        self._read: collections.deque[Record] = collections.deque()
        self._done: set[int] = set()
        self._pending: dict[int, list[Event]] = {}

    def __repr__(self) -> str:
        return f"Watermark(offset={self.offset}, line={self.line}, open={len(self._read)})"

    def seen(self, record: Record) -> None:
        self._read.append(record)

    def account(self, event: Event) -> bool:
        """Take one event; True when the watermark moved."""
        # id() is a safe key: a record stays alive in _read until it is popped.
        if isinstance(event, Rejection):
            key = id(event.record)
            self._done.add(key)
        else:
            records = event.chunk.records
            if event.not_sent or not records:
                return False  # not delivered: the watermark stays below it
            key = id(records[-1])
            self._done.update(map(id, records))
        self._pending.setdefault(key, []).append(event)
        moved = False
        read, done = self._read, self._done
        while read and id(read[0]) in done:
            r = read.popleft()
            done.discard(id(r))
            for ev in self._pending.pop(id(r), ()):
                self._commit(ev)
            self.offset, self.line = r.offset + 1, r.line + 1
            moved = True
        return moved

    def _commit(self, event: Event) -> None:
        report = self.committed
        if isinstance(event, Rejection):
            report.add_read(1, len(event.record.raw) + 1)
            report.add_rejection(event)
        else:
            records = event.chunk.records
            report.add_read(len(records), sum(len(r.raw) + 1 for r in records))
            report.add_outcome(event)
