"""The uplink as a run sees it: how fast request bodies go out, and how many may be in flight.

The Stream API ends a request it takes more than 10 s to process with a
server error (``limits.StreamApiLimits.server_request_timeout_s``). The
reference does not say whether the body's transfer counts, so bulkpush keeps
each whole request, body and answer, inside a target time
(``PushOptions.request_time_s``, 5 s by default: half the server's limit).

Every request body of a run shares one uplink, whatever its stream.
:class:`Link` is that uplink, shared by every push of an
:class:`~bulkpush._engine.Engine`:

- **It measures** the throughput the run actually gets, by Little's law:
  a request that took ``W`` seconds while ``L`` bytes of bodies were in
  flight on average (its own included) saw the link move ``L / W`` bytes per
  second. Shared fairly, every request in flight takes ``L / throughput``;
  the estimate is the ratio of the sums of ``L`` and ``W`` over the last few
  delivered requests (answered 2xx), so it follows a link that changes
  within a request or two, and it counts an answer's latency as link time
  (a little low, never high, on a fast link). The report's figure is the
  plain one: body bytes delivered per second while anything was in flight.
- **It admits** a request's body only while the bytes in flight stay within
  what that throughput moves in the target time (``throughput x target``):
  with the link shared fairly, each request then takes about the target
  time. Before anything is measured, ``initial_bytes`` (4 MB: 4 s of a
  1 MB/s uplink) may be in flight. A body larger than the budget goes alone
  (nothing else in flight), so no request waits for ever. This is Little's
  law turned into a limit; Vector's adaptive request concurrency reacts to
  round-trip times the same way, but counts requests, not bytes, and here
  bodies range from 1 KB to 200 MB.
- **It says** how long a body would take alone (:meth:`Link.seconds_for`),
  so the sender cuts a request that would not end in time into smaller ones
  (``bulkpush._sender``).
- **It learns from a timeout.** A request the server ended for taking too
  long carried less than its body in the time it had: the link is at most
  that fast. That ceiling replaces what was measured before (the link it
  described is gone: it slowed down), and holds until a request begun after
  it is delivered. Without it a link that slowed down to where nothing ends
  in time would never be measured again.

The estimate is conservative by construction, so the client may use a bit
less than the link; it never plans on more than was seen. Why not a library:
aiohttp reports no upload progress per connection, and the limiters at hand
(aiolimiter, anyio's capacity limiter) pace events or count slots, not bytes
against a measured rate.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Link", "LinkReading"]

#: Bytes in flight before the link's throughput is known (4 s of a 1 MB/s uplink).
INITIAL_BYTES = 4_000_000
#: Delivered requests the estimate looks at: enough to smooth one slow answer,
#: few enough to follow a link that slows down.
RECENT = 4
# A request shorter than this in busy time is too short to time (a loopback
# request of a few KB): its bytes count, its time is what it is.
_MIN_SPAN_S = 1e-4


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request on the link, from :meth:`Link.begin` to :meth:`Link.end`."""

    nbytes: int
    busy: float  # the busy clock when it left
    area: float  # the byte-seconds in flight so far, when it left


@dataclass(slots=True)
class LinkReading:
    """The link's totals at one moment; two readings give the throughput between them."""

    delivered: int
    busy_s: float

    def mb_per_s_since(self, earlier: LinkReading) -> float:
        """MB (10**6 bytes) of bodies delivered per busy second since ``earlier``; 0.0 if none."""
        busy = self.busy_s - earlier.busy_s
        delivered = self.delivered - earlier.delivered
        if busy <= _MIN_SPAN_S or delivered <= 0:
            return 0.0
        return round(delivered / busy / 1e6, 3)


