"""The ``/_emulator/...`` endpoints, the request log and the Emulator object itself."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from bulkpush.emulator import Emulator, EmulatorConfig, Faults, LoggedRequest
from tests.conftest import TEST_TOKEN, EmulatorFactory
from tests.emulator.conftest import Api


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with session.get(url) as r:
        return r.status, await r.read()


async def send(session: aiohttp.ClientSession, method: str, url: str, body: object) -> int:
    async with session.request(method, url, data=orjson.dumps(body)) as r:
        return r.status


async def test_read_products_counts_and_log_over_http(
    api: Api, emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    sid = emulator.create_stream("inspect")
    await api.upload(sid, b'{"id":"a","v":1}\n{"id":"b","v":2}\n{"x":1}\n')
    await api.upload(sid, b'{"id":"a","v":3}\n')
    base = f"{emulator.url}/_emulator"
    status, body = await get(session, f"{base}/streams/{sid}/products")
    assert status == 200
    assert sorted(body.splitlines()) == [b'{"id":"a","v":3}', b'{"id":"b","v":2}']
    status, body = await get(session, f"{base}/streams/{sid}/upload-counts")
    assert orjson.loads(body) == {"a": 2, "b": 1}
    counters = orjson.loads((await get(session, f"{base}/streams/{sid}/counters"))[1])
    assert counters["uploads"] == 2
    assert counters["products_accepted"] == 3
    assert counters["products_rejected"] == 1
    assert counters["requests"] == 2
    assert orjson.loads((await get(session, f"{base}/counters"))[1])["requests"] == 2
    streams = orjson.loads((await get(session, f"{base}/streams"))[1])
    assert streams[0]["id"] == sid and streams[0]["products"] == 2
    batches = orjson.loads((await get(session, f"{base}/streams/{sid}/batches"))[1])
    assert len(batches) == 2
    log = orjson.loads((await get(session, f"{base}/requests?stream={sid}&limit=1"))[1])
    assert len(log) == 1
    entry = log[0]
    assert (entry["method"], entry["path"], entry["status"], entry["products"]) == (
        "POST",
        f"/streams/{sid}/products",
        200,
        1,
    )
    assert entry["size"] == len(b'{"id":"a","v":3}\n')
    assert entry["batch_id"] == emulator.batches(sid)[-1]["id"]
    assert (await get(session, f"{base}/streams/999/products"))[0] == 404
    assert (await get(session, f"{base}/requests?limit=x"))[0] == 400


async def test_the_request_log_never_holds_a_token(
    api: Api, emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    sid = emulator.create_stream("secrets")
    await api.upload(sid, b'{"id":"1"}', headers={"X-Auth-Token": "1:secret"})
    [entry] = emulator.requests(sid)
    assert isinstance(entry, LoggedRequest)
    assert "Authorization" not in entry.headers
    assert "X-Auth-Token" not in entry.headers
    assert entry.headers["Content-Type"] == "application/x-ndjson"
    dump = (await get(session, f"{emulator.url}/_emulator/requests"))[1]
    assert TEST_TOKEN.encode() not in dump and b"secret" not in dump
    assert TEST_TOKEN not in repr(emulator) and TEST_TOKEN not in repr(emulator.config)


async def test_set_status_and_faults_over_http(
    api: Api, emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    sid = emulator.create_stream("control")
    base = f"{emulator.url}/_emulator/streams/{sid}"
    assert await send(session, "PUT", f"{base}/status", {"status": "disabled"}) == 200
    assert (await api.upload(sid, b'{"id":"1"}')).status == 403
    assert orjson.loads((await get(session, f"{base}/status"))[1]) == {"status": "disabled"}
    assert await send(session, "POST", f"{base}/status", {"status": "active"}) == 200
    assert await send(session, "PUT", f"{base}/status", {"status": "gone"}) == 422
    assert (
        await send(session, "PUT", f"{base}/faults", {"error_rate": 1, "error_status": 500}) == 200
    )
    assert (await api.upload(sid, b'{"id":"1"}')).status == 500
    faults = orjson.loads((await get(session, f"{base}/faults"))[1])
    assert faults["error_rate"] == 1.0 and faults["error_status"] == 500
    assert await send(session, "PUT", f"{base}/faults", {"error_rate": 2}) == 422
    assert await send(session, "PUT", f"{emulator.url}/_emulator/faults", {"lock_s": 60}) == 200
    other = emulator.create_stream("other")
    assert (await api.upload(other, b'{"id":"1"}')).status == 423
    defaults = orjson.loads((await get(session, f"{emulator.url}/_emulator/faults"))[1])
    assert defaults["lock_s"] == 60
    async with session.put(f"{base}/faults", data=b"{") as r:
        assert r.status == 400


async def test_the_request_log_is_bounded(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(EmulatorConfig(request_log_size=5, products_rate=None))
    api = Api(session, emu.url, "t")
    sid = emu.create_stream("bounded")
    for i in range(12):
        await api.upload(sid, b'{"id":"%d"}' % i)
    assert len(emu.requests()) == 5
    assert emu.counters(sid)["requests"] == 12
    assert len(emu.upload_counts(sid)) == 12


async def test_emulator_lifecycle() -> None:
    emu = Emulator()
    with pytest.raises(RuntimeError):
        _ = emu.url
    assert "stopped" in repr(emu)
    async with emu:
        assert emu.url.startswith("http://127.0.0.1:")
        assert emu.url in repr(emu)
        with pytest.raises(RuntimeError):
            await emu.start()
    await emu.aclose()
    with pytest.raises(KeyError):
        emu.products("1")
    with pytest.raises(ValueError):
        emu.create_stream("x")
    with pytest.raises(KeyError):
        emu.set_faults("404", Faults())


def test_public_surface() -> None:
    import bulkpush.emulator as package

    assert sorted(package.__all__) == [
        "Emulator",
        "EmulatorConfig",
        "Faults",
        "LoggedRequest",
        "build_app",
    ]
