"""Merging the reports of the parts of one job into the job's report."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bulkpush.report._errors import ErrorGroup, sorted_entries
from bulkpush.report._schema import MB, ReportData, rate

__all__ = ["merge_reports"]


def merge_reports(reports: Iterable[Mapping[str, Any]], *, max_examples: int = 5) -> dict[str, Any]:
    """Merge the :meth:`Report.to_dict` outputs of the parts of one job.

    Counters are summed; batch lists joined (duplicates dropped, order kept);
    errors merged by ``(stage, message)``: occurrences summed, examples in
    source order (sources ranked by first appearance in ``reports``, then
    line) capped at ``max_examples``; ``unattributed`` and ``chunk_errors``
    concatenated. ``duration_s`` is the longest part's: parts run in
    parallel, so a sum would overstate; a caller that knows the job's wall
    clock should overwrite it (rates are recomputed from it). ``stopped`` is
    the parts' stop reasons joined with "; ", None when no part stopped.
    ``link_mb_per_s`` is the largest of the parts' (each measured its own
    uplink; parts on one machine share it).
    The result has the keys of :meth:`Report.to_dict` plus ``parts``.
    """
    parts = [ReportData.from_dict(d) for d in reports]
    out = ReportData(parts=len(parts))
    seen_batches: set[str] = set()
    groups: dict[tuple[str, str], ErrorGroup] = {}
    ranks: dict[str, int] = {}
    stopped: list[str] = []
    duration = 0.0
    for part in parts:
        out.read += int(part.read)
        out.accepted += int(part.accepted)
        out.rejected += int(part.rejected)
        out.not_sent += int(part.not_sent)
        out.requests += int(part.requests)
        out.retries += int(part.retries)
        out.throttled += int(part.throttled)
        out.timed_out += int(part.timed_out)
        # Parts may run on different machines: the best link any part saw.
        out.link_mb_per_s = max(out.link_mb_per_s, float(part.link_mb_per_s))
        out.bytes_read += int(part.bytes_read)
        out.bytes_sent += int(part.bytes_sent)
        out.unattributed_total += int(part.unattributed_total)
        out.chunk_errors_total += int(part.chunk_errors_total)
        out.dry_run = out.dry_run or bool(part.dry_run)
        out.would_send += int(part.would_send)
        out.would_send_requests += int(part.would_send_requests)
        out.would_send_bytes += int(part.would_send_bytes)
        for b in part.batches:
            if b not in seen_batches:
                seen_batches.add(b)
                out.batches.append(b)
        duration = max(duration, float(part.duration_s))
        for stage, n in part.rejected_by_stage.items():
            out.rejected_by_stage[stage] = out.rejected_by_stage.get(stage, 0) + int(n)
        out.pinpoint["requests"] += int(part.pinpoint.get("requests", 0))
        out.pinpoint["bytes_sent"] += int(part.pinpoint.get("bytes_sent", 0))
        out.unattributed.extend(part.unattributed)
        out.chunk_errors.extend(part.chunk_errors)
        out.anomalies.extend(part.anomalies)
        if part.stopped:
            stopped.append(str(part.stopped))
        if part.rejects_written is not None:
            out.rejects_written = (out.rejects_written or 0) + int(part.rejects_written)
        for e in part.errors:
            key = (e["stage"], e["message"])
            group = groups.get(key)
            if group is None:
                group = groups[key] = ErrorGroup(e["stage"], e["message"])
            group.occurrences += int(e["occurrences"])
            for ex in e.get("examples", []):
                src = ex["source"]
                rank = ranks.setdefault(src, len(ranks))
                group.offer(rank, ex["line"], src, max_examples, pid=ex.get("id"))
    first = parts[0] if parts else ReportData()
    out.duration_s = round(duration, 3)
    out.errors = sorted_entries(groups.values())
    out.balanced = out.read == out.accepted + out.rejected + out.not_sent
    out.stopped = "; ".join(stopped) if stopped else None
    out.stream, out.target, out.rejects_file = first.stream, first.target, first.rejects_file
    out.products_per_s = rate(out.read, duration)
    out.mb_per_s_sent = rate(out.bytes_sent / MB, duration)
    return out.to_dict()
