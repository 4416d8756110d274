"""The core's hooks for drivers such as the worker: byte-range sources, a per-record
callback, a clean early stop, and a pacer factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkpush import Pacer, Quota
from bulkpush._records import Outcome, Record, Rejection
from bulkpush.client import PushOptions, StreamClient
from bulkpush.emulator import EmulatorConfig
from bulkpush.sources import FileRange, split_ranges

from .conftest import TEST_TOKEN, EmulatorFactory

pytestmark = pytest.mark.timeout(60)

FAST = EmulatorConfig(tokens=frozenset({TEST_TOKEN}), products_rate=None, other_rate=None)


def catalog(path: Path, n: int, *, trailing_newline: bool = True) -> Path:
    body = b"\n".join(b'{"id":"%d","t":"p"}' % i for i in range(n))
    path.write_bytes(body + (b"\n" if trailing_newline else b""))
    return path


@pytest.mark.parametrize("trailing_newline", [True, False])
def test_file_ranges_partition_the_records_with_file_positions(
    tmp_path: Path, trailing_newline: bool
) -> None:
    cat = catalog(tmp_path / "c.ndjson", 1000, trailing_newline=trailing_newline)
    whole = [r for r in FileRange(str(cat)).records() if isinstance(r, Record)]
    parts = [
        r
        for start, end, line in split_ranges(cat, 7)
        for r in FileRange(str(cat), start=start, end=end, first_line=line).records()
    ]
    assert [(r.offset, r.line, r.raw) for r in parts] == [(r.offset, r.line, r.raw) for r in whole]
    assert all(r.source == str(cat) for r in parts)


def test_a_file_range_resumes_after_a_checkpoint_inside_a_line(tmp_path: Path) -> None:
    cat = catalog(tmp_path / "c.ndjson", 100)
    recs = [r for r in FileRange(str(cat)).records() if isinstance(r, Record)]
    last = recs[41]  # a checkpoint after this record is offset + 1, line + 1
    rest = list(FileRange(str(cat), start=last.offset + 1, first_line=last.line + 1).records())
    assert [r.raw for r in rest if isinstance(r, Record)] == [r.raw for r in recs[42:]]
    assert rest[0].line == 43


async def test_on_record_sees_every_record_in_order_including_rejected(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("hooks-on-record")
    cat = tmp_path / "c.csv"
    cat.write_bytes(b'id,t\n1,a\n2,"broken\n3,c\n4,d\n')  # a CSV rejection by the source itself
    seen: list[Record] = []
    async with StreamClient(token=TEST_TOKEN, api_url=emu.url) as client:
        pipeline = await client.open_push(cat, stream=sid, on_record=seen.append)
        events = [e async for e in pipeline.events()]
    records = [r for e in events if isinstance(e, Outcome) for r in e.chunk.records]
    records += [e.record for e in events if isinstance(e, Rejection)]
    assert {id(r) for r in records} == {id(r) for r in seen}  # the same objects
    assert [r.line for r in seen] == sorted(r.line for r in seen)
    assert len(seen) == pipeline.report.read


async def test_stop_reading_sends_what_was_read_and_ends_cleanly(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("hooks-stop")
    cat = catalog(tmp_path / "c.ndjson", 50_000)
    options = PushOptions(max_products_per_request=100)
    async with StreamClient(token=TEST_TOKEN, api_url=emu.url) as client:
        pipeline = await client.open_push(
            cat, stream=sid, options=options, on_record=lambda _: pipeline.stop_reading()
        )
        report = await pipeline.run()
    assert pipeline.reading_stopped
    assert 0 < report.read <= 200  # the step in progress ends at its first chunk
    assert report.accepted == report.read == len(emu.products(sid))
    assert report.not_sent == 0 and report.to_dict()["balanced"]


async def test_stop_reading_after_the_end_is_not_an_early_stop(
    emulator_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("hooks-stop-late")
    cat = catalog(tmp_path / "c.ndjson", 10)
    async with StreamClient(token=TEST_TOKEN, api_url=emu.url) as client:
        pipeline = await client.open_push(cat, stream=sid)
        report = await pipeline.run()
        pipeline.stop_reading()
    assert not pipeline.reading_stopped and report.accepted == 10


async def test_pacer_factory_makes_one_pacer_per_stream_and_rate(
    emulator_factory: EmulatorFactory,
) -> None:
    emu = await emulator_factory(FAST)
    sid = emu.create_stream("hooks-pacer")
    made: list[tuple[str, float]] = []

    def factory(quota: Quota, rate: float) -> Pacer:
        made.append((quota.key, rate))
        return Pacer(rate)

    products = [{"id": str(i)} for i in range(10)]
    async with StreamClient(token=TEST_TOKEN, api_url=emu.url, pacer_factory=factory) as client:
        await client.push(products, stream=sid, options=PushOptions(rate=200.0))
        await client.push(products, stream=sid, options=PushOptions(rate=200.0))
        await client.push(products, stream=sid, options=PushOptions(rate=100.0))
    key = f"productsup-stream:{sid}:products"
    assert made == [(key, 200.0), (key, 100.0)]
