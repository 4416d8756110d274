"""Real links: every request ends inside the server's time limit, and the uplink stays busy.

The emulator carries request bodies through one shared uplink of a set
bandwidth and answers 504 to a request it takes longer than its time limit to
read and answer (the API's 10 s rule). These tests scale time down by five
(a 2 s limit, a 1 s target per request, links of 0.5 to 4 MB/s) so each stays
within seconds; the benchmark suite's "slow links" scenario runs the real
sizes. Over real loopback HTTP. Only the link's physics bounds anything
measured (nothing goes faster than the bandwidth); no test asserts speed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from bulkpush import PushOptions, StreamClient
from bulkpush._compression import CompressionOptions
from bulkpush._link import Link
from bulkpush._records import Chunk, Record, Span
from bulkpush._sender import cut_parts
from bulkpush.emulator import Emulator, EmulatorConfig
from tests.conftest import TEST_TOKEN, EmulatorFactory

pytestmark = pytest.mark.timeout(90)

MB = 1_000_000
LIMIT_S = 2.0  # the emulator's request time limit (the API's 10 s, scaled)
TARGET_S = 1.0  # the client's request time (its default 5 s, scaled)


def catalog(path: Path, n: int, size: int = 1000, start: int = 0) -> Path:
    """``n`` products of ``size`` bytes each (with their newline), not very compressible."""
    rng = np.random.default_rng(start)
    lines = []
    for i in range(start, start + n):
        head = b'{"id":"p%07d","t":"' % i
        fill = size - len(head) - 3
        text = rng.integers(97, 123, fill, dtype=np.uint8).tobytes()
        lines.append(head + text + b'"}\n')
    path.write_bytes(b"".join(lines))
    return path


def emulator_config(**kw: Any) -> EmulatorConfig:
    return EmulatorConfig(
        tokens=frozenset({TEST_TOKEN}),
        products_rate=None,
        batches_rate=None,
        other_rate=None,
        request_timeout_s=LIMIT_S,
        **kw,
    )


def scaled_link() -> Link:
    """The client's link, scaled as the emulator is: 4 MB before measuring -> 0.8 MB."""
    return Link(initial_bytes=800_000, server_timeout_s=LIMIT_S)


def uploads(emu: Emulator, sid: str) -> list[Any]:
    return [r for r in emu.requests(sid) if r.method == "POST" and r.path.endswith("/products")]


async def push(emu: Emulator, sid: str, source: Path, **kw: Any) -> dict[str, Any]:
    opts = PushOptions(request_time_s=TARGET_S, workers=1, **kw)
    async with StreamClient(token=TEST_TOKEN, api_url=emu.url) as client:
        client.engine.link = scaled_link()
        report = await client.push(str(source), stream=sid, options=opts)
    return report.to_dict()


# -- the link alone (a fake clock)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_link_measures_by_littles_law_and_admits_what_it_moves_in_time() -> None:
    clock = Clock()
    link = Link(initial_bytes=1000, clock=clock)
    assert link.throughput() is None
    assert link.budget(5.0) == 1000  # nothing measured yet
    a = link.begin(2_000_000)
    clock.now += 2.0
    link.end(a, delivered=True)  # 2 MB alone in 2 s
    assert link.throughput() == pytest.approx(1e6)
    assert link.budget(5.0) == pytest.approx(5e6)
    assert link.seconds_for(3_000_000) == pytest.approx(3.0)
    clock.now += 60.0  # idle time changes nothing
    assert link.throughput() == pytest.approx(1e6)
    # Two at once that each take 4 s for 2 MB: the link still moves 1 MB/s.
    b, c = link.begin(2_000_000), link.begin(2_000_000)
    clock.now += 4.0
    link.end(b, delivered=True)
    link.end(c, delivered=True)
    assert link.throughput() == pytest.approx(1e6)
    # The link slows to a quarter: the estimate follows within a few requests.
    for _ in range(4):
        d = link.begin(1_000_000)
        clock.now += 4.0
        link.end(d, delivered=True)
    assert link.throughput() == pytest.approx(0.25e6)
    # A failed request counts in the report's busy time, not in the estimate.
    e = link.begin(1_000_000)
    clock.now += 1.0
    link.end(e, delivered=False)
    assert link.throughput() == pytest.approx(0.25e6)
    assert link.reading().delivered == 10_000_000
    assert link.reading().busy_s == pytest.approx(2 + 4 + 16 + 1)


