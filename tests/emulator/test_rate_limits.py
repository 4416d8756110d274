"""Rate limits over HTTP: the 31st request in a second, per stream and per endpoint."""

from __future__ import annotations

import asyncio
import io
import time

import aiohttp

from bulkpush.emulator import Emulator, EmulatorConfig
from tests.conftest import TEST_TOKEN, EmulatorFactory
from tests.emulator.conftest import NDJSON, Answer, Api

FROZEN = 1_700_000_000.25  # a fake wall clock: every request falls in one window


async def frozen(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> tuple[Emulator, Api]:
    emu = await emulator_factory(
        EmulatorConfig(tokens=frozenset({TEST_TOKEN}), clock=lambda: FROZEN)
    )
    return emu, Api(session, emu.url, TEST_TOKEN)


def rate_headers(answer: Answer) -> tuple[str, str, str, str]:
    h = answer.headers
    return (
        h["ratelimit-limit"],
        h["ratelimit-observed"],
        h["ratelimit-remaining"],
        h["ratelimit-reset"],
    )


async def test_the_31st_upload_in_a_second_is_429_and_another_stream_is_unaffected(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu, api = await frozen(emulator_factory, session)
    one, two = emu.create_stream("stream one"), emu.create_stream("stream two")
    answers = await asyncio.gather(*(api.upload(one, b'{"id":"%d"}' % i) for i in range(31)))
    statuses = sorted(a.status for a in answers)
    assert statuses == [200] * 30 + [429]
    [refused] = [a for a in answers if a.status == 429]
    assert refused.json == {"errors": [{"status": "429", "title": "Too Many Requests"}]}
    assert rate_headers(refused) == ("30", "30", "0", "1700000001")
    observed = sorted(int(a.headers["ratelimit-observed"]) for a in answers if a.status == 200)
    assert observed == list(range(1, 31))
    other = await api.upload(two, b'{"id":"x"}')
    assert other.status == 200
    assert rate_headers(other) == ("30", "1", "29", "1700000001")
    assert emu.counters(one)["throttled"] == 1
    assert len(emu.products(one)) == 30


async def test_batches_allow_100_per_stream_and_other_endpoints_5_each(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu, api = await frozen(emulator_factory, session)
    sid = emu.create_stream("batches")
    path = f"/streams/{sid}/batches/none"
    answers = await asyncio.gather(*(api.call("GET", path) for _ in range(101)))
    assert sorted(a.status for a in answers) == [404] * 100 + [429]
    assert {a.headers["ratelimit-limit"] for a in answers} == {"100"}
    # "/*: the limit applies to each endpoint individually": 5 on GET /streams ...
    listing = [await api.call("GET", "/streams") for _ in range(6)]
    assert [a.status for a in listing] == [200] * 5 + [429]
    assert rate_headers(listing[0]) == ("5", "1", "4", "1700000001")
    # ... and another 5 on /streams/{streamId}, shared by every stream id.
    single = [await api.call("GET", f"/streams/{sid}") for _ in range(5)]
    assert all(a.status == 200 for a in single)
    assert (await api.call("GET", "/streams/999")).status == 429


async def test_every_answer_has_the_headers(api: Api, emulator: Emulator) -> None:
    sid = emulator.create_stream("headers")
    for answer in [
        await api.upload(sid, b'{"id":"1"}'),
        await api.upload(sid, b"{}"),
        await api.call("GET", f"/streams/{sid}/batches/x"),
        await api.call("GET", "/nowhere"),
        await api.call("GET", "/streams", token=None),
    ]:
        assert set(rate_headers(answer)) and int(answer.headers["ratelimit-reset"]) >= int(
            time.time()
        )


async def test_real_clock_windows(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(EmulatorConfig(products_rate=3))
    api = Api(session, emu.url, "t")
    sid = emu.create_stream("real clock")
    for _attempt in range(5):
        # Fire just after a second boundary so the burst stays inside one window.
        await asyncio.sleep(1.0 - time.time() % 1.0 + 0.01)
        answers = await asyncio.gather(*(api.upload(sid, b'{"id":"1"}') for _ in range(4)))
        if time.time() % 1.0 < 0.5:
            break
    assert sorted(a.status for a in answers) == [200, 200, 200, 429]
    await asyncio.sleep(1.0 - time.time() % 1.0 + 0.01)
    assert (await api.upload(sid, b'{"id":"1"}')).status == 200


async def test_a_throttled_upload_is_refused_before_its_body_is_read(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu, api = await frozen(emulator_factory, session)
    emu_sid = emu.create_stream("big body")
    # Use up the window, then send a large body: the 429 comes back cleanly.
    await asyncio.gather(*(api.upload(emu_sid, b'{"id":"1"}') for _ in range(30)))
    big = b"".join(b'{"id":"%d","pad":"%s"}\n' % (i, b"x" * 200) for i in range(40_000))
    async with session.post(
        f"{emu.url}/streams/{emu_sid}/products",
        data=io.BytesIO(big),
        headers={"Authorization": f"Bearer {TEST_TOKEN}", "Content-Type": NDJSON},
    ) as r:
        assert r.status == 429
        assert await r.json(content_type=None) == {
            "errors": [{"status": "429", "title": "Too Many Requests"}]
        }
    [logged] = [e for e in emu.requests(emu_sid) if e.status == 429]
    assert logged.size == 0 and logged.products == 0
    # The connection is still usable (or was closed cleanly): the next request works.
    assert (await api.call("GET", f"/streams/{emu_sid}/batches/x")).status == 404


async def test_no_rate_limit(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(
        EmulatorConfig(products_rate=None, batches_rate=None, other_rate=None, clock=lambda: FROZEN)
    )
    api = Api(session, emu.url, "t")
    sid = emu.create_stream("unlimited")
    answers = await asyncio.gather(*(api.upload(sid, b'{"id":"1"}') for _ in range(50)))
    assert {a.status for a in answers} == {200}
    assert "ratelimit-limit" not in answers[0].headers
