"""The fixed-window limiter, driven by a fake clock."""

from __future__ import annotations

import pytest

from bulkpush.emulator.ratelimit import FixedWindowLimiter


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_thirty_pass_and_the_thirty_first_is_refused_within_one_second() -> None:
    clock = FakeClock(1_651_174_222.0)
    limiter = FixedWindowLimiter(30, clock=clock)
    decisions = [limiter.hit("s1") for _ in range(30)]
    assert all(d.allowed for d in decisions)
    assert [d.observed for d in decisions] == list(range(1, 31))
    assert [d.remaining for d in decisions] == list(range(29, -1, -1))
    clock.now += 0.999
    refused = limiter.hit("s1")
    assert not refused.allowed
    assert (refused.limit, refused.observed, refused.remaining) == (30, 30, 0)
    assert refused.reset == 1_651_174_223


def test_the_next_window_starts_afresh() -> None:
    clock = FakeClock(100.5)
    limiter = FixedWindowLimiter(5, clock=clock)
    for _ in range(5):
        limiter.hit("k")
    assert not limiter.hit("k").allowed
    clock.now = 101.0
    d = limiter.hit("k")
    assert d.allowed and d.observed == 1 and d.remaining == 4 and d.reset == 102


def test_keys_are_independent() -> None:
    limiter = FixedWindowLimiter(1, clock=FakeClock(5.0))
    assert limiter.hit(("ip", "products", "1")).allowed
    assert not limiter.hit(("ip", "products", "1")).allowed
    assert limiter.hit(("ip", "products", "2")).allowed


def test_headers_match_the_reference_example() -> None:
    limiter = FixedWindowLimiter(5, clock=FakeClock(1_651_174_222.3))
    assert limiter.hit("/streams").headers() == {
        "ratelimit-limit": "5",
        "ratelimit-observed": "1",
        "ratelimit-remaining": "4",
        "ratelimit-reset": "1651174223",
    }


def test_rates_below_one_use_longer_windows() -> None:
    clock = FakeClock(0.0)
    limiter = FixedWindowLimiter(0.5, clock=clock)
    assert limiter.hit("k").allowed
    clock.now = 1.9
    assert not limiter.hit("k").allowed
    clock.now = 2.0
    assert limiter.hit("k").allowed


def test_refused_requests_count_nothing() -> None:
    limiter = FixedWindowLimiter(2, clock=FakeClock(0.0))
    assert [limiter.hit("k").observed for _ in range(2)] == [1, 2]
    refused = [limiter.hit("k") for _ in range(3)]
    assert [(d.allowed, d.observed, d.remaining) for d in refused] == [(False, 2, 0)] * 3
    assert repr(limiter) == "FixedWindowLimiter(limit=2, window_s=1.0, keys=1)"


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        FixedWindowLimiter(0)
