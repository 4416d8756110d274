"""Accounting, error aggregation, the JSON report, the rejects file, the summary.

One :class:`Report` accumulates one run (or one part of a job); its JSON form
is typed by the report schema (``_schema.ReportData``: every key of
docs/report.md, written down once); :func:`merge_reports` merges the reports
of the parts of one job; :func:`render_summary` turns either into the human
summary. :class:`RejectsWriter` writes the rejected products to the rejects
file, which the sources read back. Secrets are masked by :func:`redact`
before any message is kept.

The modules, one idea each: ``_report`` (accounting), ``_schema`` (the JSON
report's keys), ``_errors`` (aggregation by message), ``_merge``,
``_summary``, ``_rejects`` (the rejects file format), ``_redact`` and
``_atomic`` (files never seen half-written).
"""

from __future__ import annotations

from bulkpush.report._atomic import write_json_atomic
from bulkpush.report._merge import merge_reports
from bulkpush.report._redact import redact
from bulkpush.report._rejects import RejectsWriter, rejects_line
from bulkpush.report._report import Report
from bulkpush.report._schema import CONTRACT_KEYS
from bulkpush.report._summary import render_summary

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