def test_a_timeout_caps_the_estimate_until_a_later_request_is_delivered() -> None:
    clock = Clock()
    link = Link(clock=clock)
    a = link.begin(10_000_000)
    clock.now += 1.0
    link.end(a, delivered=True)  # 10 MB/s
    b = link.begin(10_000_000)
    clock.now += 10.0
    link.end(b, delivered=False, timed_out=True)  # not 10 MB in 10 s
    assert link.throughput() == pytest.approx(1e6)  # at most 1 MB/s now
    c = link.begin(2_000_000)
    clock.now += 4.0
    link.end(c, delivered=True)  # measured again: 0.5 MB/s
    assert link.throughput() == pytest.approx(0.5e6)


async def test_the_link_admits_one_large_body_alone_and_wakes_waiters_in_order() -> None:
    clock = Clock()
    link = Link(initial_bytes=1000, clock=clock)
    await link.acquire(5000, 5.0)  # larger than the budget: alone is allowed
    second = asyncio.ensure_future(link.acquire(10, 5.0))
    await asyncio.sleep(0)
    assert not second.done()
    link.release(5000)
    await asyncio.wait_for(second, 1)
    assert link.used == 10


# -- cutting a chunk into pieces of about equal bytes


def _records(sizes: list[int]) -> list[Record]:
    return [
        Record("c.ndjson", i + 1, 0, b'{"id":"%d","t":"%s"}' % (i, b"x" * (s - 14 - len(str(i)))))
        for i, s in enumerate(sizes)
    ]


def test_cut_parts_balances_bytes_and_keeps_the_minimum() -> None:
    records = _records([100] * 90 + [1000] * 10)
    chunk = Chunk(0, records, sum(r.size + 1 for r in records))
    parts = cut_parts(chunk, 4)
    assert [r for p in parts for r in p.records] == records  # in order, none lost
    assert len(parts) == 4
    sizes = [p.nbytes for p in parts]
    assert sum(sizes) == chunk.nbytes
    assert max(sizes) - min(sizes) <= 2 * 1001  # each cut is off by under one product
    # With a minimum, no piece is under it (and fewer pieces come back).
    least = chunk.nbytes // 3
    kept = cut_parts(chunk, 4, least)
    assert all(p.nbytes >= least for p in kept)
    assert [r for p in kept for r in p.records] == records
    # A span cuts the same way as its records.
    body = b"".join(r.raw + b"\n" for r in records)
    starts = np.cumsum([0] + [r.size + 1 for r in records]).astype(np.uint32)
    lines = np.arange(1, len(records) + 1, dtype=np.int64)
    span = Span("c.ndjson", body, starts, lines, np.zeros(len(records), dtype=np.int64))
    spans = cut_parts(Chunk(0, span=span, nbytes=len(body)), 4)
    assert [len(p) for p in spans] == [len(p) for p in parts]
    assert b"".join(p.span.data() for p in spans if p.span is not None) == body


# -- over loopback, against the emulator's uplink


@pytest.mark.parametrize("codec", ["none", "gzip"])
async def test_a_slow_link_gets_requests_that_end_in_time(
    emulator_factory: EmulatorFactory, tmp_path: Path, codec: str
) -> None:
    emu = await emulator_factory(emulator_config(uplink_bytes_per_s=1 * MB))
    sid = emu.create_stream(f"slow-{codec}")
    n = 5_000 if codec == "none" else 20_000
    cat = catalog(tmp_path / "c.ndjson", n)
    # 1,500 products of 1 KB: 1.5 MB, 1.5 s alone at 1 MB/s (over the 1 s target).
    report = await push(
        emu,
        sid,
        cat,
        max_products_per_request=1500,
        compression=CompressionOptions(codec=codec),  # type: ignore[arg-type]
    )
    assert report["accepted"] == n and report["balanced"], report
    assert emu.counters(sid).get("timed_out", 0) == 0
    assert report["timed_out"] == 0
    assert len(emu.products(sid)) == n
    sent = uploads(emu, sid)
    assert all(r.status == 200 for r in sent)
    assert 0 < report["link_mb_per_s"] <= 1.3  # what the link gave: never over its bandwidth
    if codec == "none":
        # Measured after the first: the rest went as requests of about 1 s or less.
        assert max(r.size for r in sent[1:]) <= 1.2 * MB
        assert sum(r.products for r in sent) == n
        assert len(sent) > n / 1500 + 1  # more requests than chunks: they were cut


