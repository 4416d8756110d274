"""Accounting, error aggregation, the JSON report, the rejects file, the summary.

One :class:`Report` accumulates one run (or one part of a job): every record
read ends in exactly one bucket, ``accepted``, ``rejected`` or ``not_sent``,
so ``read == accepted + rejected + not_sent`` (:attr:`Report.balanced`) holds
after any mix of outcomes, rejections and stops. Rejections are aggregated by
``(stage, message)`` with their total occurrences and a few examples in source
order; memory stays bounded however many products are rejected (at most
``max_examples`` examples per message and ``max_messages`` distinct messages).

:class:`RejectsWriter` writes the rejected products themselves, one NDJSON
line each, in the shape the source reader's ``rejects`` format reads back, so
a fixed rejects file can be pushed again. :func:`merge_reports` merges the
reports of the parts of one job.

The report never holds a token: it only sees records, counts and the API's
error titles; as a second line of defence, messages that look like they carry
a credential (``Bearer …``, ``token=…``) are masked before they are stored.
"""

from __future__ import annotations

import bisect
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

from bulkpush._version import __version__
from bulkpush.records import STAGE_CLIENT, STAGE_UPLOAD, Outcome, Record, Rejection, Unattributed

__all__ = [
    "CONTRACT_KEYS",
    "RejectsWriter",
    "Report",
    "merge_reports",
    "redact",
    "rejects_line",
    "render_summary",
    "write_json_atomic",
]

#: The keys every JSON report has; scripts depend on them, never remove one.
CONTRACT_KEYS: tuple[str, ...] = (
    "read",
    "accepted",
    "rejected",
    "not_sent",
    "requests",
    "retries",
    "throttled",
    "batches",
    "bytes_read",
    "bytes_sent",
    "duration_s",
    "errors",
)

_MB = 1_000_000  # reports use decimal megabytes, as network rates do
_OVERFLOW_MESSAGE = "(other messages: more distinct messages than the report keeps)"
_MAX_CHUNK_ERRORS = 100
_MAX_ANOMALIES = 100

# Defence in depth: transport never puts a token in a message, but an API
# could echo a header back. Product data is never touched, only messages.
_SECRET_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"(?i)\b(authorization|x-auth-token|x-api-key|private-token|api[_-]?key"
        r"|access[_-]?token|token|secret|password)(\"?\s*[:=]\s*\"?)"
        r"(?!(?:bearer|basic)\s|\*\*\*)[^\s\"'&,;]+"
    ),
)


def redact(message: str) -> str:
    """``message`` with anything that looks like a credential replaced by ``***``."""
    for pattern in _SECRET_PATTERNS:
        message = pattern.sub(r"\1\2***", message)
    return message


# An example's position: (rank of its source by first appearance, line, source, id).
_Example = tuple[int, int, str, str | None]


@dataclass(slots=True)
class _ErrorGroup:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "message": self.message,
            "occurrences": self.occurrences,
            "examples": [{"source": s, "line": ln, "id": pid} for _, ln, s, pid in self.examples],
        }


