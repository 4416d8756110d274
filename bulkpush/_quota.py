"""Quotas: the request windows an API counts, and the pacer that keeps a run inside them.

A :class:`Quota` is a list of :class:`Window` s (at most ``limit`` requests in
any ``period_s`` seconds) under a key naming what the API counts requests by:
a stream's uploads (Stream API: 30 per second), an API key (Product-Live: 5
per second, 50 per minute, 40,000 per month), a site (Platform API: one
process per 5 minutes). Every push whose requests share a key shares one
:class:`Pacer`: in one process through the client's pacers, across processes
and machines through the worker's stores (:mod:`bulkpush.worker.limiter`).

The pacer spaces requests evenly at the shortest window's rate (times a
safety margin: a bucket that lets 30 go at once breaks the API's per-second
window), and keeps a log of departures per window so that no window ever
receives more than its limit, also after a late wake-up of the event loop
and in long windows that even spacing alone would not respect (50 per minute
at 5 per second).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bulkpush.errors import ConfigError, QuotaExhausted

__all__ = ["DEFAULT_SAFETY", "Pacer", "Quota", "Window"]

# How much slower than a published rate the pacer runs by default. An API that
# counts requests in fixed one-second windows sees a 31st in one window when
# jitter (network, a busy machine) bunches requests spaced exactly 1/30 s: a
# window receives at most 30 while jitter stays under 30 x interval - 1 s,
# 26 ms at 97.5 %. The pacer's own departure log (see Pacer.acquire) stops
# bursts after a busy event loop; together they gave zero 429s on 4 streams
# from one process (benchmarks/RESULTS.md).
DEFAULT_SAFETY = 0.975


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` requests in any ``period_s`` seconds."""

    limit: int
    period_s: float

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ConfigError(f"a quota window's limit must be at least 1, got {self.limit}")
        if not (math.isfinite(self.period_s) and self.period_s > 0):
            raise ConfigError(f"a quota window's period must be positive, got {self.period_s}")

    @property
    def rate(self) -> float:
        """Requests per second if spread evenly over the window."""
        return self.limit / self.period_s


@dataclass(frozen=True, slots=True)
class Quota:
    """The windows of one quota key, e.g. ``Quota("stream:124773:products", (Window(30, 1),))``.

    ``rate`` is the even spacing the pacer keeps: the shortest window's rate
    times ``safety``; the longer windows are kept by counting.
    """

    key: str
    windows: tuple[Window, ...]
    safety: float = DEFAULT_SAFETY

    def __post_init__(self) -> None:
        if not self.windows:
            raise ConfigError(f"quota {self.key!r} has no window")
        if not 0 < self.safety <= 1:
            raise ConfigError(f"a quota's safety must lie in (0, 1], got {self.safety}")

    @property
    def published_rate(self) -> float:
        """The shortest window's rate: what the API allows when spread evenly."""
        return min(self.windows, key=lambda w: w.period_s).rate

    @property
    def rate(self) -> float:
        """The rate the pacer keeps by default: the published rate times ``safety``."""
        return self.published_rate * self.safety


class Pacer:
    """Even spacing of requests at ``rate`` per second within ``windows``, pausable.

    A GCRA-style scheduler: each :meth:`acquire` takes the next slot, ``1/rate``
    after the previous one, and sleeps until it; then, for each window, it
    waits until fewer than ``limit`` requests left in the last ``period_s``
    (plus WINDOW_MARGIN_S). :meth:`pause_until` pushes the next slot to a
    monotonic time the API named (``ratelimit-reset``, ``Retry-After``).
    ``rate`` None means no spacing (windows still count). A wait longer than
    ``max_wait_s`` raises :class:`QuotaExhausted` instead of sleeping (a
    monthly quota used up is a stop, not a sleep).

    Written here rather than taken from aiolimiter: its leaky bucket lets a
    full bucket go at once (twice a window's limit across a window's edge)
    and cannot be paused by the API's headers.
    """

    # After a 429 despite the pacing (jitter bunched two requests into one of
    # the API's windows) the rate drops by SLOW_DOWN, to at most FLOOR of the
    # rate asked for; each answered request wins back RECOVER of it, about 1 %
    # per 1,000 requests, so a single 429 costs little and a noisy network
    # settles where its jitter fits.
    SLOW_DOWN = 0.99
    FLOOR = 0.90
    RECOVER = 0.00001
    # The jitter the API's clock may add to a window's edge.
    WINDOW_MARGIN_S = 0.02

    def __init__(
        self,
        rate: float | None,
        *,
        windows: Sequence[Window] = (),
        max_wait_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise ConfigError(f"rate must be a positive number, got {rate}")
        self.rate = rate
        self.target_rate = rate
        self.windows = tuple(windows)
        self.max_wait_s = max_wait_s
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        # When the last ``limit`` requests of each window were let go.
        self._logs = [collections.deque[float](maxlen=w.limit) for w in self.windows]
        self._clock = clock
        self.acquired = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate}, acquired={self.acquired})"

    @property
    def shortest_period_s(self) -> float:
        """The shortest window's period (1 s without windows): the longest a header pause lasts."""
        return min((w.period_s for w in self.windows), default=1.0)

    def reserve(self) -> float:
        """Take the next slot; return how long to wait for it (seconds)."""
        now = self._clock()
        slot = max(now, self._next)
        self._next = slot + self._interval
        self.acquired += 1
        return slot - now

    def _check_wait(self, wait: float) -> None:
        if self.max_wait_s is not None and wait > self.max_wait_s:
            raise QuotaExhausted(
                f"the API's request quota is used up for the next {wait:,.0f} s "
                f"(longer than the {self.max_wait_s:,.0f} s a request may wait)",
                wait_s=wait,
            )

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            self._check_wait(delay)
            await asyncio.sleep(delay)
        if not self._logs:
            return
        # After a late wake-up (an event loop busy for some ms) every request
        # whose slot passed meanwhile goes out at once: measured, 1 % of uploads
        # left 0.3 ms after another, and the API's fixed one-second windows
        # caught a 31st. So no window gets more than its limit in any span of
        # its period plus WINDOW_MARGIN_S; catching up stays as fast as that allows.
        while True:
            now = self._clock()
            wait = 0.0
            for window, log in zip(self.windows, self._logs, strict=True):
                if len(log) == log.maxlen:
                    wait = max(wait, log[0] + window.period_s + self.WINDOW_MARGIN_S - now)
            if wait <= 0:
                break
            self._check_wait(wait)
            await asyncio.sleep(wait)
        now = self._clock()
        for log in self._logs:
            log.append(now)

    async def pause_until(self, when: float) -> None:
        """No slot before monotonic time ``when``."""
        self._next = max(self._next, when)

    def _set_rate(self, rate: float) -> None:
        self.rate = rate
        self._interval = 1.0 / rate

    def throttled(self) -> None:
        """A request was answered 429 although paced: run a little slower."""
        if self.rate is not None and self.target_rate is not None:
            self._set_rate(max(self.rate * self.SLOW_DOWN, self.target_rate * self.FLOOR))

    def answered(self) -> None:
        """A request was answered (not 429): win back a little of any slow-down."""
        rate, target = self.rate, self.target_rate
        if rate is not None and target is not None and rate < target:
            self._set_rate(min(target, rate + target * self.RECOVER))
