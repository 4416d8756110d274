"""Fixed-window rate limiting, as the Stream API documents it ("Rate limiting").

The reference says ``ratelimit-reset`` is "the time at which the current rate
limit window resets in Unix time", so windows are fixed and aligned to the
wall clock: with 30 requests per second, requests 1..30 whose clock reading
falls in one whole second pass and the 31st is refused; the next second starts
afresh. No I/O here; the clock is injected so tests can drive it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

__all__ = ["Decision", "FixedWindowLimiter"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one request, with the values of the ``ratelimit-*`` headers.

    Attributes:
        allowed: whether the request may proceed.
        limit: requests allowed per window (``ratelimit-limit``).
        observed: requests counted in the current window, this one included when
            allowed (``ratelimit-observed``); refused requests are not counted,
            as the reference's 429 example shows ``observed: 5`` with a limit of 5.
        remaining: requests still allowed in this window (``ratelimit-remaining``).
        reset: Unix time (whole seconds, rounded up) at which the window ends
            (``ratelimit-reset``).
    """

    allowed: bool
    limit: int
    observed: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        """The Stream API's ``ratelimit-*`` response headers for this decision."""
        return {
            "ratelimit-limit": str(self.limit),
            "ratelimit-observed": str(self.observed),
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": str(self.reset),
        }


class FixedWindowLimiter:
    """Counts requests per key in fixed windows aligned to the clock.

    ``rate`` is requests per second. A rate of 1 or more gives one-second
    windows of ``floor(rate)`` requests; a rate below 1 gives windows of
    ``1 / rate`` seconds holding one request. Only the current window of each
    key is kept, so memory grows with the number of keys, not of requests.
    """

    __slots__ = ("_clock", "_counts", "limit", "window_s")

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.time) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        if rate >= 1:
            self.limit = int(rate)
            self.window_s = 1.0
        else:
            self.limit = 1
            self.window_s = 1.0 / rate
        self._clock = clock
        self._counts: dict[Hashable, tuple[int, int]] = {}  # key -> (window index, count)

    def hit(self, key: Hashable) -> Decision:
        """Count one request for ``key`` if the window has room; say what happened."""
        now = self._clock()
        window = math.floor(now / self.window_s)
        reset = math.ceil((window + 1) * self.window_s)
        seen_window, count = self._counts.get(key, (window, 0))
        if seen_window != window:
            count = 0
        if count >= self.limit:
            return Decision(False, self.limit, count, 0, reset)
        count += 1
        self._counts[key] = (window, count)
        return Decision(True, self.limit, count, self.limit - count, reset)

    def __repr__(self) -> str:
        return (
            f"FixedWindowLimiter(limit={self.limit}, window_s={self.window_s}, "
            f"keys={len(self._counts)})"
        )