class Report:
    """The mutable accumulator of one run's accounting and errors.

    Not thread-safe: feed it from the event loop. ``max_examples`` caps the
    examples kept per error message, ``max_messages`` the distinct messages
    kept per stage (the rest are folded into one "other messages" entry, so a
    message that embeds a product value cannot make memory grow with the
    catalog). ``clock`` returns seconds (monotonic); tests pass a fake one.

    Counters (public, read them freely): ``read``, ``accepted``, ``rejected``,
    ``not_sent``, ``requests``, ``retries``, ``throttled``, ``bytes_read``,
    ``bytes_sent``, ``batches``, ``duration_s``.
    """

    def __init__(
        self,
        *,
        max_examples: int = 5,
        stream: str | None = None,
        target: str | None = None,
        max_messages: int = 1000,
        clock: Callable[[], float] = time.monotonic,
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
        self.requests = 0
        self.retries = 0
        self.throttled = 0
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
        self.chunk_errors: list[dict[str, Any]] = []
        self.chunk_errors_total = 0
        self.anomalies: list[str] = []
        self.anomalies_total = 0
        self._clock = clock
        self._started = clock()
        self._batch_set: set[str] = set()
        self._groups: dict[tuple[str, str], _ErrorGroup] = {}  # by (stage, redacted message)
        self._lookup: dict[tuple[str, str], _ErrorGroup] = {}  # by (stage, raw message)
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
        self.finished = True
        if stopped is not None:
            self.stopped = redact(stopped)

    # -- reading -----------------------------------------------------------

    @property
    def balanced(self) -> bool:
        """True when ``read == accepted + rejected + not_sent``."""
        return self.read == self.accepted + self.rejected + self.not_sent

    @property
    def elapsed_s(self) -> float:
        """The duration once finished, the time so far before."""
        return self.duration_s if self.finished else max(0.0, self._clock() - self._started)

    def errors(self) -> list[dict[str, Any]]:
        """The aggregated errors, most frequent first (ties: by stage, then message)."""
        groups = sorted(self._groups.values(), key=lambda g: (-g.occurrences, g.stage, g.message))
        return [g.to_dict() for g in groups]

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: the contract keys plus extras (see docs/report.md)."""
        duration = self.elapsed_s
        return {
            "read": self.read,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "not_sent": self.not_sent,
            "requests": self.requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "batches": list(self.batches),
            "bytes_read": self.bytes_read,
            "bytes_sent": self.bytes_sent,
            "duration_s": round(duration, 3),
            "errors": self.errors(),
            # extras
            "balanced": self.balanced,
            "rejected_by_stage": {
                STAGE_CLIENT: self.rejected_client,
                STAGE_UPLOAD: self.rejected_upload,
            },
            "unattributed_total": self.unattributed_total,
            "unattributed": [_unattributed_dict(u) for u in self.unattributed],
            "pinpoint": {
                "requests": self.pinpoint_requests,
                "bytes_sent": self.pinpoint_bytes_sent,
            },
            "chunk_errors": [dict(e) for e in self.chunk_errors],
            "chunk_errors_total": self.chunk_errors_total,
            "anomalies": list(self.anomalies),
            "stopped": self.stopped,
            "stream": self.stream,
            "target": self.target,
            "rejects_file": self.rejects_path,
            "rejects_written": self.rejects_written,
            "products_per_s": _rate(self.read, duration),
            "mb_per_s_sent": _rate(self.bytes_sent / _MB, duration),
            "version": __version__,
        }

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

    def _new_group(self, stage: str, message: str) -> _ErrorGroup:
        shown = redact(message)
        group = self._groups.get((stage, shown))
        if group is None:
            if self._messages_per_stage.get(stage, 0) >= self.max_messages:
                # Not remembered in _lookup: the raw messages are what grows.
                key = (stage, _OVERFLOW_MESSAGE)
                group = self._groups.get(key)
                if group is None:
                    group = self._groups[key] = _ErrorGroup(stage, _OVERFLOW_MESSAGE)
                return group
            self._messages_per_stage[stage] = self._messages_per_stage.get(stage, 0) + 1
            group = self._groups[(stage, shown)] = _ErrorGroup(stage, shown)
        self._lookup[(stage, message)] = group
        return group

    def _anomaly(self, outcome: Outcome, accepted: int, rejected: int, not_sent: int) -> None:
        self.anomalies_total += 1
        if len(self.anomalies) >= _MAX_ANOMALIES:
            return
        chunk = outcome.chunk
        where = (
            f"{chunk.first.source} lines {chunk.first.line}-{chunk.last.line}"
            if chunk.records
            else "an empty chunk"
        )
        self.anomalies.append(
            f"chunk {chunk.seq} ({where}, {len(chunk)} products, status {outcome.status}): "
            f"outcome counted accepted {accepted} + rejected {rejected} + not sent {not_sent}; "
            f"the chunk's length was used"
        )


def _chunk_error(outcome: Outcome) -> dict[str, Any]:
    chunk = outcome.chunk
    return {
        "seq": chunk.seq,
        "status": outcome.status,
        "error": redact(outcome.error or ""),
        "source": chunk.first.source if chunk.records else None,
        "first_line": chunk.first.line if chunk.records else None,
        "last_line": chunk.last.line if chunk.records else None,
        "products": len(chunk),
        "not_sent": outcome.not_sent,
        "batch_id": outcome.batch_id,
    }


def _unattributed_dict(u: Unattributed) -> dict[str, Any]:
    return {
        "message": u.message,
        "count": u.count,
        "source": u.source,
        "first_line": u.first_line,
        "last_line": u.last_line,
        "batch_id": u.batch_id,
    }


def _rate(amount: float, seconds: float) -> float:
    return round(amount / seconds, 3) if seconds > 0 else 0.0


# -- files -------------------------------------------------------------------


def _temp_path(path: str | os.PathLike[str]) -> Path:
    final = Path(path)
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` so that ``path`` is never half-written.

    The bytes go to a temp file in the same directory (same filesystem, so
    the rename is atomic), are flushed to disk, then renamed over ``path``.
    """
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RejectsWriter:
    """Writes rejected products to an NDJSON file, one line per product.

    Each line is ``{"product": …, "reason": …, "stage": …, "source": …,
    "line": …}`` with exactly these keys. ``product`` is the product object
    exactly as it was sent (its bytes are copied, not re-encoded) when the
    record is a JSON object, else the raw line as a string (undecodable bytes
    as ``\\xNN``). The source reader's ``rejects`` format unwraps ``product``,
    so the fixed file can be pushed again.

    The file is written to ``path + ".tmp"`` and renamed to ``path`` on
    :meth:`close`. On an exception the partial file is still renamed: the
    rejects found before the failure are worth keeping, and the report's
    ``rejected`` count tells whether the file is complete. Lines come in the
    order rejections were written (completion order, not source order).

    Consecutive :meth:`write` calls for the same record (one per failed
    check) make one line, their reasons joined with ``"; "``; pass a whole
    outcome's rejections to :meth:`write_all` to group a product named under
    several messages. ``count`` is the number of lines written so far.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.tmp_path = self.path + ".tmp"
        self.count = 0
        self._file: IO[bytes] | None = open(self.tmp_path, "wb")  # noqa: SIM115
        self._pending: Rejection | None = None
        self._reasons: list[str] = []

    def __repr__(self) -> str:
        state = "closed" if self._file is None else "open"
        return f"<RejectsWriter path={self.path!r} count={self.count} {state}>"

    def __enter__(self) -> RejectsWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, rejection: Rejection) -> None:
        """Write one rejected product (merged with the previous one if it is the same record)."""
        if self._file is None:
            raise ValueError("write to a closed RejectsWriter")
        pending = self._pending
        if pending is not None and pending.record is rejection.record:
            if rejection.message not in self._reasons:
                self._reasons.append(rejection.message)
            return
        self._flush_pending()
        self._pending = rejection
        self._reasons = [rejection.message]

    def write_all(self, rejections: Iterable[Rejection]) -> None:
        """Write rejections, one line per distinct record in order of first appearance."""
        by_record: dict[int, list[Rejection]] = {}
        for r in rejections:
            by_record.setdefault(id(r.record), []).append(r)
        for group in by_record.values():
            for r in group:
                self.write(r)

    def close(self) -> None:
        """Flush, write to disk and rename the file to its final name. Idempotent."""
        if self._file is None:
            return
        f = self._file
        try:
            self._flush_pending()
            f.flush()
            os.fsync(f.fileno())
        finally:
            self._file = None
            f.close()
            os.replace(self.tmp_path, self.path)

    def _flush_pending(self) -> None:
        r = self._pending
        if r is None or self._file is None:
            return
        self._pending = None
        self._file.write(rejects_line(r, "; ".join(self._reasons)))
        self.count += 1


def rejects_line(rejection: Rejection, reason: str | None = None) -> bytes:
    """One rejects-file line (with its newline) for ``rejection``."""
    record = rejection.record
    tail = orjson.dumps(
        {
            "reason": redact(rejection.message if reason is None else reason),
            "stage": rejection.stage,
            "source": record.source,
            "line": record.line,
        }
    )
    raw = record.raw
    try:
        is_object = isinstance(orjson.loads(raw), dict)
    except orjson.JSONDecodeError:
        is_object = False
    if is_object and b"\n" not in raw and b"\r" not in raw:
        # Splice the bytes as sent: keeps key order, number spelling and
        # integers too large for a round trip through Python floats.
        return b'{"product":' + raw + b"," + tail[1:] + b"\n"
    text = raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
    return b'{"product":' + orjson.dumps(text) + b"," + tail[1:] + b"\n"


# -- merging and rendering ---------------------------------------------------

_SUM_KEYS = (
    "read",
    "accepted",
    "rejected",
    "not_sent",
    "requests",
    "retries",
    "throttled",
    "bytes_read",
    "bytes_sent",
    "unattributed_total",
    "chunk_errors_total",
)


def merge_reports(reports: Iterable[dict[str, Any]], *, max_examples: int = 5) -> dict[str, Any]:
    """Merge the :meth:`Report.to_dict` outputs of the parts of one job.

    Counters are summed; batch lists joined (duplicates dropped, order kept);
    errors merged by ``(stage, message)``: occurrences summed, examples in
    source order (sources ranked by first appearance in ``reports``, then
    line) capped at ``max_examples``; ``unattributed`` and ``chunk_errors``
    concatenated. ``duration_s`` is the longest part's: parts run in
    parallel, so a sum would overstate; a caller that knows the job's wall
    clock should overwrite it (rates are recomputed from it). ``stopped`` is
    the parts' stop reasons joined with "; ", None when no part stopped.
    """
    parts = list(reports)
    out: dict[str, Any] = {k: 0 for k in _SUM_KEYS}
    batches: list[str] = []
    seen_batches: set[str] = set()
    groups: dict[tuple[str, str], _ErrorGroup] = {}
    ranks: dict[str, int] = {}
    by_stage = {STAGE_CLIENT: 0, STAGE_UPLOAD: 0}
    pinpoint = {"requests": 0, "bytes_sent": 0}
    unattributed: list[dict[str, Any]] = []
    chunk_errors: list[dict[str, Any]] = []
    anomalies: list[str] = []
    stopped: list[str] = []
    duration = 0.0
    rejects_written = 0
    have_rejects = False
    for part in parts:
        for k in _SUM_KEYS:
            out[k] += int(part.get(k, 0) or 0)
        for b in part.get("batches", []):
            if b not in seen_batches:
                seen_batches.add(b)
                batches.append(b)
        duration = max(duration, float(part.get("duration_s", 0.0) or 0.0))
        for stage, n in (part.get("rejected_by_stage") or {}).items():
            by_stage[stage] = by_stage.get(stage, 0) + int(n)
        for k in pinpoint:
            pinpoint[k] += int((part.get("pinpoint") or {}).get(k, 0))
        unattributed.extend(part.get("unattributed", []))
        chunk_errors.extend(part.get("chunk_errors", []))
        anomalies.extend(part.get("anomalies", []))
        if part.get("stopped"):
            stopped.append(str(part["stopped"]))
        if part.get("rejects_written") is not None:
            have_rejects = True
            rejects_written += int(part["rejects_written"])
        for e in part.get("errors", []):
            key = (e["stage"], e["message"])
            group = groups.get(key)
            if group is None:
                group = groups[key] = _ErrorGroup(e["stage"], e["message"])
            group.occurrences += int(e["occurrences"])
            for ex in e.get("examples", []):
                src = ex["source"]
                rank = ranks.setdefault(src, len(ranks))
                group.offer(rank, ex["line"], src, max_examples, pid=ex.get("id"))
    first = parts[0] if parts else {}
    out.update(
        batches=batches,
        duration_s=round(duration, 3),
        errors=[
            g.to_dict()
            for g in sorted(groups.values(), key=lambda g: (-g.occurrences, g.stage, g.message))
        ],
    )
    out["balanced"] = out["read"] == out["accepted"] + out["rejected"] + out["not_sent"]
    out.update(
        rejected_by_stage=by_stage,
        unattributed=unattributed,
        pinpoint=pinpoint,
        chunk_errors=chunk_errors,
        anomalies=anomalies,
        stopped="; ".join(stopped) if stopped else None,
        stream=first.get("stream"),
        target=first.get("target"),
        rejects_file=first.get("rejects_file"),
        rejects_written=rejects_written if have_rejects else None,
        products_per_s=_rate(out["read"], duration),
        mb_per_s_sent=_rate(out["bytes_sent"] / _MB, duration),
        version=__version__,
        parts=len(parts),
    )
    return out


def _n(value: int) -> str:
    return f"{value:,}"


def _count(value: int, noun: str) -> str:
    """``1 product``, ``2,000 products``."""
    return f"{value:,} {noun}" if value == 1 else f"{value:,} {noun}s"


def _mb(nbytes: float) -> str:
    return f"{nbytes / _MB:,.1f} MB"


def render_summary(d: dict[str, Any], *, top: int = 5, max_unattributed: int = 5) -> str:
    """The human summary of a report dict (:meth:`Report.to_dict` or :func:`merge_reports`)."""
    duration = float(d.get("duration_s") or 0.0)
    lines: list[str] = []
    where = f" to stream {d['stream']}" if d.get("stream") else ""
    status = "stopped early" if d.get("stopped") else "done"
    lines.append(f"bulkpush {status}{where}: {_n(d['read'])} products in {duration:,.1f} s")
    if duration > 0:
        lines.append(
            f"  throughput  {_n(round(d['read'] / duration))} products/s, "
            f"read {_mb(d['bytes_read'])} ({d['bytes_read'] / _MB / duration:,.1f} MB/s), "
            f"sent {_mb(d['bytes_sent'])} ({d['bytes_sent'] / _MB / duration:,.1f} MB/s)"
        )
    by_stage = d.get("rejected_by_stage") or {}
    w = max(len(_n(d[k])) for k in ("read", "accepted", "rejected", "not_sent"))
    lines.append(f"  accepted    {_n(d['accepted']):>{w}}")
    rej = f"  rejected    {_n(d['rejected']):>{w}}"
    if d["rejected"]:
        rej += (
            f"  (client {_n(by_stage.get(STAGE_CLIENT, 0))}, "
            f"upload {_n(by_stage.get(STAGE_UPLOAD, 0))}"
        )
        if d.get("unattributed_total"):
            rej += f", of which {_n(d['unattributed_total'])} not named by the API"
        rej += ")"
    lines.append(rej)
    lines.append(f"  not sent    {_n(d['not_sent']):>{w}}")
    pin = d.get("pinpoint") or {}
    req = (
        f"  requests    {_n(d['requests']):>{w}}  (retries {_n(d['retries'])}, "
        f"throttled {_n(d['throttled'])}"
    )
    if pin.get("requests"):
        req += f", pinpointing {_n(pin['requests'])} ({_mb(pin.get('bytes_sent', 0))})"
    lines.append(req + ")")
    lines.append(f"  batches     {_n(len(d.get('batches', []))):>{w}}")
    if not d.get("balanced", True):
        lines.append(
            "  WARNING: the accounting does not balance "
            "(read != accepted + rejected + not sent); please report this bug"
        )
    if d.get("stopped"):
        lines.append(f"Stopped early: {d['stopped']}; {_count(d['not_sent'], 'product')} not sent.")

    errors = d.get("errors") or []
    if errors:
        lines.append(f"Top errors ({len(errors)} distinct):")
        for e in errors[:top]:
            lines.append(f"  {_n(e['occurrences'])} x [{e['stage']}] {e['message']}")
            if e.get("examples"):
                ex = e["examples"][0]
                pid = "" if ex.get("id") is None else f" (id {ex['id']})"
                if ex.get("id") == "":
                    pid = " (empty id)"
                lines.append(f"      e.g. {ex['source']}:{ex['line']}{pid}")
        if len(errors) > top:
            lines.append(f"  ... and {len(errors) - top} more in the JSON report")

    unattributed = d.get("unattributed") or []
    if unattributed:
        lines.append(
            f"Not named by the API: {_count(d.get('unattributed_total', 0), 'rejected product')} "
            "(it names one example per message per request):"
        )
        for u in unattributed[:max_unattributed]:
            batch = f", batch {u['batch_id']}" if u.get("batch_id") else ""
            lines.append(
                f"  {_n(u['count'])} x {u['message']!r} in {u['source']} "
                f"lines {u['first_line']}-{u['last_line']}{batch}"
            )
        if len(unattributed) > max_unattributed:
            more = _count(len(unattributed) - max_unattributed, "more request")
            lines.append(f"  ... and {more}")
        if not pin.get("requests"):
            lines.append("  --pinpoint-rejects finds them, at the cost of extra requests.")

    if d.get("anomalies"):
        lines.append(f"Accounting notes ({len(d['anomalies'])}):")
        lines.extend(f"  {a}" for a in d["anomalies"][:3])

    if d.get("rejects_file"):
        count = d.get("rejects_written")
        n = f" ({_count(count, 'product')})" if count is not None else ""
        again = f" --stream {d['stream']}" if d.get("stream") else ""
        lines.append(f"Rejects file: {d['rejects_file']}{n}")
        lines.append(f"  fix them and push again: bulkpush push {d['rejects_file']}{again}")
    return "\n".join(lines)
