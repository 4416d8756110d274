"""Accounting for one run: :class:`Report`.

Every record read ends in exactly one bucket, ``accepted``, ``rejected`` or
``not_sent``, so ``read == accepted + rejected + not_sent``
(:attr:`Report.balanced`) holds after any mix of outcomes, rejections and
stops. Rejections are aggregated by ``(stage, message)`` with their total
occurrences and a few examples in source order; memory stays bounded however
many products are rejected (at most ``max_examples`` examples per message and
``max_messages`` distinct messages).

The report never holds a token: it only sees records, counts and the API's
error titles; as a second line of defence, messages that look like they carry
a credential (``Bearer …``, ``token=…``) are masked before they are stored.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bulkpush._records import STAGE_CLIENT, STAGE_UPLOAD, Outcome, Record, Rejection, Unattributed
from bulkpush.report._atomic import write_json_atomic
from bulkpush.report._errors import ErrorGroup, sorted_entries
from bulkpush.report._redact import redact
from bulkpush.report._schema import (
    MB,
    ChunkErrorEntry,
    ErrorEntry,
    ReportData,
    UnattributedEntry,
    rate,
)
from bulkpush.report._summary import render_summary

if TYPE_CHECKING:
    from bulkpush._link import Link

__all__ = ["Report"]

_OVERFLOW_MESSAGE = "(other messages: more distinct messages than the report keeps)"
_MAX_CHUNK_ERRORS = 100
_MAX_ANOMALIES = 100


class Report:
    """The mutable accumulator of one run's accounting and errors.

    Not thread-safe: feed it from the event loop. ``max_examples`` caps the
    examples kept per error message, ``max_messages`` the distinct messages
    kept per stage (the rest are folded into one "other messages" entry, so a
    message that embeds a product value cannot make memory grow with the
    catalog). ``clock`` returns seconds (monotonic); tests pass a fake one.

    Counters (public, read them freely): ``read``, ``accepted``, ``rejected``,
    ``not_sent``, ``requests``, ``retries``, ``throttled``, ``bytes_read``,
    ``bytes_sent``, ``batches``, ``duration_s``, ``timed_out`` (requests the
    server ended for taking too long), ``link_mb_per_s`` (MB of request
    bodies the uplink delivered per second while busy, measured on ``link``
    from the report's start to its finish; 0.0 when nothing was measured).

    ``dry_run``: the report of a run that sent nothing (a dry run): the
    products that would have been sent are ``not_sent`` and also counted in
    ``would_send``, with ``would_send_requests`` and ``would_send_bytes``.
    """

    def __init__(
        self,
        *,
        max_examples: int = 5,
        stream: str | None = None,
        target: str | None = None,
        max_messages: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        dry_run: bool = False,
        link: Link | None = None,
    ) -> None:
        if max_examples < 0 or max_messages < 1:
            raise ValueError("max_examples must be >= 0 and max_messages >= 1")
        self.max_examples = max_examples
        self.max_messages = max_messages
        self.stream = stream
        self.target = target
        self.read = 0
        self.accepted = 0
        self.rejected = 0
        self.rejected_client = 0
        self.rejected_upload = 0
        self.unattributed_total = 0
        self.not_sent = 0
        self.dry_run = dry_run
        self.would_send = 0
        self.would_send_requests = 0
        self.would_send_bytes = 0
        self.requests = 0
        self.retries = 0
        self.throttled = 0
        self.timed_out = 0
        self.link_mb_per_s = 0.0
        self._link = link
        self._link_start = link.reading() if link is not None else None
        self.bytes_read = 0
        self.bytes_sent = 0
        self.batches: list[str] = []
        self.duration_s = 0.0
        self.stopped: str | None = None
        self.finished = False
        self.pinpoint_requests = 0
        self.pinpoint_bytes_sent = 0
        self.rejects_path: str | None = None
        self.rejects_written: int | None = None
        self.unattributed: list[Unattributed] = []
        self.chunk_errors: list[ChunkErrorEntry] = []
        self.chunk_errors_total = 0
        self.anomalies: list[str] = []
        self._clock = clock
        self._started = clock()
        self._batch_set: set[str] = set()
        self._groups: dict[tuple[str, str], ErrorGroup] = {}  # by (stage, redacted message)
        self._lookup: dict[tuple[str, str], ErrorGroup] = {}  # by (stage, raw message)
        self._messages_per_stage: dict[str, int] = {}
        self._source_rank: dict[str, int] = {}
        self._last_client: Record | None = None

    def __repr__(self) -> str:
        return (
            f"<Report read={self.read} accepted={self.accepted} rejected={self.rejected} "
            f"not_sent={self.not_sent} requests={self.requests} balanced={self.balanced}>"
        )

    # -- feeding -----------------------------------------------------------

    def add_read(self, n: int = 1, nbytes: int = 0) -> None:
        """Count ``n`` records read from the sources, ``nbytes`` source bytes."""
        self.read += n
        self.bytes_read += nbytes

    def add_rejection(self, rejection: Rejection) -> None:
        """Count a record refused by the client's own validation (never sent).

        Several rejections of the same record in a row (one per failed check)
        count it once in ``rejected`` and once under each message.
        """
        record = rejection.record
        if record is not self._last_client:
            self._last_client = record
            self.rejected += 1
            if rejection.stage == STAGE_UPLOAD:
                self.rejected_upload += 1
            else:
                self.rejected_client += 1
        self._aggregate(rejection.stage, rejection.message, record, 1)

    def add_outcome(self, outcome: Outcome) -> None:
        """Count one chunk's outcome: its buckets, requests, bytes and errors.

        A product named under two messages counts once in ``rejected``.
        If the outcome's buckets do not add up to the chunk's length (a bug in
        the caller, or the API's unattributed counts overlapping), the chunk's
        length wins so the report stays balanced: a deficit counts as
        ``not_sent`` (not confirmed sent), an excess is taken off the rejected,
        then the accepted; either way an entry in ``anomalies`` says so.
        """
        n = len(outcome.chunk)
        named = outcome.rejections
        distinct = len({id(r.record) for r in named}) if len(named) > 1 else len(named)
        unattributed = outcome.unattributed_count
        accepted, not_sent = outcome.accepted, outcome.not_sent
        rejected = distinct + unattributed
        total = accepted + rejected + not_sent
        if total != n:
            self._anomaly(outcome, accepted, rejected, not_sent)
            if total < n:
                not_sent += n - total
            else:
                excess = total - n
                cut = min(excess, rejected)
                rejected -= cut
                excess -= cut
                cut = min(excess, accepted)
                accepted -= cut
                excess -= cut
                not_sent -= excess
        self.accepted += accepted
        self.rejected += rejected
        self.rejected_upload += rejected
        self.not_sent += not_sent
        self.unattributed_total += unattributed

        self.requests += outcome.attempts
        self.retries += max(0, outcome.attempts - 1)
        self.throttled += outcome.throttled
        self.timed_out += outcome.timed_out
        self.bytes_sent += outcome.bytes_sent
        bid = outcome.batch_id
        if bid is not None and bid not in self._batch_set:
            self._batch_set.add(bid)
            self.batches.append(bid)

        for r in named:
            self._aggregate(r.stage, r.message, r.record, 1)
        for u in outcome.unattributed:
            if u.count <= 0:
                continue
            self._aggregate(STAGE_UPLOAD, u.message, None, u.count)
            self.unattributed.append(
                Unattributed(
                    redact(u.message),
                    u.count,
                    u.source,
                    u.first_line,
                    u.last_line,
                    u.batch_id or bid,
                )
            )
        if outcome.error is not None:
            self.chunk_errors_total += 1
            if len(self.chunk_errors) < _MAX_CHUNK_ERRORS:
                self.chunk_errors.append(_chunk_error(outcome))

    def add_would_send(self, n: int, *, nbytes: int = 0) -> None:
        """Count ``n`` products a dry run would have sent in one request of ``nbytes``
        body bytes. They are not sent: the chunk's outcome counts them ``not_sent``."""
        self.would_send += n
        self.would_send_requests += 1
        self.would_send_bytes += nbytes

    def add_not_sent(self, n: int) -> None:
        """Count ``n`` records read but never put in a chunk (the run stopped)."""
        self.not_sent += n

    def add_pinpoint_cost(self, requests: int, bytes_sent: int) -> None:
        """Count the extra requests made to name unattributed rejections.

        They are included in ``requests`` and ``bytes_sent`` (they were sent)
        and shown on their own under ``pinpoint``.
        """
        self.pinpoint_requests += requests
        self.pinpoint_bytes_sent += bytes_sent
        self.requests += requests
        self.bytes_sent += bytes_sent

    def set_rejects_file(self, path: str | os.PathLike[str], count: int | None = None) -> None:
        """Tell the report where the rejects file is, for the summary and the JSON."""
        self.rejects_path = os.fspath(path)
        self.rejects_written = count

    def finish(self, *, stopped: str | None = None) -> None:
        """Record the duration; ``stopped`` says why the run ended early (None: it did not)."""
        self.duration_s = max(0.0, self._clock() - self._started)
        self.link_mb_per_s = self._link_rate()
        self.finished = True
        if stopped is not None:
            self.stopped = redact(stopped)

    # -- reading -----------------------------------------------------------

    @property
    def balanced(self) -> bool:
        """True when ``read == accepted + rejected + not_sent``."""
        return self.read == self.accepted + self.rejected + self.not_sent

    def _link_rate(self) -> float:
        if self._link is None or self._link_start is None:
            return self.link_mb_per_s
        return self._link.reading().mb_per_s_since(self._link_start)

    @property
    def elapsed_s(self) -> float:
        """The duration once finished, the time so far before."""
        return self.duration_s if self.finished else max(0.0, self._clock() - self._started)

    def errors(self) -> list[ErrorEntry]:
        """The aggregated errors, most frequent first (ties: by stage, then message)."""
        return sorted_entries(self._groups.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: the contract keys plus extras (see docs/report.md)."""
        duration = self.elapsed_s
        data = ReportData(
            read=self.read,
            accepted=self.accepted,
            rejected=self.rejected,
            not_sent=self.not_sent,
            requests=self.requests,
            retries=self.retries,
            throttled=self.throttled,
            timed_out=self.timed_out,
            link_mb_per_s=self.link_mb_per_s if self.finished else self._link_rate(),
            batches=list(self.batches),
            bytes_read=self.bytes_read,
            bytes_sent=self.bytes_sent,
            duration_s=round(duration, 3),
            errors=self.errors(),
            balanced=self.balanced,
            rejected_by_stage={
                STAGE_CLIENT: self.rejected_client,
                STAGE_UPLOAD: self.rejected_upload,
            },
            unattributed_total=self.unattributed_total,
            unattributed=[_unattributed_entry(u) for u in self.unattributed],
            pinpoint={
                "requests": self.pinpoint_requests,
                "bytes_sent": self.pinpoint_bytes_sent,
            },
            chunk_errors=[e.copy() for e in self.chunk_errors],
            chunk_errors_total=self.chunk_errors_total,
            anomalies=list(self.anomalies),
            stopped=self.stopped,
            dry_run=self.dry_run,
            would_send=self.would_send,
            would_send_requests=self.would_send_requests,
            would_send_bytes=self.would_send_bytes,
            stream=self.stream,
            target=self.target,
            rejects_file=self.rejects_path,
            rejects_written=self.rejects_written,
            products_per_s=rate(self.read, duration),
            mb_per_s_sent=rate(self.bytes_sent / MB, duration),
        )
        return data.to_dict()

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` to ``path`` atomically (same-dir temp file, then rename)."""
        write_json_atomic(path, self.to_dict())

    def summary(self) -> str:
        """The human summary: counts, throughput, top errors, unattributed, rejects file."""
        return render_summary(self.to_dict())

    # -- internals ---------------------------------------------------------

    def _rank(self, source: str) -> int:
        rank = self._source_rank.get(source)
        if rank is None:
            rank = self._source_rank[source] = len(self._source_rank)
        return rank

    def _aggregate(self, stage: str, message: str, record: Record | None, count: int) -> None:
        group = self._lookup.get((stage, message))
        if group is None:
            group = self._new_group(stage, message)
        group.occurrences += count
        if record is not None and self.max_examples:
            rank = self._rank(record.source)
            group.offer(rank, record.line, record.source, self.max_examples, record=record)

    def _new_group(self, stage: str, message: str) -> ErrorGroup:
        shown = redact(message)
        group = self._groups.get((stage, shown))
        if group is None:
            if self._messages_per_stage.get(stage, 0) >= self.max_messages:
                # Not remembered in _lookup: the raw messages are what grows.
                key = (stage, _OVERFLOW_MESSAGE)
                group = self._groups.get(key)
                if group is None:
                    group = self._groups[key] = ErrorGroup(stage, _OVERFLOW_MESSAGE)
                return group
            self._messages_per_stage[stage] = self._messages_per_stage.get(stage, 0) + 1
            group = self._groups[(stage, shown)] = ErrorGroup(stage, shown)
        self._lookup[(stage, message)] = group
        return group

    def _anomaly(self, outcome: Outcome, accepted: int, rejected: int, not_sent: int) -> None:
        if len(self.anomalies) >= _MAX_ANOMALIES:
            return
        chunk = outcome.chunk
        where = (
            f"{chunk.source} lines {chunk.first_line}-{chunk.last_line}"
            if len(chunk)
            else "an empty chunk"
        )
        self.anomalies.append(
            f"chunk {chunk.seq} ({where}, {len(chunk)} products, status {outcome.status}): "
            f"outcome counted accepted {accepted} + rejected {rejected} + not sent {not_sent}; "
            f"the chunk's length was used"
        )


def _chunk_error(outcome: Outcome) -> ChunkErrorEntry:
    chunk = outcome.chunk
    return {
        "seq": chunk.seq,
        "status": outcome.status,
        "error": redact(outcome.error or ""),
        "source": chunk.source if len(chunk) else None,
        "first_line": chunk.first_line if len(chunk) else None,
        "last_line": chunk.last_line if len(chunk) else None,
        "products": len(chunk),
        "not_sent": outcome.not_sent,
        "batch_id": outcome.batch_id,
    }


def _unattributed_entry(u: Unattributed) -> UnattributedEntry:
    return {
        "message": u.message,
        "count": u.count,
        "source": u.source,
        "first_line": u.first_line,
        "last_line": u.last_line,
        "batch_id": u.batch_id,
    }
