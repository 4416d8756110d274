"""Fault injection: which of a stream's requests fail, and how.

A :class:`FaultState` is a :class:`~bulkpush.emulator.config.Faults` plus the
moment it was set (time windows such as a 429 storm count from then). Draws
come from the stream's own ``random.Random``, seeded from the emulator's seed
and the stream id, and every ``/products`` request draws the same three
numbers whatever the faults are, so a given seed and request order always give
the same faults.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from bulkpush.emulator.config import Faults

__all__ = ["FaultDraw", "FaultState", "stream_rng"]


def stream_rng(seed: int, stream_id: str) -> random.Random:
    """The fault generator of one stream: the same seed and id, the same draws."""
    return random.Random(f"{seed}:{stream_id}")


@dataclass(frozen=True, slots=True)
class FaultDraw:
    """What happens to one ``/products`` request."""

    drop: bool = False
    error: bool = False
    error_after_store: bool = False


class FaultState:
    """Faults in force, and since when (``time.monotonic`` seconds)."""

    __slots__ = ("faults", "since")

    def __init__(self, faults: Faults, *, since: float | None = None) -> None:
        self.faults = faults
        self.since = time.monotonic() if since is None else since

    def storm_active(self, now: float | None = None) -> bool:
        """Whether every request of the stream is answered 429 right now."""
        storm = self.faults.throttle_storm_s
        return storm > 0 and (time.monotonic() if now is None else now) - self.since < storm

    def lock_active(self, now: float | None = None) -> bool:
        """Whether the stream's ``/products`` writes are answered 423 right now."""
        lock = self.faults.lock_s
        return lock > 0 and (time.monotonic() if now is None else now) - self.since < lock

    def draw(self, rng: random.Random) -> FaultDraw:
        """Draw the fate of one ``/products`` request (always three draws)."""
        drop_u, error_u, after_u = rng.random(), rng.random(), rng.random()
        f = self.faults
        if drop_u < f.drop_rate:
            return FaultDraw(drop=True)
        if error_u < f.error_rate:
            return FaultDraw(error=True)
        if after_u < f.error_after_store_rate:
            return FaultDraw(error_after_store=True)
        return _NO_FAULT

    def __repr__(self) -> str:
        return f"FaultState({self.faults!r}, since={self.since:.3f})"


_NO_FAULT = FaultDraw()
