"""The human summary of a report: counts, throughput, top errors, unattributed, rejects file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bulkpush._records import STAGE_CLIENT, STAGE_UPLOAD
from bulkpush.report._schema import MB, ReportData

__all__ = ["render_summary"]


def _count(value: int, noun: str) -> str:
    """``1 product``, ``2,000 products``."""
    return f"{value:,} {noun}" if value == 1 else f"{value:,} {noun}s"


def _n(value: int) -> str:
    return f"{value:,}"


def _mb(nbytes: float) -> str:
    return f"{nbytes / MB:,.1f} MB"


def render_summary(d: Mapping[str, Any], *, top: int = 5, max_unattributed: int = 5) -> str:
    """The human summary of a report dict (:meth:`Report.to_dict` or :func:`merge_reports`)."""
    r = ReportData.from_dict(d)
    duration = float(r.duration_s)
    lines: list[str] = []
    status = "stopped early" if r.stopped else "done"
    if r.dry_run:
        where = f" for stream {r.stream}" if r.stream else ""
        status = f"dry run {status}{where}, nothing sent"
    else:
        status += f" to stream {r.stream}" if r.stream else ""
    lines.append(f"bulkpush {status}: {_n(r.read)} products in {duration:,.1f} s")
    if duration > 0:
        rates = (
            f"  throughput  {_n(round(r.read / duration))} products/s, "
            f"read {_mb(r.bytes_read)} ({r.bytes_read / MB / duration:,.1f} MB/s)"
        )
        if not r.dry_run:
            rates += f", sent {_mb(r.bytes_sent)} ({r.bytes_sent / MB / duration:,.1f} MB/s)"
            if r.link_mb_per_s > 0:
                rates += f"; uplink {r.link_mb_per_s:,.1f} MB/s while sending"
        lines.append(rates)
    counts = (r.read, r.accepted, r.rejected, r.not_sent, r.would_send)
    w = max(len(_n(n)) for n in counts)
    if r.dry_run:
        lines.append(
            f"  would send  {_n(r.would_send):>{w}}  "
            f"(in {_count(r.would_send_requests, 'request')}, {_mb(r.would_send_bytes)})"
        )
    else:
        lines.append(f"  accepted    {_n(r.accepted):>{w}}")
    rej = f"  rejected    {_n(r.rejected):>{w}}"
    if r.rejected:
        by_stage = r.rejected_by_stage
        rej += (
            f"  (client {_n(by_stage.get(STAGE_CLIENT, 0))}, "
            f"upload {_n(by_stage.get(STAGE_UPLOAD, 0))}"
        )
        if r.unattributed_total:
            rej += f", of which {_n(r.unattributed_total)} not named by the API"
        rej += ")"
    lines.append(rej)
    lines.append(f"  not sent    {_n(r.not_sent):>{w}}")
    if r.dry_run:
        lines.extend(_footer(r, top, max_unattributed))
        return "\n".join(lines)
    pin = r.pinpoint
    req = (
        f"  requests    {_n(r.requests):>{w}}  (retries {_n(r.retries)}, "
        f"throttled {_n(r.throttled)}"
    )
    if r.timed_out:
        req += f", ended by the server for taking too long {_n(r.timed_out)}"
    if pin.get("requests"):
        req += f", pinpointing {_n(pin['requests'])} ({_mb(pin.get('bytes_sent', 0))})"
    lines.append(req + ")")
    lines.append(f"  batches     {_n(len(r.batches)):>{w}}")
    lines.extend(_footer(r, top, max_unattributed))
    return "\n".join(lines)


def _footer(r: ReportData, top: int, max_unattributed: int) -> list[str]:
    """The balance warning, the stop, errors, unattributed, anomalies, rejects file."""
    lines: list[str] = []
    if not r.balanced:
        lines.append(
            "  WARNING: the accounting does not balance "
            "(read != accepted + rejected + not sent); please report this bug"
        )
    if r.stopped:
        lines.append(f"Stopped early: {r.stopped}; {_count(r.not_sent, 'product')} not sent.")
    lines.extend(_errors(r, top))
    lines.extend(_unattributed(r, max_unattributed))
    if r.anomalies:
        lines.append(f"Accounting notes ({len(r.anomalies)}):")
        lines.extend(f"  {a}" for a in r.anomalies[:3])
    if r.rejects_file:
        count = r.rejects_written
        n = f" ({_count(count, 'product')})" if count is not None else ""
        again = f" --stream {r.stream}" if r.stream else ""
        lines.append(f"Rejects file: {r.rejects_file}{n}")
        lines.append(f"  fix them and push again: bulkpush push {r.rejects_file}{again}")
    return lines


def _errors(r: ReportData, top: int) -> list[str]:
    errors = r.errors
    if not errors:
        return []
    lines = [f"Top errors ({len(errors)} distinct):"]
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
    return lines


def _unattributed(r: ReportData, limit: int) -> list[str]:
    unattributed = r.unattributed
    if not unattributed:
        return []
    lines = [
        f"Not named by the API: {_count(r.unattributed_total, 'rejected product')} "
        "(it names one example per message per request):"
    ]
    for u in unattributed[:limit]:
        batch = f", batch {u['batch_id']}" if u.get("batch_id") else ""
        lines.append(
            f"  {_n(u['count'])} x {u['message']!r} in {u['source']} "
            f"lines {u['first_line']}-{u['last_line']}{batch}"
        )
    if len(unattributed) > limit:
        more = _count(len(unattributed) - limit, "more request")
        lines.append(f"  ... and {more}")
    if not r.pinpoint.get("requests"):
        lines.append("  --pinpoint-rejects finds them, at the cost of extra requests.")
    return lines
