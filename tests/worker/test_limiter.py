"""The shared pacer's calls to its store are awaited: a failure reaches the caller."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from bulkpush import QueueError, Window
from bulkpush.worker.limiter import SharedPacer


class FailingStore:
    """A store that takes slots but cannot record a pause (an outage)."""

    def __init__(self) -> None:
        self.taken = 0

    def take(self, key: str, interval: float, windows: Sequence[Window] = ()) -> float:
        self.taken += 1
        return 0.0

    def pause(self, key: str, wait: float) -> None:
        raise QueueError("the shared limiter failed: ConnectionError", retriable=True)


class RecordingStore(FailingStore):
    def __init__(self) -> None:
        super().__init__()
        self.paused: list[float] = []

    def pause(self, key: str, wait: float) -> None:
        self.paused.append(wait)


async def test_a_pause_the_store_cannot_record_raises_after_the_outage_budget() -> None:
    pacer = SharedPacer(10.0, store=FailingStore(), key="k", outage_s=0.3)
    started = time.monotonic()
    with pytest.raises(QueueError):
        await pacer.pause_until(time.monotonic() + 1.0)
    assert 0.3 <= time.monotonic() - started < 2.0  # retried through the budget, then raised
    assert pacer.outages == 1


async def test_a_pause_has_landed_when_pause_until_returns() -> None:
    store = RecordingStore()
    pacer = SharedPacer(10.0, store=store, key="k")
    await pacer.pause_until(time.monotonic() + 1.0)
    assert len(store.paused) == 1 and 0.9 < store.paused[0] <= 1.0
    await pacer.pause_until(time.monotonic() - 1.0)  # in the past: nothing to record
    assert len(store.paused) == 1


class FlakyStore(RecordingStore):
    """A store out of reach for its first ``down`` calls (a restart), then back."""

    def __init__(self, down: int) -> None:
        super().__init__()
        self.down = down

    def take(self, key: str, interval: float, windows: Sequence[Window] = ()) -> float:
        if self.down:
            self.down -= 1
            raise QueueError("the shared limiter failed: ConnectionError", retriable=True)
        return super().take(key, interval, windows)


async def test_a_store_outage_is_waited_out() -> None:
    store = FlakyStore(down=3)
    pacer = SharedPacer(10.0, store=store, key="k", outage_s=5.0)
    await pacer.acquire()
    assert store.taken == 1 and store.down == 0 and pacer.outages == 1


async def test_a_store_error_that_is_not_an_outage_is_raised_at_once() -> None:
    class Broken(RecordingStore):
        def take(self, key: str, interval: float, windows: Sequence[Window] = ()) -> float:
            raise QueueError("the shared limiter failed: ResponseError: bad script")

    pacer = SharedPacer(10.0, store=Broken(), key="k", outage_s=5.0)
    started = time.monotonic()
    with pytest.raises(QueueError):
        await pacer.acquire()
    assert time.monotonic() - started < 1.0 and pacer.outages == 0
