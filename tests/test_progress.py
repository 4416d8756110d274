from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from bulkpush._progress import LiveProgress, NullProgress, make_progress


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_null_progress_when_not_a_terminal_or_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TERM", raising=False)
    assert isinstance(make_progress(enabled=True, stream=io.StringIO()), NullProgress)
    assert isinstance(make_progress(enabled=False, stream=TtyStringIO()), NullProgress)
    closed = io.StringIO()
    closed.close()  # isatty() raises ValueError
    assert isinstance(make_progress(enabled=True, stream=closed), NullProgress)
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(make_progress(enabled=True, stream=TtyStringIO()), NullProgress)


def test_live_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TERM", raising=False)
    stream = TtyStringIO()
    progress = make_progress(enabled=True, stream=stream)
    assert isinstance(progress, LiveProgress)
    assert progress.console.file is stream


def test_null_progress_does_nothing() -> None:
    with NullProgress() as p:
        p.start(total_bytes=10)
        p.advance(records=1, source_bytes=2, accepted=1, rejected=0, bytes_sent=3)
    p.close()


def make_live(clock: FakeClock) -> tuple[LiveProgress, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system=None)
    return LiveProgress(console=console, auto_refresh=False, clock=clock), out


def test_renders_products_mb_rates_and_eta() -> None:
    clock = FakeClock()
    progress, out = make_live(clock)
    progress.start(total_bytes=500_000_000)
    progress.advance(records=1_000_000, source_bytes=200_000_000)
    progress.advance(accepted=999_000, rejected=567, bytes_sent=100_000_000)
    clock.now += 10
    progress.refresh()
    text = plain(out.getvalue())
    progress.close()
    assert "1,000,000 read" in text
    assert "999,000 accepted" in text
    assert "567 rejected" in text
    assert "199.9/500.0 MB done  200.0 MB read" in text  # 999,567 of 1,000,000 answered
    assert "40%" in text
    assert "100,000 products/s" in text
    assert "10.0 MB/s sent" in text
    assert "ETA 0:00:15" in text  # 300 MB left at 20 MB/s


def test_rates_follow_the_recent_window() -> None:
    clock = FakeClock()
    progress, out = make_live(clock)
    progress.start(total_bytes=None)
    for _ in range(10):  # 1,000 products/s for 10 s
        clock.now += 1
        progress.advance(records=1000, source_bytes=1_000_000)
        progress.refresh()
    for _ in range(10):  # then 100 products/s
        clock.now += 1
        progress.advance(records=100, source_bytes=100_000)
        progress.refresh()
    last = plain(out.getvalue()).rsplit("MB read", 1)[1]
    progress.close()
    assert "100 products/s" in last
    assert "11.0 MB read" in plain(out.getvalue())
    assert "ETA" not in plain(out.getvalue())  # no total size, no ETA


def test_advance_is_cheap_and_never_renders() -> None:
    clock = FakeClock()
    progress, out = make_live(clock)
    progress.start(total_bytes=10**9)
    renders_after_start = progress.renders
    written = len(out.getvalue())
    for _ in range(100_000):
        progress.advance(records=1, source_bytes=100)
    assert progress.renders == renders_after_start
    assert len(out.getvalue()) == written
    assert progress.records == 100_000 and progress.source_bytes == 10_000_000
    progress.refresh()
    assert progress.renders == renders_after_start + 1
    progress.close()


def test_auto_refresh_redraws_from_its_own_thread_a_few_times_per_second() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140)
    progress = LiveProgress(console=console, refresh_per_second=4)
    with progress:
        progress.start(total_bytes=None)
        for _ in range(200_000):
            progress.advance(records=1)
    # However many advance() calls, renders are bounded by time, not by calls.
    assert 1 <= progress.renders < 50
    assert progress.records == 200_000


def test_close_is_idempotent_and_clears_the_display() -> None:
    clock = FakeClock()
    progress, out = make_live(clock)
    progress.close()
    progress.start(total_bytes=100)
    progress.start(total_bytes=100)
    assert "live" in repr(progress)
    progress.close()
    progress.close()
    assert "idle" in repr(progress)
    assert out.getvalue().endswith("\x1b[2K")  # transient: the last frame is erased