class Link:
    """One uplink shared by every upload of a run (see the module docstring).

    ``acquire``/``release`` bracket a body's bytes in flight (every attempt);
    ``begin``/``end`` time one attempt. ``server_timeout_s`` is how long the
    API lets a request take (it decides which failures count as timed out).
    """

    def __init__(
        self,
        *,
        initial_bytes: int = INITIAL_BYTES,
        recent: int = RECENT,
        server_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial_bytes = initial_bytes
        self.server_timeout_s = server_timeout_s
        self._clock = clock
        self.used = 0  # bytes admitted and not yet released
        self.delivered = 0  # bytes of bodies answered 2xx, ever
        self._active = 0  # attempts in flight (between begin and end)
        self._sending = 0  # their bytes
        self._busy = 0.0  # busy seconds so far, up to _mark
        self._area = 0.0  # byte-seconds in flight so far, up to _mark
        self._mark = clock()
        # (average bytes in flight, seconds) of the last delivered requests
        self._recent: collections.deque[tuple[float, float]] = collections.deque(maxlen=recent)
        self._ceiling: float | None = None  # bytes/s at most, learnt from a timeout
        self._ceiling_at = 0.0  # the busy clock when it was learnt
        self._waiters: collections.deque[tuple[int, float, asyncio.Future[None]]] = (
            collections.deque()
        )

    def __repr__(self) -> str:
        rate = self.throughput()
        shown = "unknown" if rate is None else f"{rate / 1e6:.2f} MB/s"
        return f"Link({shown}, in flight {self.used} bytes)"

    # -- the busy clock ------------------------------------------------------

    def _now_busy(self) -> float:
        now = self._clock()
        if self._active:
            self._busy += now - self._mark
            self._area += self._sending * (now - self._mark)
        self._mark = now
        return self._busy

    def reading(self) -> LinkReading:
        """The totals now (for a report's throughput between two readings)."""
        return LinkReading(self.delivered, self._now_busy())

    # -- measuring -----------------------------------------------------------

    def begin(self, nbytes: int) -> Attempt:
        """A body of ``nbytes`` leaves now; pass what this returns to :meth:`end`."""
        busy = self._now_busy()
        self._active += 1
        self._sending += nbytes
        return Attempt(nbytes, busy, self._area)

    def end(self, attempt: Attempt, *, delivered: bool, timed_out: bool = False) -> None:
        """``attempt`` got its answer (``delivered``: a 2xx) or failed (``timed_out``:
        the server ended it for taking too long)."""
        now = self._now_busy()
        self._active -= 1
        self._sending -= attempt.nbytes
        took = max(now - attempt.busy, _MIN_SPAN_S)
        if delivered and attempt.nbytes > 0:
            self.delivered += attempt.nbytes
            self._recent.append(((self._area - attempt.area) / took, took))
            if self._ceiling is not None and attempt.busy >= self._ceiling_at:
                self._ceiling = None  # measured again since the timeout
        elif timed_out and attempt.nbytes > 0:
            # It did not carry its body in the time it had: the link is at most
            # that fast, and what was measured before describes a faster one.
            ceiling = attempt.nbytes / took
            if self._ceiling is None or ceiling < self._ceiling:
                self._ceiling = ceiling
            self._ceiling_at = now
            self._recent.clear()
        self._wake()

    def throughput(self) -> float | None:
        """Bytes per second the link moves lately; None before anything was measured
        (see the module docstring)."""
        measured = None
        if self._recent:
            in_flight = sum(x for x, _ in self._recent)
            seconds = sum(t for _, t in self._recent)
            measured = in_flight / seconds
        if self._ceiling is None:
            return measured
        return self._ceiling if measured is None else min(measured, self._ceiling)

    def seconds_for(self, nbytes: int) -> float | None:
        """How long ``nbytes`` of body would take alone at the measured throughput."""
        rate = self.throughput()
        return None if rate is None else nbytes / rate

    def budget(self, target_s: float) -> float:
        """Bytes that may be in flight for requests to take about ``target_s``."""
        rate = self.throughput()
        return self.initial_bytes if rate is None else rate * target_s

    # -- admitting -----------------------------------------------------------

    def _fits(self, nbytes: int, target_s: float) -> bool:
        return self.used == 0 or self.used + nbytes <= self.budget(target_s)

    async def acquire(self, nbytes: int, target_s: float) -> None:
        """Wait until ``nbytes`` more may be in flight (first come, first served)."""
        if not self._waiters and self._fits(nbytes, target_s):
            self.used += nbytes
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((nbytes, target_s, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(nbytes)  # granted just as we were cancelled: give it back
            raise

    def release(self, nbytes: int) -> None:
        """``nbytes`` are no longer in flight (synchronous: safe in a ``finally``)."""
        self.used -= nbytes
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            nbytes, target_s, fut = self._waiters[0]
            if fut.done():
                self._waiters.popleft()
                continue
            if not self._fits(nbytes, target_s):
                break
            self._waiters.popleft()
            self.used += nbytes
            fut.set_result(None)