async def test_a_link_that_slows_down_mid_run_loses_nothing_and_recovers(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(emulator_config(uplink_bytes_per_s=4 * MB))
    sid = emu.create_stream("slowing")
    n = 6_000
    cat = catalog(tmp_path / "c.ndjson", n)
    task = asyncio.ensure_future(
        push(
            emu,
            sid,
            cat,
            max_products_per_request=1000,
            compression=CompressionOptions(codec="none"),
        )
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len(emu.products(sid)) < 2_000 and not task.done():
        assert loop.time() < deadline, "the push did not get going"
        await asyncio.sleep(0.02)
    emu.set_uplink(0.5 * MB)  # what is in flight now needs 8x longer
    slowed_at = emu.requests(sid)[-1].time
    report = await asyncio.wait_for(task, 60)
    assert report["accepted"] == n and report["balanced"], report
    assert len(emu.products(sid)) == n
    sent = uploads(emu, sid)
    # The requests in flight when the link slowed may time out (and are sent
    # again); from two time limits on, every request ends in time.
    settled = [r for r in sent if r.time > slowed_at + 2 * LIMIT_S]
    assert settled, "no request after the link settled"
    assert [r.status for r in settled if r.status != 200] == []
    assert report["timed_out"] == emu.counters(sid).get("timed_out", 0)
    # ... as smaller requests than before: they follow the link.
    assert max(r.size for r in settled) < 1000 * 1000


async def test_a_referenced_stream_too_slow_for_its_minimum_says_so_once(
    emulator_factory: EmulatorFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The referenced minimum (scaled: 1 MB) takes 1.25 s alone at 0.8 MB/s, over
    # the 1 s target: requests cannot be cut smaller, so the push says what to
    # do. They still end within the server's 2 s, one at a time.
    emu = await emulator_factory(
        emulator_config(uplink_bytes_per_s=0.8 * MB, referenced_min_bytes=1 * MB)
    )
    sid = emu.create_stream("too-slow", stream_type="referenced")
    cat = catalog(tmp_path / "c.ndjson", 3_300)
    caplog.set_level(logging.WARNING, logger="bulkpush")
    report = await push(
        emu,
        sid,
        cat,
        stream_type="referenced",
        referenced_min_bytes=1 * MB,
        request_bytes=1_100_000,
        compression=CompressionOptions(codec="none"),
    )
    assert report["accepted"] == 3_300 and report["balanced"], report
    said = [r.getMessage() for r in caplog.records if "uplink carries" in r.getMessage()]
    assert len(said) == 1, said
    assert "cannot be smaller than 1 MB" in said[0]
    assert "--compression gzip" in said[0]
    assert "chunked stream" in said[0]
    sent = uploads(emu, sid)
    assert all(r.size >= 1 * MB for r in sent)  # every request met the minimum
    assert report["timed_out"] == 0


def test_request_time_is_checked() -> None:
    from bulkpush.errors import ConfigError

    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="request_time_s"):
            PushOptions(request_time_s=bad)


def test_the_report_keys_are_json() -> None:
    # (merged job reports keep the largest part's link figure and sum the timeouts)
    from bulkpush.report import merge_reports

    merged = merge_reports(
        [
            {"read": 1, "accepted": 1, "timed_out": 2, "link_mb_per_s": 1.5},
            {"read": 1, "accepted": 1, "timed_out": 1, "link_mb_per_s": 3.0},
        ]
    )
    assert merged["timed_out"] == 3
    assert merged["link_mb_per_s"] == 3.0
    assert orjson.loads(orjson.dumps(merged))["timed_out"] == 3
