"""The live terminal progress display.

:func:`make_progress` returns a :class:`LiveProgress` (a ``rich`` live
display) when asked for and the stream is a terminal, else a
:class:`NullProgress` that does nothing. Both have the same three methods
(:class:`Progress`); the pipeline calls :meth:`~Progress.advance` as records
are read and outcomes arrive.

``advance()`` only adds to a few integers: it never renders. ``rich``
redraws from its own thread a few times per second (``refresh_per_second``),
reading the counters, so the display costs the pipeline nothing per record.
The display shows products read / accepted / rejected, MB read, products/s,
MB/s sent and, when the total source size is known, a bar and the ETA.
Rates are over the last few seconds, so they follow the current speed.
MB are decimal (10^6 bytes), as in the report.

The bar and the ETA measure acknowledged products (``basis="acknowledged"``,
the default): those the API answered (accepted or rejected) and those the
client's checks rejected, not those read. Reading runs far ahead of sending
(the queues and the in-flight budget hold tens of MB), so a bar of bytes read
would show 45 % done with a sixth of the products answered. The pipeline
counts answers in products, so their bytes are estimated from the average
size of the products read so far (:func:`acknowledged_bytes`). A dry run,
where nothing is answered, uses ``basis="read"``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bulkpush._resource import Resource

__all__ = [
    "Basis",
    "LiveProgress",
    "NullProgress",
    "Progress",
    "acknowledged_bytes",
    "make_progress",
]

Basis = Literal["acknowledged", "read"]

_MB = 1_000_000
_RATE_WINDOW_S = 5.0  # rates and ETA follow the last few seconds, not the whole run


class Progress(Protocol):
    """What the pipeline calls; :func:`make_progress` returns one."""

    def start(self, *, total_bytes: int | None) -> None:
        """Begin displaying; ``total_bytes`` is the sources' total size if known."""

    def advance(
        self,
        *,
        records: int = 0,
        source_bytes: int = 0,
        accepted: int = 0,
        rejected: int = 0,
        bytes_sent: int = 0,
    ) -> None:
        """Add to the counters. Cheap: O(1), no I/O, no rendering."""

    def close(self) -> None:
        """Stop displaying. Idempotent."""


class NullProgress(Resource):
    """A progress display that shows nothing (not a terminal, or ``--quiet``)."""

    def __repr__(self) -> str:
        return "<NullProgress>"

    def start(self, *, total_bytes: int | None) -> None:
        pass

    def advance(
        self,
        *,
        records: int = 0,
        source_bytes: int = 0,
        accepted: int = 0,
        rejected: int = 0,
        bytes_sent: int = 0,
    ) -> None:
        pass

    def close(self) -> None:
        pass


