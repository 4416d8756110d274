"""The link: a shared uplink bandwidth, and the server's request timeout (the 10 s rule).

Over real loopback HTTP. Timings are checked with coarse bounds only: the link's
physics gives lower bounds (100 KB at 200 KB/s cannot take less than ~0.45 s,
whatever the machine's load); upper bounds are generous.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from bulkpush.emulator import Emulator, EmulatorConfig
from bulkpush.emulator import cli as emulator_cli
from tests.conftest import TEST_TOKEN, EmulatorFactory
from tests.emulator.conftest import Api

pytestmark = pytest.mark.timeout(60)

KB = 1000


def ndjson(size: int, prefix: str = "p") -> bytes:
    """Valid NDJSON products of about ``size`` bytes (100-byte lines)."""
    line_pad = b"x" * 70
    lines = [
        b'{"id":"%s%06d","pad":"%s"}' % (prefix.encode(), i, line_pad)
        for i in range(max(1, size // 100))
    ]
    return b"\n".join(lines) + b"\n"


def config(**kwargs: Any) -> EmulatorConfig:
    return EmulatorConfig(
        tokens=frozenset({TEST_TOKEN}),
        products_rate=None,
        batches_rate=None,
        other_rate=None,
        **kwargs,
    )


async def timed_upload(api: Api, sid: str, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    answer = await api.upload(sid, body)
    return answer.status, time.perf_counter() - started


# -- (a) the uplink: a body takes its size over the bandwidth; concurrent bodies share it


async def test_a_body_takes_its_size_over_the_bandwidth_and_concurrent_bodies_share_it(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(config(uplink_bytes_per_s=200 * KB))
    api = Api(session, emu.url, TEST_TOKEN)
    sid = emu.create_stream("uplink")
    body_a, body_b = ndjson(100 * KB, "a"), ndjson(100 * KB, "b")
    status, alone = await timed_upload(api, sid, body_a)
    assert status == 200
    assert alone >= 0.4  # 100 KB at 200 KB/s: 0.5 s, less at most 50 ms of idle credit
    assert alone < 5.0
    (status_a, first), (status_b, second) = await asyncio.gather(
        timed_upload(api, sid, body_a), timed_upload(api, sid, body_b)
    )
    assert status_a == status_b == 200
    # Both share the link: each takes about twice as long as one alone...
    assert min(first, second) >= 1.5 * alone
    # ...and they get even shares, so they end close together.
    assert min(first, second) >= 0.7 * max(first, second)
    assert len(emu.products(sid)) == 2000
    assert emu.uplink.carried >= 3 * len(body_a)


# -- (b) the request timeout: the body's transfer counts; 504, nothing stored, counted


async def test_a_request_whose_body_outlasts_the_timeout_is_504_and_stores_nothing(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    # 100 KB at 50 KB/s takes 2 s; the server gives up after 1 s.
    emu = await emulator_factory(config(uplink_bytes_per_s=50 * KB, request_timeout_s=1.0))
    api = Api(session, emu.url, TEST_TOKEN)
    sid = emu.create_stream("too-slow")
    started = time.perf_counter()
    body = ndjson(100 * KB)
    answer = await api.upload(sid, body)
    elapsed = time.perf_counter() - started
    assert answer.status == 504
    assert answer.json == {
        "errors": [
            {
                "status": "504",
                "title": "Gateway Timeout",
                "detail": "the request took more than 1 s",
            }
        ]
    }
    assert 0.9 <= elapsed < 1.5
    assert emu.products(sid) == {}
    assert emu.batches(sid) == []
    assert emu.upload_counts(sid) == {}
    counters = emu.counters(sid)
    assert counters["timed_out"] == 1
    assert counters["server_errors"] == 1
    assert counters.get("uploads", 0) == 0
    assert emu.counters()["timed_out"] == 1
    [logged] = emu.requests(sid)
    assert (logged.status, logged.timed_out, logged.batch_id) == (504, True, None)
    async with session.get(emu.url + "/_emulator/counters") as r:
        assert (await r.json())["timed_out"] == 1
    # The emulator keeps serving: a small body goes through in time.
    small = ndjson(1 * KB)
    answer = await api.upload(sid, small)
    assert answer.status == 200
    assert len(emu.products(sid)) == 10
    # The client (aiohttp) went on sending the rest of the first body after the
    # answer: the server read it through the link and threw it away.
    for _ in range(100):  # at most 10 s
        if emu.uplink.carried >= len(body) + len(small):
            break
        await asyncio.sleep(0.1)
    assert emu.uplink.carried >= len(body) + len(small)
    assert emu.products(sid).keys() == {f"p{i:06d}" for i in range(10)}


async def test_a_body_larger_than_the_socket_buffers_is_answered_at_the_deadline(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    # 8 MB at 1 MB/s: the client is still writing (back-pressure) when the server gives up.
    emu = await emulator_factory(config(uplink_bytes_per_s=1000 * KB, request_timeout_s=1.0))
    api = Api(session, emu.url, TEST_TOKEN)
    sid = emu.create_stream("big-and-slow")
    started = time.perf_counter()
    answer = await api.upload(sid, ndjson(8000 * KB))
    assert answer.status == 504
    assert time.perf_counter() - started < 2.5
    assert emu.products(sid) == {}
    assert emu.counters(sid)["timed_out"] == 1
    assert emu.uplink.carried < 2000 * KB  # what the link carried in about 1 s


async def test_a_slow_handler_times_out_too_and_a_referenced_upload_stores_nothing(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(
        config(latency_s=2.0, request_timeout_s=0.5, referenced_min_bytes=0)
    )
    api = Api(session, emu.url, TEST_TOKEN)
    sid = emu.create_stream("referenced-slow", "referenced")
    answer = await api.upload(sid, b'[{"id":"1"}]', ctype="application/json")
    assert answer.status == 504
    assert emu.products(sid) == {}
    assert emu.batches(sid) == []


# -- (c) a fast request is unaffected


async def test_a_fast_request_is_unaffected(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(config(uplink_bytes_per_s=200 * KB, request_timeout_s=1.0))
    api = Api(session, emu.url, TEST_TOKEN)
    created = await api.create_stream("fast")
    assert created.status == 201
    sid = created.json["data"]["id"]
    status, elapsed = await timed_upload(api, sid, ndjson(2 * KB))
    assert status == 200
    assert elapsed < 0.9
    assert (await api.call("GET", f"/streams/{sid}")).status == 200
    assert len(emu.products(sid)) == 20
    assert emu.counters().get("timed_out", 0) == 0
    assert not any(e.timed_out for e in emu.requests())


async def test_without_a_timeout_a_slow_request_is_answered(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(config(latency_s=0.3, request_timeout_s=None))
    api = Api(session, emu.url, TEST_TOKEN)
    sid = emu.create_stream("no-timeout")
    assert (await api.upload(sid, ndjson(1 * KB))).status == 200


async def test_the_default_timeout_is_the_apis_10_s() -> None:
    assert EmulatorConfig().request_timeout_s == 10.0
    assert EmulatorConfig().uplink_bytes_per_s is None
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="uplink_bytes_per_s"):
            EmulatorConfig(uplink_bytes_per_s=bad)


# -- (d) the bandwidth changes while bodies are in flight


async def test_set_uplink_slows_a_body_in_flight(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    # 400 KB at 400 KB/s would take 1 s; after 0.2 s the link drops to 100 KB/s.
    emu = await emulator_factory(config(uplink_bytes_per_s=400 * KB, request_timeout_s=None))
    api = Api(session, emu.url, TEST_TOKEN)
    sid = emu.create_stream("slows-down")
    upload = asyncio.create_task(timed_upload(api, sid, ndjson(400 * KB)))
    await asyncio.sleep(0.2)
    emu.set_uplink(100 * KB)
    status, elapsed = await upload
    assert status == 200
    assert elapsed >= 2.0  # at least ~300 KB left at 100 KB/s: about 3 s
    assert emu.uplink.bytes_per_s == 100 * KB


async def test_set_uplink_speeds_up_a_body_in_flight(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    # 200 KB at 50 KB/s would take 4 s; after 0.3 s the link goes to 5 MB/s.
    emu = await emulator_factory(config(uplink_bytes_per_s=50 * KB, request_timeout_s=None))
    api = Api(session, emu.url, TEST_TOKEN)
    sid = emu.create_stream("speeds-up")
    upload = asyncio.create_task(timed_upload(api, sid, ndjson(200 * KB)))
    await asyncio.sleep(0.3)
    emu.set_uplink(5000 * KB)
    status, elapsed = await upload
    assert status == 200
    assert elapsed < 2.0


async def test_the_uplink_endpoint_reads_and_sets_the_bandwidth(
    emulator_factory: EmulatorFactory, session: aiohttp.ClientSession
) -> None:
    emu = await emulator_factory(config(uplink_bytes_per_s=125_000.0))
    url = emu.url + "/_emulator/uplink"
    async with session.get(url) as r:
        assert await r.json() == {"bytes_per_s": 125_000.0, "carried": 0}
    async with session.put(url, json={"bytes_per_s": 20_000}) as r:
        assert r.status == 200
        assert (await r.json())["bytes_per_s"] == 20_000
    assert emu.uplink.bytes_per_s == 20_000
    # The new bandwidth holds for the next body: 30 KB at 20 KB/s.
    api = Api(session, emu.url, TEST_TOKEN)
    sid = emu.create_stream("endpoint")
    status, elapsed = await timed_upload(api, sid, ndjson(30 * KB))
    assert status == 200
    assert elapsed >= 1.2
    async with session.post(url, json={"bytes_per_s": None}) as r:
        assert (await r.json())["bytes_per_s"] is None
    for bad in ({"bytes_per_s": 0}, {"bytes_per_s": "fast"}, {"rate": 1}, [1], {}):
        async with session.put(url, json=bad) as r:
            assert r.status == 422, bad
    async with session.put(url, data=b"{not json") as r:
        assert r.status == 400


# -- (e) the command's flags


def test_the_help_shows_the_link_flags() -> None:
    result = CliRunner().invoke(emulator_cli.emulator_command, ["--help"])
    assert result.exit_code == 0
    for flag in ("--uplink-mbps", "--request-timeout", "--no-request-timeout"):
        assert flag in result.output
    assert "megabits per second" in " ".join(result.output.split())


@pytest.mark.parametrize(
    "args",
    [
        ["--uplink-mbps", "0"],
        ["--uplink-mbps", "-2"],
        ["--uplink-mbps", "fast"],
        ["--uplink-mbps", "nan"],
        ["--uplink-mbps", "inf"],
        ["--request-timeout", "0"],
        ["--request-timeout", "-1"],
        ["--request-timeout", "soon"],
    ],
)
def test_bad_link_flags_are_usage_errors(args: list[str]) -> None:
    result = CliRunner().invoke(emulator_cli.emulator_command, args)
    assert result.exit_code == 2
    assert args[0] in result.output


@pytest.mark.parametrize(
    ("args", "uplink", "timeout"),
    [
        ([], None, 10.0),
        (["--uplink-mbps", "100"], 12_500_000.0, 10.0),
        (["--uplink-mbps", "0.5", "--request-timeout", "2.5"], 62_500.0, 2.5),
        (["--no-request-timeout"], None, None),
    ],
)
def test_link_flags_reach_the_config(
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    uplink: float | None,
    timeout: float | None,
) -> None:
    seen: list[EmulatorConfig] = []

    async def serve(config: EmulatorConfig) -> None:
        seen.append(config)

    monkeypatch.setattr(emulator_cli, "_serve", serve)
    result = CliRunner().invoke(emulator_cli.emulator_command, args)
    assert result.exit_code == 0, result.output
    [config] = seen
    assert config.uplink_bytes_per_s == uplink
    assert config.request_timeout_s == timeout


def test_the_command_serves_a_slow_link() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulkpush", "emulator", "--port", "0", "--uplink-mbps", "0.8"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("bulkpush emulator listening on ")
        url = first.rsplit(" ", 1)[1].strip()
        assert "any non-empty bearer token" in proc.stdout.readline()
        assert proc.stdout.readline().startswith("uplink: 0.8 Mbit/s (100,000 bytes/s)")
        with urllib.request.urlopen(url + "/_emulator/uplink", timeout=10) as response:
            assert json.loads(response.read()) == {"bytes_per_s": 100_000.0, "carried": 0}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_an_emulator_is_built_with_its_uplink() -> None:
    emu = Emulator(config(uplink_bytes_per_s=1000.0))
    assert emu.uplink.bytes_per_s == 1000.0
    emu.set_uplink(None)
    assert emu.uplink.bytes_per_s is None
    with pytest.raises(ValueError, match="positive"):
        emu.set_uplink(0)
