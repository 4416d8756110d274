"""Error aggregation: the products refused for one ``(stage, message)``, a few kept as examples.

Shared by :class:`~bulkpush.report.Report` (one run) and
:func:`~bulkpush.report.merge_reports` (a job's parts): the examples are the
first ``cap`` in source order (sources ranked by first appearance, then
line), whatever order the products arrive in.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from bulkpush._records import Record
from bulkpush.report._schema import ErrorEntry

__all__ = ["ErrorGroup", "sorted_entries"]

# An example's position: (rank of its source by first appearance, line, source, id).
_Example = tuple[int, int, str, str | None]


@dataclass(slots=True)
class ErrorGroup:
    """The products refused at ``stage`` for ``message``: how many, and the first few."""

    stage: str
    message: str
    occurrences: int = 0
    examples: list[_Example] = field(default_factory=list)

    def offer(
        self,
        rank: int,
        line: int,
        source: str,
        cap: int,
        *,
        record: Record | None = None,
        pid: str | None = None,
    ) -> None:
        """Keep the example if it is among the first ``cap`` in source order.

        The id is ``pid``, or derived from ``record`` only if the example is kept.
        """
        key = (rank, line)
        ex = self.examples
        if len(ex) >= cap and key >= ex[-1][:2]:
            return  # the common case once the cap is reached: no parsing
        i = bisect.bisect_left(ex, key, key=lambda e: (e[0], e[1]))
        if i < len(ex) and ex[i][:2] == key:
            return  # the same product offered twice
        # The id is derived only for kept examples: parsing is the costly part.
        if record is not None:
            pid = record.product_id()
        ex.insert(i, (rank, line, source, pid))
        del ex[cap:]

    def to_entry(self) -> ErrorEntry:
        return {
            "stage": self.stage,
            "message": self.message,
            "occurrences": self.occurrences,
            "examples": [{"source": s, "line": ln, "id": pid} for _, ln, s, pid in self.examples],
        }


def sorted_entries(groups: Iterable[ErrorGroup]) -> list[ErrorEntry]:
    """The groups as report entries, most frequent first (ties: by stage, then message)."""
    ordered = sorted(groups, key=lambda g: (-g.occurrences, g.stage, g.message))
    return [g.to_entry() for g in ordered]
