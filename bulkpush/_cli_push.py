"""What ``bulkpush push`` does around a run: signals, the end-of-run log line, warnings, files.

- :class:`Signals`: SIGINT/SIGTERM stop the run cleanly (a grace period for
  the requests in flight, then stop; a second signal stops at once).
- :func:`finish`: the JSON report, the summary, the ``finished`` log event.
- :func:`warn_empty`: sources that held no products.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

import click

from bulkpush._logging import current_format
from bulkpush._pipeline import Pipeline
from bulkpush.report import Report

__all__ = ["INTERRUPT_GRACE_S", "Signals", "finish", "log_finished", "warn_empty"]

# After the first Ctrl-C or SIGTERM, requests in flight get this long to end.
INTERRUPT_GRACE_S = 10.0

log = logging.getLogger("bulkpush.push")


def log_finished(report: Report) -> None:
    log.info(
        "push %s: %d read, %d accepted, %d rejected, %d not sent",
        "stopped" if report.stopped else "finished",
        report.read,
        report.accepted,
        report.rejected,
        report.not_sent,
        extra={
            "event": "finished",
            "stream": report.stream,
            "read": report.read,
            "accepted": report.accepted,
            "rejected": report.rejected,
            "not_sent": report.not_sent,
            "requests": report.requests,
            "retries": report.retries,
            "throttled": report.throttled,
            "stopped": report.stopped,
            "dry_run": report.dry_run,
            "would_send": report.would_send,
            "duration_s": round(report.duration_s, 3),
        },
    )


def warn_empty(sources: tuple[str, ...], report: Report) -> None:
    """Warn about sources that held no products: the exit code (0) cannot say it.

    Printed with ``--quiet`` too: an empty catalog is most often the wrong file.
    All of them when nothing was read; else the files that are empty on disk.
    """
    for src in sources:
        empty = report.read == 0
        if not empty and src != "-":
            with contextlib.suppress(OSError):
                empty = os.path.getsize(src) == 0
        if empty:
            name = "<stdin>" if src == "-" else src
            click.echo(f"bulkpush: warning: {name} holds no products", err=True)


class Signals:
    """SIGINT/SIGTERM stop a push cleanly: the first lets the requests in flight end
    (INTERRUPT_GRACE_S at most), a second stops at once; the report and the rejects
    file are written either way. Before the run starts (the preflight) a signal
    cancels it: nothing was read."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.hits = 0
        self.pipeline: Pipeline | None = None
        self.task = asyncio.current_task()
        self.loop = asyncio.get_running_loop()

    def __enter__(self) -> Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(sig, self.on_signal, sig.name)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.remove_signal_handler(sig)

    def on_signal(self, name: str) -> None:
        self.hits += 1
        reason = f"interrupted ({name})"
        if self.pipeline is None:
            if self.task is not None:
                self.task.cancel(reason)
            return
        if self.hits == 1:
            message = (
                f"{name}: stopping: reading no further, letting the requests in "
                f"flight end (at most {INTERRUPT_GRACE_S:.0f} s); again to stop at once"
            )
            if current_format() == "json":
                log.warning(message, extra={"event": "interrupt", "signal": name})
            else:
                click.echo(f"bulkpush: {message}", err=True)
        self.pipeline.interrupt(reason, grace_s=INTERRUPT_GRACE_S if self.hits == 1 else 0)


def finish(report: Report, report_path: str | None, quiet: bool) -> None:
    log_finished(report)
    if report_path:
        report.write_json(report_path)
    if not quiet:
        click.echo(report.summary())
        if report_path:
            click.echo(f"report: {report_path}")
