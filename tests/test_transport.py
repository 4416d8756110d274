"""The HTTP layer and the retry executor: pacing, AIMD, byte budget, headers, errors.

The transport is exercised against a scripted aiohttp server on loopback
(aioresponses does not support aiohttp 3.14's ClientResponse); every
behaviour test of the push runs against the emulator.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bulkpush._concurrency import AdaptiveLimit, ByteBudget, ConcurrencyOptions
from bulkpush._http import HttpTransport, Request, Response, Secret, TransportOptions
from bulkpush._quota import Pacer, Window
from bulkpush._retry import (
    Executor,
    RetryPolicy,
    backoff_delay,
    error_for_status,
    rate_limit_wait,
)
from bulkpush.errors import (
    AuthError,
    Conflict,
    RateLimited,
    RequestTimeout,
    RetriesExhausted,
    ServerError,
    StreamDisabled,
    TransportError,
)

TOKEN = "tok-SECRET-123"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pacer_spaces_evenly_and_never_bursts() -> None:
    clock = FakeClock()
    pacer = Pacer(30.0, clock=clock)
    waits = [pacer.reserve() for _ in range(31)]
    # All asked at the same instant: slot k is k/30 s later, no two share a slot.
    assert waits == pytest.approx([k / 30 for k in range(31)])
    # Within any one second at most 30 slots start.
    starts = [clock.now + w for w in waits]
    assert sum(1 for s in starts if clock.now <= s < clock.now + 1.0 - 1e-9) == 30


async def test_pacer_pause_until_pushes_the_next_slot() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock)
    assert pacer.reserve() == 0.0
    await pacer.pause_until(clock.now + 2.5)
    assert pacer.reserve() == pytest.approx(2.5)
    assert pacer.reserve() == pytest.approx(2.6)
    # A pause in the past changes nothing.
    await pacer.pause_until(clock.now - 10)
    assert pacer.reserve() == pytest.approx(2.7)


def test_pacer_after_idle_does_not_bank_slots() -> None:
    clock = FakeClock()
    pacer = Pacer(30.0, clock=clock)
    pacer.reserve()
    clock.now += 60  # idle for a minute
    waits = [pacer.reserve() for _ in range(3)]
    assert waits == pytest.approx([0.0, 1 / 30, 2 / 30])


async def test_pacer_never_lets_more_than_the_window_limit_go_in_a_second() -> None:
    # 100/s with a limit of 5 per second: the rate alone would send 10 in the
    # first 100 ms; the window holds the sixth back until a second (plus the
    # margin) after the first, however late the event loop wakes up.
    pacer = Pacer(100.0, windows=[Window(5, 1.0)])
    sent: list[float] = []

    async def one() -> None:
        await pacer.acquire()
        sent.append(time.monotonic())

    tasks = [asyncio.create_task(one()) for _ in range(7)]
    await asyncio.sleep(0)
    time.sleep(0.06)  # noqa: ASYNC251 - the event loop is busy: slots pass meanwhile
    await asyncio.gather(*tasks)
    span = 1.0 + Pacer.WINDOW_MARGIN_S
    # A lower bound only: a slow machine makes the waits longer, never shorter.
    assert sent[5] - sent[0] >= span - 1e-3
    assert sent[6] - sent[1] >= span - 1e-3
    # Without a window the pacer only spaces by the rate.
    assert Pacer(100.0).windows == ()


def test_pacer_slows_down_after_429_and_wins_it_back() -> None:
    clock = FakeClock()
    pacer = Pacer(30.0, clock=clock)
    pacer.throttled()
    assert pacer.rate == pytest.approx(29.7)
    assert pacer.reserve() == 0.0
    assert pacer.reserve() == pytest.approx(1 / 29.7)
    # Never below 90 % of the rate asked for, however many 429s.
    for _ in range(100):
        pacer.throttled()
    assert pacer.rate == pytest.approx(27.0)
    # Answers win it back slowly (about 1 % of the rate per 1,000), never past it.
    for _ in range(1000):
        pacer.answered()
    assert pacer.rate == pytest.approx(27.3)
    for _ in range(20_000):
        pacer.answered()
    assert pacer.rate == 30.0
    unlimited = Pacer(None, clock=clock)
    unlimited.throttled()
    unlimited.answered()
    assert unlimited.rate is None and unlimited.reserve() == 0.0


def test_adaptive_limit_starts_with_enough_in_flight_for_the_rate() -> None:
    options = ConcurrencyOptions()
    assert AdaptiveLimit(options).limit == options.initial
    # 29.25 requests/s answered after 0.5 s need 15 in flight from the start.
    assert AdaptiveLimit(options, rate=29.25).limit == 15
    assert AdaptiveLimit(ConcurrencyOptions(maximum=8), rate=29.25).limit == 8
    assert AdaptiveLimit(ConcurrencyOptions(initial=20), rate=29.25).limit == 20
    # A lifted limit (a huge rate) says nothing about latency: the plain start.
    assert AdaptiveLimit(options, rate=1e6).limit == options.initial


def test_backoff_is_full_jitter_and_capped() -> None:
    rng = random.Random(1)
    for attempt in range(1, 20):
        d = backoff_delay(attempt, base=0.5, cap=30.0, rng=rng)
        assert 0.0 <= d <= min(30.0, 0.5 * 2 ** (attempt - 1))
    delays = {round(backoff_delay(5, base=0.5, cap=30, rng=rng), 6) for _ in range(50)}
    assert len(delays) > 40  # jittered, not fixed


def test_rate_limit_wait_reads_the_headers() -> None:
    now = 1_700_000_000.0
    assert rate_limit_wait({"Retry-After": "3"}, now_unix=now) == 3.0
    assert rate_limit_wait({"ratelimit-reset": str(int(now) + 2)}, now_unix=now) == 2.0
    assert rate_limit_wait({"ratelimit-reset": str(int(now) - 5)}, now_unix=now) == 0.0
    assert rate_limit_wait({"X-Ratelimit-Retry-After": str(int(now) + 1)}, now_unix=now) == 1.0
    assert rate_limit_wait({}, now_unix=now) is None
    assert rate_limit_wait({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, now_unix=now) == 0.0


async def test_adaptive_limit_grows_when_saturated_and_halves_on_backpressure() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(ConcurrencyOptions(initial=2, maximum=4), clock=clock)
    await limit.acquire()
    await limit.acquire()
    waiter = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    assert not waiter.done()  # the limit holds the third request back
    await limit.release(ok=True)  # saturated success: grow
    assert limit.limit == 3
    await waiter
    await limit.release(ok=False, backpressure=True)
    assert limit.limit == 1
    # Within the cooldown another failure does not halve again.
    await limit.release(ok=False, backpressure=True)
    assert limit.limit == 1
    assert limit.in_flight == 0


async def test_byte_budget_caps_in_flight_bytes_fifo() -> None:
    budget = ByteBudget(100)
    await budget.acquire(60)
    second = asyncio.create_task(budget.acquire(60))
    await asyncio.sleep(0)
    assert not second.done()
    budget.release(60)
    await asyncio.wait_for(second, 1)
    assert budget.used == 60
    # A body larger than the whole budget passes alone.
    budget.release(60)
    await asyncio.wait_for(budget.acquire(500), 1)
    assert budget.used == 500


async def test_byte_budget_cancelled_waiter_gives_nothing_away() -> None:
    budget = ByteBudget(10)
    await budget.acquire(10)
    waiter = asyncio.create_task(budget.acquire(5))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.release(10)
    assert budget.used == 0


def test_secret_never_shows_itself() -> None:
    s = Secret(TOKEN)
    assert TOKEN not in repr(s)
    assert TOKEN not in str(s)
    assert TOKEN not in f"{s}"
    assert TOKEN not in repr({"a": s})
    assert s.reveal() == TOKEN


def test_error_for_status_maps_and_quotes_the_api() -> None:
    body = b'{"errors":[{"status":"409","title":"Stream name already taken"}]}'
    err = error_for_status(Response(409, {}, body, "POST", "http://h/streams?x=1"))
    assert isinstance(err, Conflict)
    assert "Stream name already taken" in str(err)
    assert "x=1" not in str(err)  # paths only, never the query string
    assert isinstance(error_for_status(Response(401, {}, b"", "GET", "http://h/s")), AuthError)
    assert isinstance(
        error_for_status(Response(403, {}, b"", "POST", "http://h/s"), StreamDisabled),
        StreamDisabled,
    )
    assert isinstance(error_for_status(Response(503, {}, b"", "GET", "http://h/s")), ServerError)
    rl = error_for_status(Response(429, {"Retry-After": "2"}, b"", "GET", "http://h/s"))
    assert isinstance(rl, RateLimited) and rl.retry_after == 2.0 and rl.retriable


Server = tuple[str, list[tuple[int, dict[str, str], bytes]], list[dict[str, str]]]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """A loopback HTTP server answering from a script of (status, headers, body)."""
    script: list[tuple[int, dict[str, str], bytes]] = []
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        await request.read()
        if request.path == "/drop":
            assert request.transport is not None
            request.transport.close()
            raise ConnectionResetError
        if request.path == "/slow":
            await asyncio.sleep(5)
        status, headers, body = script.pop(0) if script else (200, {}, b"{}")
        return web.Response(status=status, headers=headers, body=body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", script, seen
    finally:
        await runner.cleanup()


async def test_transport_adds_auth_and_user_agent_and_never_leaks_the_token(
    server: Server,
) -> None:
    url, _, seen = server
    async with HttpTransport(
        url,
        auth_headers={"Authorization": Secret(f"Bearer {TOKEN}")},
        options=TransportOptions(integration="acme-sync"),
    ) as t:
        resp = await t.request("GET", "/streams")
        assert TOKEN not in repr(t)
    assert resp.status == 200
    assert seen[0]["Authorization"] == f"Bearer {TOKEN}"
    assert seen[0]["User-Agent"].startswith("bulkpush/") and "acme-sync" in seen[0]["User-Agent"]


async def test_transport_translates_network_errors(server: Server) -> None:
    url, _, _ = server
    async with HttpTransport(
        url,
        auth_headers={"Authorization": Secret(f"Bearer {TOKEN}")},
    ) as t:
        with pytest.raises(TransportError) as info:
            await t.request("POST", "/drop", body=b"data")
        assert info.value.retriable and TOKEN not in str(info.value)
        assert isinstance(info.value.__cause__, aiohttp.ClientError)
        with pytest.raises(RequestTimeout):
            await t.request("POST", "/slow", body=b"data", timeout_s=0.2)
    async with HttpTransport("http://127.0.0.1:9") as t:  # nothing listens on port 9
        with pytest.raises(TransportError):
            await t.request("GET", "/")


async def test_transport_does_not_follow_redirects(server: Server) -> None:
    url, script, seen = server
    script.append((302, {"Location": "http://127.0.0.2:1/elsewhere"}, b""))
    async with HttpTransport(url, auth_headers={"Authorization": Secret(f"Bearer {TOKEN}")}) as t:
        resp = await t.request("GET", "/s")
    assert resp.status == 302  # answered as is: the token went nowhere else
    assert len(seen) == 1


GET = Request(method="GET", path="/s")


async def test_executor_retries_5xx_then_gives_up_with_the_count(server: Server) -> None:
    url, script, seen = server
    policy = RetryPolicy(max_attempts=3, backoff_base_s=0.001, backoff_max_s=0.002)
    script.extend([(503, {}, b'{"errors":[{"title":"down"}]}')] * 3)
    async with HttpTransport(url) as t:
        with pytest.raises(RetriesExhausted) as info:
            await Executor(t, policy=policy).execute(GET)
    assert info.value.attempts == 3 and len(seen) == 3
    assert isinstance(info.value.last, ServerError)


async def test_executor_does_not_resend_a_non_idempotent_request_after_a_5xx(
    server: Server,
) -> None:
    url, script, seen = server
    policy = RetryPolicy(max_attempts=5, backoff_base_s=0.001, backoff_max_s=0.002)
    script.extend([(503, {}, b"")] * 3)
    create = Request(method="POST", path="/streams", body=b"{}", idempotent=False)
    async with HttpTransport(url) as t:
        with pytest.raises(ServerError):
            await Executor(t, policy=policy).execute(create)
    assert len(seen) == 1  # the create may have happened: not sent again


async def test_executor_waits_out_a_429_and_succeeds(server: Server) -> None:
    url, script, seen = server
    policy = RetryPolicy(max_attempts=2, backoff_base_s=0.001, backoff_max_s=0.002)
    script.extend([(429, {"Retry-After": "0.01"}, b"")] * 2 + [(200, {}, b'{"ok": true}')])
    async with HttpTransport(url) as t:
        resp, _ = await Executor(t, policy=policy).execute(GET, pacer=Pacer(1000.0))
    assert resp.json() == {"ok": True}
    assert len(seen) == 3  # two 429s did not use up the two attempts


async def test_executor_fails_fast_on_401(server: Server) -> None:
    url, script, seen = server
    script.append((401, {}, b'{"errors":[{"title":"Unauthorized"}]}'))
    async with HttpTransport(url) as t:
        with pytest.raises(AuthError):
            await Executor(t).execute(GET)
    assert len(seen) == 1
