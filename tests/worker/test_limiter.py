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


async def test_a_pause_the_store_cannot_record_raises() -> None:
    pacer = SharedPacer(10.0, store=FailingStore(), key="k")
    with pytest.raises(QueueError):
        await pacer.pause_until(time.monotonic() + 1.0)


async def test_a_pause_has_landed_when_pause_until_returns() -> None:
    store = RecordingStore()
    pacer = SharedPacer(10.0, store=store, key="k")
    await pacer.pause_until(time.monotonic() + 1.0)
    assert len(store.paused) == 1 and 0.9 < store.paused[0] <= 1.0
    await pacer.pause_until(time.monotonic() - 1.0)  # in the past: nothing to record
    assert len(store.paused) == 1