class LiveProgress(Resource):
    """A ``rich`` live display of the run's progress on ``console``.

    ``refresh_per_second`` bounds how often it redraws (from rich's refresh
    thread); ``auto_refresh=False`` turns that thread off (tests, or a caller
    that calls :meth:`refresh` itself). ``clock`` returns monotonic seconds.
    ``basis``: what the bar and the ETA measure (see the module docstring).
    The display disappears on :meth:`close` (the run's summary follows it).
    """

    def __init__(
        self,
        *,
        console: Console,
        refresh_per_second: float = 4.0,
        auto_refresh: bool = True,
        clock: Callable[[], float] = time.monotonic,
        basis: Basis = "acknowledged",
    ) -> None:
        self.console = console
        self.basis: Basis = basis
        self.refresh_per_second = refresh_per_second
        self.auto_refresh = auto_refresh
        self.records = 0
        self.source_bytes = 0
        self.accepted = 0
        self.rejected = 0
        self.bytes_sent = 0
        self.total_bytes: int | None = None
        self.renders = 0
        self._clock = clock
        self._started = clock()
        self._live: Live | None = None
        # (time, records, source_bytes, bytes_sent, done_bytes); touched only when rendering.
        self._samples: deque[tuple[float, int, int, int, int]] = deque()
        self._render_lock = threading.Lock()

    def __repr__(self) -> str:
        state = "live" if self._live is not None else "idle"
        return (
            f"<LiveProgress {state} records={self.records} accepted={self.accepted} "
            f"rejected={self.rejected} source_bytes={self.source_bytes}>"
        )

    def start(self, *, total_bytes: int | None) -> None:
        """Start the live display; ``total_bytes`` enables the bar and the ETA."""
        self.total_bytes = total_bytes if total_bytes and total_bytes > 0 else None
        if self._live is not None:
            return
        self._started = self._clock()
        self._samples.clear()
        live = Live(
            self,
            console=self.console,
            auto_refresh=self.auto_refresh,
            refresh_per_second=self.refresh_per_second,
            transient=True,
            # Our stdout may carry data; stray stderr prints go above the display.
            redirect_stdout=False,
            redirect_stderr=True,
        )
        live.start()
        self._live = live

    def advance(
        self,
        *,
        records: int = 0,
        source_bytes: int = 0,
        accepted: int = 0,
        rejected: int = 0,
        bytes_sent: int = 0,
    ) -> None:
        """Add to the counters; the next redraw shows them."""
        self.records += records
        self.source_bytes += source_bytes
        self.accepted += accepted
        self.rejected += rejected
        self.bytes_sent += bytes_sent

    def refresh(self) -> None:
        """Redraw now (only needed with ``auto_refresh=False``)."""
        if self._live is not None:
            self._live.refresh()

    def close(self) -> None:
        """Stop the display and clear it. Idempotent."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def done_bytes(self) -> int:
        """The source bytes the bar counts as done: acknowledged (estimated) or read."""
        if self.basis == "read":
            return self.source_bytes
        return acknowledged_bytes(self.records, self.source_bytes, self.accepted + self.rejected)

    def __rich__(self) -> RenderableType:
        with self._render_lock:
            return self._render()

    def _render(self) -> RenderableType:
        self.renders += 1
        now = self._clock()
        records, src, sent = self.records, self.source_bytes, self.bytes_sent
        done = self.done_bytes()
        samples = self._samples
        samples.append((now, records, src, sent, done))
        while len(samples) > 2 and now - samples[1][0] >= _RATE_WINDOW_S:
            samples.popleft()
        t0, r0, _, b0, d0 = samples[0]
        if now - t0 < 0.5:  # too short a window: average since the start
            t0, r0, b0, d0 = self._started, 0, 0, 0
        span = now - t0
        rec_rate = (records - r0) / span if span > 0 else 0.0
        sent_rate = (sent - b0) / span if span > 0 else 0.0
        done_rate = (done - d0) / span if span > 0 else 0.0

        counts = Text.assemble(
            ("products ", "dim"),
            (f"{records:,}", "bold"),
            (" read  ", "dim"),
            (f"{self.accepted:,}", "green"),
            (" accepted  ", "dim"),
            (f"{self.rejected:,}", "red" if self.rejected else "dim"),
            (" rejected  ", "dim"),
            (f"{rec_rate:,.0f}", "bold"),
            (" products/s  ", "dim"),
            (f"{sent_rate / _MB:,.1f}", "bold"),
            (" MB/s sent", "dim"),
        )
        total = self.total_bytes
        elapsed = _clock_text(now - self._started)
        if total is None:
            size = Text.assemble(
                (f"{src / _MB:,.1f} MB", "bold"), (" read  ", "dim"), (elapsed, "dim")
            )
            return Group(size, counts)
        if self.basis == "read":
            sizes = Text.assemble(
                (f"{src / _MB:,.1f}/{total / _MB:,.1f} MB", "bold"), (" read  ", "dim")
            )
        else:
            sizes = Text.assemble(
                (f"{done / _MB:,.1f}/{total / _MB:,.1f} MB", "bold"),
                (" done  ", "dim"),
                (f"{src / _MB:,.1f} MB", "bold"),
                (" read  ", "dim"),
            )
        grid = Table.grid(padding=(0, 1))
        grid.add_row(
            ProgressBar(total=total, completed=min(done, total), width=30),
            Text(f"{min(done / total, 1.0):>4.0%}"),
            Text.assemble(
                sizes,
                (elapsed, "dim"),
                ("  ETA ", "dim"),
                (_eta(total - done, done_rate), "bold"),
            ),
        )
        return Group(grid, counts)


def acknowledged_bytes(records: int, source_bytes: int, acknowledged: int) -> int:
    """The source bytes of ``acknowledged`` of the ``records`` read (``source_bytes``),
    estimated at the average size of a product read: the pipeline counts answers in
    products. Never more than was read."""
    if records <= 0 or acknowledged <= 0:
        return 0
    if acknowledged >= records:
        return source_bytes
    return source_bytes * acknowledged // records


def _clock_text(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _eta(remaining_bytes: int, bytes_per_s: float) -> str:
    if remaining_bytes <= 0:
        return "0:00:00"
    if bytes_per_s <= 0:
        return "-:--:--"
    return _clock_text(remaining_bytes / bytes_per_s)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # closed, detached or not a file
        return False


def make_progress(
    *, enabled: bool, stream: TextIO | None = None, basis: Basis = "acknowledged"
) -> Progress:
    """A live display on ``stream`` (default ``sys.stderr``), or a :class:`NullProgress`.

    The live display is used only when ``enabled`` (the CLI passes ``not
    --quiet``) and ``stream`` is a terminal that can redraw (not
    ``TERM=dumb``); piped or redirected output gets no progress at all.
    ``basis``: what its bar and ETA measure (``"read"`` for a dry run).
    """
    stream = sys.stderr if stream is None else stream
    if not enabled or not _is_terminal(stream) or os.environ.get("TERM") == "dumb":
        return NullProgress()
    return LiveProgress(console=Console(file=stream, force_terminal=True), basis=basis)
