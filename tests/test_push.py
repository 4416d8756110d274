"""The push, end to end, over real loopback HTTP against the emulator.

Each test proves one of the guarantees README.md states ("The report, the
rejects file, exit codes"; "How it sends: limits, concurrency, retries") or
one row of its retry table: products arrive exactly as sent, the accounting
balances after any failure, published limits are never exceeded, rejected
products are named with their source line, the token never shows.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkpush import ConcurrencyOptions, Pacer, RetryPolicy
from bulkpush._compression import CompressionOptions
from bulkpush._progress import LiveProgress
from bulkpush._records import Outcome, Rejection
from bulkpush._validation import ValidationOptions
from bulkpush.client import PushOptions, StreamClient
from bulkpush.emulator import Emulator, EmulatorConfig, Faults
from bulkpush.errors import (
    AuthError,
    CatalogTooSmall,
    NotFound,
    RetriesExhausted,
    RunStopped,
    StreamDisabled,
    StreamLocked,
)
from bulkpush.report import Report
from bulkpush.samples import iter_products, write_catalog

TOKEN = "test-token-S3CR3T-value"

EmulatorFactory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def emu_factory() -> AsyncIterator[Callable[..., Awaitable[Emulator]]]:
    started: list[Emulator] = []

    async def make(**kwargs: Any) -> Emulator:
        kwargs.setdefault("tokens", frozenset({TOKEN}))
        emu = Emulator(EmulatorConfig(**kwargs))
        await emu.__aenter__()
        started.append(emu)
        return emu

    yield make
    for emu in reversed(started):
        await emu.__aexit__(None, None, None)


def fast_retry(**kw: Any) -> RetryPolicy:
    base: dict[str, Any] = dict(
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        lock_backoff_base_s=0.05,
        lock_backoff_max_s=0.2,
        deadline_s=60.0,
        max_attempts=10,
    )
    base.update(kw)
    return RetryPolicy(**base)


def assert_balanced(report: Report) -> None:
    assert report.read == report.accepted + report.rejected + report.not_sent, report.to_dict()


def lines_of(path: Path) -> list[bytes]:
    return [ln for ln in path.read_bytes().split(b"\n") if ln.strip()]


async def test_products_arrive_exactly_as_sent(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("exact", "chunked")
    catalog = tmp_path / "c.ndjson"
    write_catalog(catalog, 5_000, seed=1)
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push(
            str(catalog), stream=sid, options=PushOptions(max_products_per_request=700)
        )
    sent = {orjson.loads(ln)["id"]: ln for ln in lines_of(catalog)}
    assert emu.products(sid) == sent
    assert report.accepted == 5_000 and report.rejected == 0 and report.not_sent == 0
    assert report.requests == 8 and len(report.batches) == 8
    assert_balanced(report)


@pytest.mark.slow
async def test_a_million_products_arrive_exactly(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()  # the exact published limits
    sid = emu.create_stream("million", "chunked")
    catalog = tmp_path / "m.ndjson"
    write_catalog(catalog, 1_000_000, seed=7, size="small")
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push(str(catalog), stream=sid)
    assert report.accepted == 1_000_000 and report.throttled == 0
    assert_balanced(report)
    stored = emu.products(sid)
    assert len(stored) == 1_000_000
    with catalog.open("rb") as fh:
        for raw in fh:
            line = raw.rstrip(b"\n")
            assert stored[orjson.loads(line)["id"]] == line
    assert max(emu.upload_counts(sid).values()) == 1


async def test_client_rejections_name_the_source_line(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("lines", "chunked")
    good = list(iter_products(50, seed=3, size="small"))
    bad = {
        7: b'{"id":"x7","title":"broken",}',
        13: b'{"title":"no id"}',
        21: b'{"id":"","title":"empty id"}',
        34: b'{"id":"n34","dims":{"w":1}}',
        40: b'["not", "an", "object"]',
    }
    lines = [bad.get(i, good[i - 1]) for i in range(1, 51)]
    catalog = tmp_path / "mixed.ndjson"
    catalog.write_bytes(b"\n".join(lines) + b"\n")
    rejects = tmp_path / "rejects.ndjson"
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push(
            str(catalog), stream=sid, options=PushOptions(rejects_path=str(rejects))
        )
    assert report.rejected == 5 and report.accepted == 45
    assert_balanced(report)
    found = {ex["line"] for e in report.to_dict()["errors"] for ex in e["examples"]}
    assert found == set(bad)
    rows = [orjson.loads(ln) for ln in lines_of(rejects)]
    assert sorted(r["line"] for r in rows) == sorted(bad)
    assert all(r["source"] == str(catalog) and r["stage"] == "client" for r in rows)
    assert len(emu.products(sid)) == 45


def _api_invalid_catalog(path: Path) -> dict[int, str]:
    """200 products; the API (not the client, in light mode) rejects 12 of them."""
    good = list(iter_products(200, seed=5, size="small"))
    bad_lines: dict[int, str] = {}
    lines = []
    for i, product in enumerate(good, 1):
        if i % 17 == 0:
            lines.append(b'{"id":"bad-%d","title":"x","price":15", "size":"XL"}' % i)
            bad_lines[i] = "Syntax error"
        else:
            lines.append(product)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return bad_lines


async def test_partial_upload_maps_api_errors_and_counts_the_unnamed(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("partial", "chunked")
    catalog = tmp_path / "p.ndjson"
    bad = _api_invalid_catalog(catalog)
    opts = PushOptions(validation=ValidationOptions(level="light"), max_products_per_request=100)
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push(str(catalog), stream=sid, options=opts)
    d = report.to_dict()
    assert report.rejected == len(bad) and report.accepted == 200 - len(bad)
    assert_balanced(report)
    # One example per message per request: 2 requests, so 2 named, the rest counted.
    (err,) = [e for e in d["errors"] if e["stage"] == "upload"]
    assert err["message"] == "Syntax error" and err["occurrences"] == len(bad)
    assert {ex["line"] for ex in err["examples"]} <= set(bad)
    assert sum(u["count"] for u in d["unattributed"]) == len(bad) - 2
    for u in d["unattributed"]:
        assert u["first_line"] in (1, 101) and u["last_line"] in (100, 200)


async def test_pinpoint_rejects_finds_every_rejected_product(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("pinpoint", "chunked")
    catalog = tmp_path / "p.ndjson"
    bad = _api_invalid_catalog(catalog)
    rejects = tmp_path / "r.ndjson"
    opts = PushOptions(
        validation=ValidationOptions(level="light"),
        max_products_per_request=100,
        pinpoint_rejects=True,
        rejects_path=str(rejects),
    )
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push(str(catalog), stream=sid, options=opts)
    d = report.to_dict()
    assert d["unattributed"] == []
    assert sorted(orjson.loads(ln)["line"] for ln in lines_of(rejects)) == sorted(bad)
    assert d["pinpoint"]["requests"] > 0
    assert report.rejected == len(bad)
    assert_balanced(report)


@pytest.mark.parametrize(
    "faults",
    [
        Faults(error_rate=0.3),
        Faults(drop_rate=0.3),
        Faults(throttle_storm_s=1.0),
        Faults(lock_s=1.0),
    ],
    ids=["5xx", "dropped", "429-storm", "lock-window"],
)
async def test_faults_lose_nothing(
    emu_factory: EmulatorFactory, tmp_path: Path, faults: Faults
) -> None:
    emu = await emu_factory(seed=11)
    sid = emu.create_stream("faults", "chunked")
    catalog = tmp_path / "f.ndjson"
    lines = list(iter_products(3_000, seed=2, size="small"))
    lines[99] = b'{"id":"bad","title":"x",}'
    catalog.write_bytes(b"\n".join(lines) + b"\n")
    opts = PushOptions(max_products_per_request=100, retry=fast_retry())
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        pipeline = await client.open_push(str(catalog), stream=sid, options=opts)
        async for event in pipeline.events():
            # The fault starts once uploads are under way (not during the preflight).
            if isinstance(event, Outcome) and event.chunk.seq == 0:
                emu.set_faults(sid, faults)
        report = pipeline.report
    assert_balanced(report)
    assert report.accepted == 2_999 and report.rejected == 1 and report.not_sent == 0
    assert len(emu.products(sid)) == 2_999
    assert report.retries > 0 or report.throttled > 0
    counters = emu.counters(sid)
    assert report.throttled == counters.get("throttled", 0)


async def test_a_429_slows_the_stream_pacer_down(emu_factory: EmulatorFactory) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("slowed", "chunked")
    products = list(iter_products(800, seed=5, size="small"))
    opts = PushOptions(max_products_per_request=50, retry=fast_retry())
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        pipeline = await client.open_push(products, stream=sid, options=opts)
        async for event in pipeline.events():
            if isinstance(event, Outcome) and event.chunk.seq == 0:
                emu.set_faults(sid, Faults(throttle_storm_s=0.3))
        pacer = pipeline.sender.pacer  # type: ignore[attr-defined]
        slowed = pacer.rate
        # The next push to the stream keeps the slowed pacer (the API's windows
        # and the jitter are the same).
        await asyncio.sleep(0.4)
        again = await client.open_push(products[:10], stream=sid, options=opts)
        await again.run()
        assert again.sender.pacer is pacer and pacer.rate == pytest.approx(slowed, rel=1e-3)
    assert pipeline.report.accepted == 800
    assert pipeline.report.throttled > 0
    # Paced requests answered 429 mean jitter bunched them: the pacer now runs
    # slower than it was asked to, and not below its floor.
    assert pacer.target_rate is not None and pacer.rate is not None
    assert pacer.target_rate * Pacer.FLOOR <= pacer.rate < pacer.target_rate


async def test_zero_429_at_the_exact_limits(emu_factory: EmulatorFactory) -> None:
    emu = await emu_factory()  # exact limits: 30 requests/s per stream on /products
    sid = emu.create_stream("steady", "chunked")
    products = list(iter_products(6_000, seed=4, size="small"))
    opts = PushOptions(max_products_per_request=50)  # 120 requests: 4 s at 30/s
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push(products, stream=sid, options=opts)
    assert report.requests == 120
    assert report.throttled == 0
    assert emu.counters(sid).get("throttled", 0) == 0
    assert report.accepted == 6_000


async def test_referenced_stream_balances_the_tail(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory(referenced_min_bytes=20_000)
    sid = emu.create_stream("referenced", "referenced")
    catalog = tmp_path / "ref.ndjson"
    size = write_catalog(catalog, 230, seed=9)  # about 230 KB
    opts = PushOptions(
        referenced_min_bytes=20_000,
        request_bytes=50_000,
        compression=CompressionOptions(codec="none"),
    )
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push(str(catalog), stream=sid, options=opts)
    assert report.accepted == 230 and report.not_sent == 0
    uploads = [r for r in emu.requests(sid) if r.method == "POST"]
    assert uploads and all(r.size >= 20_000 for r in uploads)
    assert sum(r.size for r in uploads) == size
    assert len(emu.products(sid)) == 230


async def test_referenced_stream_refuses_a_small_catalog(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("ref-small", "referenced")
    catalog = tmp_path / "small.ndjson"
    write_catalog(catalog, 100, seed=9)
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        with pytest.raises(CatalogTooSmall, match="chunked stream"):
            await client.push(str(catalog), stream=sid)
    assert [r for r in emu.requests(sid) if r.method == "POST"] == []


async def test_disabled_stream_stops_the_run_with_not_sent_counted(
    emu_factory: EmulatorFactory,
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("disabled", "chunked")
    emu.set_stream_status(sid, "disabled")
    products = list(iter_products(2_000, seed=4, size="small"))
    opts = PushOptions(max_products_per_request=100)
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        with pytest.raises(RunStopped) as info:
            await client.push(products, stream=sid, options=opts)
    assert isinstance(info.value.cause, StreamDisabled)
    report = info.value.report
    assert_balanced(report)
    assert report.accepted == 0 and report.not_sent == report.read > 0
    assert report.to_dict()["stopped"]


async def test_bad_token_fails_before_the_catalog_is_read(emu_factory: EmulatorFactory) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("auth", "chunked")
    touched = []

    def catalog() -> Iterator[dict[str, str]]:
        touched.append(True)
        yield {"id": "1", "title": "x"}

    async with StreamClient(token="wrong-token", api_url=emu.url) as client:
        with pytest.raises(AuthError):
            await client.push(catalog(), stream=sid)
    assert touched == []


async def test_unknown_stream_is_a_clear_error(emu_factory: EmulatorFactory) -> None:
    emu = await emu_factory()
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        with pytest.raises(NotFound, match="stream 999999 does not exist"):
            await client.push([{"id": "1", "a": "b"}], stream="999999")


async def test_the_token_appears_nowhere(
    emu_factory: EmulatorFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emu = await emu_factory()
    sid = emu.create_stream("secret", "chunked")
    catalog = tmp_path / "s.ndjson"
    _api_invalid_catalog(catalog)
    rejects = tmp_path / "r.ndjson"
    out = io.StringIO()
    from rich.console import Console

    progress = LiveProgress(console=Console(file=out, force_terminal=True))
    emu.set_faults(sid, Faults(error_rate=0.2))
    opts = PushOptions(
        rejects_path=str(rejects),
        validation=ValidationOptions(level="light"),
        retry=fast_retry(),
        max_products_per_request=50,
    )
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push(str(catalog), stream=sid, options=opts, progress=progress)
        assert TOKEN not in repr(client)
    report.write_json(tmp_path / "report.json")
    everything = "\n".join(
        [
            caplog.text,
            out.getvalue(),
            rejects.read_text(),
            (tmp_path / "report.json").read_text(),
            report.summary(),
            repr(report),
        ]
    )
    assert TOKEN not in everything
    # And the emulator's request log keeps no token either.
    assert all(TOKEN not in str(r) for r in emu.requests(sid))


async def test_stream_push_yields_outcomes_and_rejections(emu_factory: EmulatorFactory) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("streaming", "chunked")
    items: list[Any] = [{"id": str(i), "title": f"p{i}"} for i in range(300)]
    items[5] = {"title": "no id"}
    seen_outcomes = seen_rejections = 0
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        async for event in client.stream_push(
            items, stream=sid, options=PushOptions(max_products_per_request=100)
        ):
            if isinstance(event, Outcome):
                seen_outcomes += 1
                assert event.status == 200 and event.batch_id
            else:
                assert isinstance(event, Rejection)
                seen_rejections += 1
                assert event.record.line == 6
    assert seen_outcomes == 3 and seen_rejections == 1


async def test_gzip_and_zst_and_csv_and_json_sources(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    import zstandard

    emu = await emu_factory()
    sid = emu.create_stream("formats", "chunked")
    raw = b"\n".join(iter_products(100, seed=8, size="small")) + b"\n"
    (tmp_path / "a.ndjson.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "b.ndjson.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    objs = [orjson.loads(x) for x in raw.splitlines()]
    for o in objs:
        o["id"] = "json-" + o["id"]
    (tmp_path / "c.json").write_bytes(orjson.dumps(objs))
    (tmp_path / "d.csv").write_text("id,title,price\ncsv-1,Shirt,10 EUR\ncsv-2,,5 EUR\n")
    sources = [str(tmp_path / n) for n in ("a.ndjson.gz", "b.ndjson.zst", "c.json", "d.csv")]
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push(sources, stream=sid)
    assert report.accepted == 302
    stored = emu.products(sid)
    assert len(stored) == 202  # a and b hold the same 100 ids: upserted
    assert stored["SKU-000000042"] == raw.splitlines()[42]
    assert orjson.loads(stored["csv-2"]) == {"id": "csv-2", "price": "5 EUR"}


async def test_pushing_a_fixed_rejects_file_again(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("again", "chunked")
    catalog = tmp_path / "c.ndjson"
    catalog.write_bytes(b'{"id":"a","t":"1"}\n{"title":"no id"}\n{"id":"c","t":"3"}\n')
    rejects = tmp_path / "rejects.ndjson"
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        first = await client.push(
            str(catalog), stream=sid, options=PushOptions(rejects_path=str(rejects))
        )
        assert first.rejected == 1
        row = orjson.loads(rejects.read_bytes())
        row["product"]["id"] = "b"  # the fix
        fixed = tmp_path / "fixed.ndjson"
        fixed.write_bytes(orjson.dumps(row) + b"\n")
        second = await client.push(str(fixed), stream=sid)
    assert second.accepted == 1 and second.rejected == 0
    assert orjson.loads(emu.products(sid)["b"]) == {"id": "b", "title": "no id"}


async def test_stream_management_and_deletes(emu_factory: EmulatorFactory, tmp_path: Path) -> None:
    emu = await emu_factory(other_rate=None)
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        made = [await client.create_stream(f"stream number {i:02d}") for i in range(23)]
        listed = await client.list_streams()
        assert {s.id for s in listed} >= {s.id for s in made}
        assert len(listed) == 23
        renamed = await client.rename_stream(made[0].id, "a new name")
        assert renamed.name == "a new name" and renamed.type == "chunked"
        await client.delete_stream(made[1].id)
        assert len(await client.list_streams()) == 22
        sid = made[2].id
        odd_id = "475/SHIRT XL?&#"
        products = [{"id": f"p{i}", "t": "x"} for i in range(20)] + [{"id": odd_id, "t": "y"}]
        await client.push(products, stream=sid)
        await client.delete_product(sid, odd_id)
        assert odd_id not in emu.products(sid)
        await client.delete_products(sid, [f"p{i}" for i in range(5)])
        assert len(emu.products(sid)) == 15
        await client.delete_all_products(sid)
        assert emu.products(sid) == {}


async def test_batch_status_through_the_client(emu_factory: EmulatorFactory) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("batch", "chunked")
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push([{"id": "1", "a": "b"}], stream=sid)
        b = await client.batch(sid, report.batches[0])
    assert b.status == "uploaded" and b.error_count == 0
    assert b.stages["upload"]["successCount"] == 1


async def test_bounded_in_flight_does_not_read_ahead(emu_factory: EmulatorFactory) -> None:
    """Reading is back-pressured by sending: with the server slow, the reader
    stays within a few chunks of what has been answered (the in-flight byte
    budget, here about three chunks, plus the small queues between stages)."""
    emu = await emu_factory(latency_s=0.3)
    sid = emu.create_stream("backpressure", "chunked")
    read = 0

    def catalog() -> Iterator[bytes]:
        nonlocal read
        for line in iter_products(4_000, seed=1, size="small"):
            read += 1
            yield line

    max_ahead = 0
    opts = PushOptions(
        max_products_per_request=100,
        concurrency=ConcurrencyOptions(initial=2, maximum=2, inflight_bytes=40_000),
    )
    answered = 0
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        async for event in client.stream_push(catalog(), stream=sid, options=opts):
            if isinstance(event, Outcome):
                answered += len(event.chunk)
                max_ahead = max(max_ahead, read - answered)
    # ~3 chunks in flight, 2 queued per stage, 2 in the compressors' hands, the
    # reader's step and the chunker's partial chunk: far less than the catalog.
    assert max_ahead <= 12 * 100
    assert answered == 4_000


async def test_cli_exit_codes(emu_factory: EmulatorFactory, tmp_path: Path) -> None:
    emu = await emu_factory()
    ok_sid = emu.create_stream("cli ok", "chunked")
    off_sid = emu.create_stream("cli off", "chunked")
    emu.set_stream_status(off_sid, "disabled")
    good = tmp_path / "good.ndjson"
    write_catalog(good, 300, seed=1, size="small")
    mixed = tmp_path / "mixed.ndjson"
    mixed.write_bytes(good.read_bytes() + b'{"title":"no id"}\n')
    env = {**os.environ, "BULKPUSH_TOKEN": TOKEN, "BULKPUSH_API_URL": emu.url}

    async def run(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bulkpush", *args,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    report = tmp_path / "report.json"
    code, out, err = await run("push", str(good), "--stream", ok_sid, "--report", str(report), "-q")
    assert code == 0, err
    assert orjson.loads(report.read_bytes())["accepted"] == 300
    code, out, err = await run("push", str(mixed), "--stream", ok_sid)
    assert code == 1, err
    assert "no id" in out or "id" in out
    code, out, err = await run("push", str(tmp_path / "missing.ndjson"), "--stream", ok_sid)
    assert code == 2 and "missing.ndjson" in err
    code, out, err = await run("push", str(good), "--stream", ok_sid, "--rate", "-1")
    assert code == 2
    code, out, err = await run("push", str(good), "--stream", off_sid, "-q")
    assert code == 3 and "403" in err
    code, out, err = await run("push", str(good), "--stream", ok_sid, "--token", "nope")
    assert code == 3 and "401" in err
    for text in (out, err):
        assert TOKEN not in text
    code, out, err = await run("streams", "list", "--json")
    assert code == 0 and {s["id"] for s in orjson.loads(out)} == {ok_sid, off_sid}
    code, out, err = await run("delete", "--stream", ok_sid, "--all")
    assert code == 2 and "--yes" in err
    code, out, err = await run("delete", "--stream", ok_sid, "--all", "--yes")
    assert code == 0 and emu.products(ok_sid) == {}


async def test_a_lock_past_the_deadline_stops_the_run(emu_factory: EmulatorFactory) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("locked", "chunked")
    emu.set_stream_status(sid, "locked")
    products = [{"id": str(i), "t": "x"} for i in range(500)]
    opts = PushOptions(max_products_per_request=100, retry=fast_retry(lock_deadline_s=0.5))
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        with pytest.raises(RunStopped) as info:
            await client.push(products, stream=sid, options=opts)
    assert isinstance(info.value.cause, StreamLocked)
    report = info.value.report
    assert_balanced(report)
    assert report.accepted == 0 and report.not_sent == 500
    assert report.retries > 0  # it did wait and retry before giving up


async def test_retries_exhausted_stops_the_run(emu_factory: EmulatorFactory) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("down", "chunked")
    products = [{"id": str(i), "t": "x"} for i in range(300)]
    opts = PushOptions(max_products_per_request=100, retry=fast_retry(max_attempts=3))
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        pipeline = await client.open_push(products, stream=sid, options=opts)
        emu.set_faults(sid, Faults(error_rate=1.0))
        with pytest.raises(RunStopped) as info:
            await pipeline.run()
    assert isinstance(info.value.cause, RetriesExhausted)
    report = info.value.report
    assert_balanced(report)
    assert report.not_sent == 300 and report.requests >= 3


async def test_413_splits_the_chunk_and_nothing_is_lost(emu_factory: EmulatorFactory) -> None:
    emu = await emu_factory(max_request_bytes=20_000)
    sid = emu.create_stream("split", "chunked")
    products = list(iter_products(400, seed=6, size="small"))
    opts = PushOptions(max_products_per_request=400, compression=CompressionOptions(codec="none"))
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push(products, stream=sid, options=opts)
    assert report.accepted == 400 and report.not_sent == 0
    assert_balanced(report)
    statuses = [r.status for r in emu.requests(sid) if r.method == "POST"]
    assert 413 in statuses and statuses.count(200) >= 2
    assert len(emu.products(sid)) == 400


async def test_stdin_source_through_the_cli(emu_factory: EmulatorFactory, tmp_path: Path) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("stdin", "chunked")
    data = b"\n".join(iter_products(250, seed=3, size="small")) + b"\n"
    env = {**os.environ, "BULKPUSH_TOKEN": TOKEN, "BULKPUSH_API_URL": emu.url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkpush", "push", "-", "--stream", sid, "-q",
        env=env, stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(data), 60)
    assert proc.returncode == 0, err
    assert len(emu.products(sid)) == 250


async def test_a_list_of_ndjson_strings_is_a_catalog_not_a_list_of_paths(
    emu_factory: EmulatorFactory,
) -> None:
    # An iterable of NDJSON lines (str) is a documented source; a list of them
    # used to be read as file paths.
    emu = await emu_factory()
    sid = emu.create_stream("lines", "chunked")
    lines = ['{"id":"2","a":"b"}', '  {"id":"3","a":"c"}', b'{"id":"4","a":"d"}']
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push(lines, stream=sid)
        assert report.accepted == 3 and report.rejected == 0
        assert set(emu.products(sid)) == {"2", "3", "4"}
        # A list of paths is still several files.
        with pytest.raises(RunStopped) as info:
            await client.push(["/no/such/a.ndjson", "/no/such/b.ndjson"], stream=sid)
        assert "a.ndjson" in str(info.value.cause)


async def test_csv_delimiter_reaches_the_reader(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    # The header's commas outnumber its semicolons, so sniffing alone would pick
    # ","; the option says ";".
    emu = await emu_factory()
    sid = emu.create_stream("csv-delim", "chunked")
    path = tmp_path / "c.csv"
    path.write_text("id;t,x,y\nA;1,2,3\nB;4,5,6\n", encoding="utf-8")
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push(str(path), stream=sid, options=PushOptions(csv_delimiter=";"))
    assert report.accepted == 2 and set(emu.products(sid)) == {"A", "B"}
