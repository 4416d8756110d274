"""Fault injection: 5xx, errors after storing, latency, dropped connections, 429 storms, locks."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from bulkpush.emulator import Emulator, EmulatorConfig, Faults
from bulkpush.emulator.faults import FaultState, stream_rng
from tests.conftest import EmulatorFactory
from tests.emulator.conftest import Api


async def test_error_rate_answers_the_chosen_5xx_without_storing(
    free_api: Api, free_emulator: Emulator
) -> None:
    sid = free_emulator.create_stream("errors")
    free_emulator.set_faults(sid, Faults(error_rate=1.0, error_status=502))
    answer = await free_api.upload(sid, b'{"id":"1"}')
    assert answer.status == 502
    assert answer.json == {"errors": [{"status": "502", "title": "Bad Gateway"}]}
    assert free_emulator.products(sid) == {}
    assert free_emulator.counters(sid)["server_errors"] == 1


async def test_error_after_store_keeps_the_products(free_api: Api, free_emulator: Emulator) -> None:
    sid = free_emulator.create_stream("after store")
    free_emulator.set_faults(sid, Faults(error_after_store_rate=1.0))
    assert (await free_api.upload(sid, b'{"id":"1"}')).status == 503
    assert (await free_api.upload(sid, b'{"id":"1"}')).status == 503
    assert free_emulator.products(sid) == {"1": b'{"id":"1"}'}
    assert free_emulator.upload_counts(sid) == {"1": 2}


async def test_shares_are_deterministic_with_a_seed(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    async def run(seed: int) -> list[int]:
        emu = await emulator_factory(
            EmulatorConfig(products_rate=None, seed=seed, faults=Faults(error_rate=0.5))
        )
        api = Api(session, emu.url, "t")
        sid = emu.create_stream("seeded")
        return [(await api.upload(sid, b'{"id":"1"}')).status for _ in range(40)]

    first, again, other = await run(7), await run(7), await run(8)
    assert first == again
    assert first != other
    assert 5 <= first.count(503) <= 35
    assert set(first) == {200, 503}


def test_draws_follow_the_rates() -> None:
    rng = stream_rng(0, "1")
    state = FaultState(Faults(drop_rate=0.2, error_rate=0.25))
    draws = [state.draw(rng) for _ in range(4000)]
    drops = sum(d.drop for d in draws) / 4000
    errors = sum(d.error for d in draws) / 4000
    assert 0.17 < drops < 0.23
    assert 0.17 < errors < 0.23  # 0.25 of the 0.8 not dropped


async def test_latency_is_added_to_products_requests(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(EmulatorConfig(latency_s=0.1))
    api = Api(session, emu.url, "t")
    sid = emu.create_stream("slow")
    emu.set_faults(sid, Faults(latency_s=0.1))
    started = time.perf_counter()
    assert (await api.upload(sid, b'{"id":"1"}')).status == 200
    assert time.perf_counter() - started >= 0.2
    started = time.perf_counter()
    await api.call("GET", f"/streams/{sid}")
    assert time.perf_counter() - started < 0.2
    [upload] = [e for e in emu.requests(sid) if e.method == "POST"]
    assert upload.duration_s >= 0.2


async def test_a_request_slower_than_the_server_timeout_is_504(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(EmulatorConfig(request_timeout_s=0.1, latency_s=1.0))
    api = Api(session, emu.url, "t")
    sid = emu.create_stream("timeout")
    answer = await api.upload(sid, b'{"id":"1"}')
    assert answer.status == 504
    assert emu.products(sid) == {}


async def test_dropped_connection_gets_no_answer(
    free_api: Api, free_emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    sid = free_emulator.create_stream("dropped")
    free_emulator.set_faults(sid, Faults(drop_rate=1.0))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await free_api.upload(sid, b'{"id":"1"}\n' * 1000)
    # A large body is cut mid-request too.
    big = b"".join(b'{"id":"%d","pad":"%s"}\n' % (i, b"x" * 100) for i in range(50_000))
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await free_api.upload(sid, big)
    assert free_emulator.products(sid) == {}
    counters = free_emulator.counters(sid)
    assert counters["dropped"] == 2
    assert [e.status for e in free_emulator.requests(sid)] == [0, 0]
    # The emulator keeps serving.
    free_emulator.set_faults(sid, Faults())
    assert (await free_api.upload(sid, b'{"id":"1"}')).status == 200


async def test_throttle_storm_answers_429_on_every_stream_path(
    free_api: Api, free_emulator: Emulator
) -> None:
    sid = free_emulator.create_stream("storm")
    calm = free_emulator.create_stream("calm")
    free_emulator.set_faults(sid, Faults(throttle_storm_s=0.3))
    upload = await free_api.upload(sid, b'{"id":"1"}')
    assert upload.status == 429
    assert upload.json == {"errors": [{"status": "429", "title": "Too Many Requests"}]}
    assert (await free_api.call("GET", f"/streams/{sid}/batches/x")).status == 429
    assert (await free_api.upload(calm, b'{"id":"1"}')).status == 200
    assert free_emulator.counters(sid)["throttled"] == 2
    await asyncio.sleep(0.35)  # the storm's own window
    assert (await free_api.upload(sid, b'{"id":"1"}')).status == 200


async def test_storm_keeps_the_rate_headers(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(EmulatorConfig(faults=Faults(throttle_storm_s=60)))
    api = Api(session, emu.url, "t")
    sid = emu.create_stream("stormy default")
    answer = await api.upload(sid, b'{"id":"1"}')
    assert answer.status == 429
    assert answer.headers["ratelimit-remaining"] == "0"
    assert answer.headers["ratelimit-limit"] == "30"


async def test_lock_window_answers_423_then_ends(free_api: Api, free_emulator: Emulator) -> None:
    sid = free_emulator.create_stream("lock window")
    free_emulator.set_faults(sid, Faults(lock_s=0.3))
    locked = await free_api.upload(sid, b'{"id":"1"}')
    assert locked.status == 423
    assert locked.json["errors"][0]["title"] == "Locked"
    assert (await free_api.call("DELETE", f"/streams/{sid}/products?all=true")).status == 423
    assert (await free_api.call("GET", f"/streams/{sid}")).status == 200
    await asyncio.sleep(0.35)  # the lock's own window
    assert (await free_api.upload(sid, b'{"id":"1"}')).status == 200
    assert free_emulator.counters(sid)["locked"] == 2


async def test_default_faults_apply_to_every_stream(free_api: Api, free_emulator: Emulator) -> None:
    a, b = free_emulator.create_stream("first"), free_emulator.create_stream("second")
    free_emulator.set_faults(None, Faults(error_rate=1.0))
    assert (await free_api.upload(a, b'{"id":"1"}')).status == 503
    free_emulator.set_faults(b, Faults())
    assert (await free_api.upload(b, b'{"id":"1"}')).status == 200


def test_faults_validate_their_values() -> None:
    with pytest.raises(ValueError):
        Faults(error_rate=1.5)
    with pytest.raises(ValueError):
        Faults(error_status=418)
    with pytest.raises(ValueError):
        Faults(lock_s=-1)
    with pytest.raises(ValueError):
        Faults.from_json({"error_rate": "high"})
    with pytest.raises(ValueError):
        Faults.from_json({"nonsense": 1})
    assert Faults.from_json({"error_status": 500, "drop_rate": 0.5}) == Faults(
        error_status=500, drop_rate=0.5
    )
