"""The progress bar and ETA follow acknowledged products, not products read (fake clock)."""

from __future__ import annotations

import io
import re

from rich.console import Console

from bulkpush._progress import Basis, LiveProgress, acknowledged_bytes


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def render(progress: LiveProgress, out: io.StringIO) -> str:
    progress.refresh()
    frames = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    return frames.rsplit("products ", 2)[-2]  # the last frame's bar line


def live(clock: FakeClock, basis: Basis = "acknowledged") -> tuple[LiveProgress, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    return LiveProgress(console=console, auto_refresh=False, clock=clock, basis=basis), out


def test_acknowledged_bytes_is_the_average_product_size_times_the_answered() -> None:
    assert acknowledged_bytes(0, 0, 0) == 0
    assert acknowledged_bytes(100, 10_000, 0) == 0
    assert acknowledged_bytes(100, 10_000, 25) == 2_500
    assert acknowledged_bytes(100, 10_000, 100) == 10_000
    assert acknowledged_bytes(100, 10_000, 130) == 10_000  # never more than was read


def test_reading_far_ahead_of_the_answers_does_not_make_the_eta_short() -> None:
    # The run: 135,310 products of 1,000 bytes; 61,000 read (45 %) in 10 s,
    # 23,500 answered. Read bytes said "45 %, ETA 0:00:12"; the answers say 17 %.
    clock = FakeClock()
    progress, out = live(clock)
    progress.start(total_bytes=135_310_000)
    progress.advance(records=61_000, source_bytes=61_000_000)
    progress.advance(accepted=23_000, rejected=400, bytes_sent=5_000_000)
    progress.advance(rejected=100)  # client rejections count as done too
    clock.now += 10
    line = render(progress, out)
    progress.close()
    assert "17%" in line
    assert "23.5/135.3 MB done  61.0 MB read" in line
    # 111.81 MB left at 2.35 MB/s answered: 47.6 s.
    assert "ETA 0:00:47" in line


def test_the_eta_follows_the_recent_answer_rate() -> None:
    clock = FakeClock()
    progress, out = live(clock)
    progress.start(total_bytes=100_000_000)
    progress.advance(records=50_000, source_bytes=50_000_000)  # read at once
    for _ in range(10):  # then 1,000 answered per second (1 MB/s)
        clock.now += 1
        progress.advance(accepted=1_000)
        line = render(progress, out)
    progress.close()
    assert "10%" in line and "10.0/100.0 MB done" in line
    assert "ETA 0:01:30" in line  # 90 MB at 1 MB/s


def test_nothing_answered_yet_has_no_eta() -> None:
    clock = FakeClock()
    progress, out = live(clock)
    progress.start(total_bytes=10_000_000)
    progress.advance(records=10_000, source_bytes=10_000_000)
    clock.now += 5
    line = render(progress, out)
    progress.close()
    assert "0%" in line and "ETA -:--:--" in line


def test_a_dry_run_measures_what_was_read() -> None:
    clock = FakeClock()
    progress, out = live(clock, basis="read")
    progress.start(total_bytes=100_000_000)
    progress.advance(records=40_000, source_bytes=40_000_000)
    clock.now += 10
    line = render(progress, out)
    progress.close()
    assert "40%" in line and "40.0/100.0 MB read" in line and "ETA 0:00:15" in line
