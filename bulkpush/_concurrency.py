"""Concurrency: how many requests are in flight, and how many bytes they hold.

- :class:`AdaptiveLimit` keeps enough requests in flight to reach the rate
  (rate × latency), growing additively while it is the bottleneck and halving
  on back-pressure (429/423/5xx/timeouts).
- :class:`ByteBudget` caps the bytes of request bodies held in flight.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AdaptiveLimit", "ByteBudget", "ConcurrencyOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcurrencyOptions:
    """Requests in flight: found adaptively between ``initial`` and ``maximum``,
    capped by ``inflight_bytes`` held by the requests in flight: their bodies
    as sent, and the records a chunk of records keeps (a span chunk keeps
    only its compressed body). With a rate limit the start is at least what
    keeps the rate while answers take 0.5 s (``ceil(rate * 0.5)``, at most
    ``maximum``).

    96 MiB: 30 requests/s of 10,000 products of 1 KB (about 2.5 MB each
    compressed) with answers taking up to a second, or about 8 such requests
    of records at once; memory stays far from it at the API's limits."""

    initial: int = 4
    maximum: int = 64
    inflight_bytes: int = 96 * 1024 * 1024


class AdaptiveLimit:
    """An AIMD concurrency limit.

    ``acquire``/``release`` bracket a request. After a success, when every
    slot was busy (the limit, not the rate, held requests back), the limit
    grows by one; on back-pressure it halves (never below 1, at most once per
    ``cooldown_s`` so one burst of failures does not collapse it to 1).
    ``parked`` counts slots held by requests waiting for their rate slot
    (the caller keeps it): while any is, the rate holds requests back, not
    the limit, so the limit does not grow.
    """

    # With a rate to keep, start with enough requests in flight to keep it while
    # answers take this long (the API's answers take 100s of ms; AIMD finds more
    # if needed): ramping up from ``initial`` costs seconds of a short push.
    START_LATENCY_S = 0.5

    def __init__(
        self,
        options: ConcurrencyOptions,
        *,
        rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        start = max(1, options.initial)
        if rate is not None and rate <= 1000:
            start = max(start, min(options.maximum, math.ceil(rate * self.START_LATENCY_S)))
        self.limit = start
        self.maximum = max(self.limit, options.maximum)
        self.in_flight = 0
        self.waiting = 0
        self.parked = 0
        self._cond = asyncio.Condition()
        self._clock = clock
        self._last_decrease = -1e9
        self.cooldown_s = 1.0

    def __repr__(self) -> str:
        return f"AdaptiveLimit(limit={self.limit}, in_flight={self.in_flight})"

    async def acquire(self) -> None:
        async with self._cond:
            self.waiting += 1
            try:
                await self._cond.wait_for(lambda: self.in_flight < self.limit)
            finally:
                self.waiting -= 1
            self.in_flight += 1

    async def release(self, *, ok: bool, backpressure: bool = False) -> None:
        async with self._cond:
            saturated = self.in_flight >= self.limit and self.waiting > 0 and not self.parked
            self.in_flight -= 1
            if backpressure:
                now = self._clock()
                if now - self._last_decrease >= self.cooldown_s:
                    self.limit = max(1, self.limit // 2)
                    self._last_decrease = now
            elif ok and saturated and self.limit < self.maximum:
                self.limit += 1
            self._cond.notify_all()


class ByteBudget:
    """At most ``capacity`` bytes of request bodies in flight, granted in FIFO order.

    A single body larger than the capacity is let through alone, so a large
    request can never deadlock the pipeline. ``release`` is synchronous so it
    can run in a ``finally`` of a cancelled task.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def __repr__(self) -> str:
        return f"ByteBudget(used={self.used}, capacity={self.capacity})"

    def _fits(self, n: int) -> bool:
        return self.used == 0 or self.used + n <= self.capacity

    async def acquire(self, n: int) -> None:
        if not self._waiters and self._fits(n):
            self.used += n
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((n, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(n)  # granted just as we were cancelled: give it back
            raise

    def release(self, n: int) -> None:
        self.used -= n
        while self._waiters:
            want, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if not self._fits(want):
                break
            self._waiters.popleft()
            self.used += want
            fut.set_result(None)
