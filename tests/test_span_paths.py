"""The span fast path and the reading processes change nothing a user sees.

Each catalog is pushed three ways against the emulator over loopback: a
record per product (the path every other test knew), spans in this process,
and spans in reading processes (``workers=2``, segments of a few KB so that
products fall on both sides of segment boundaries). The reports, the rejects
files and the products the emulator stored must be the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import io
import itertools
import os
import signal
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

import bulkpush._engine as engine_module
import bulkpush._procs as procs
import bulkpush._reader as reader_module
from bulkpush import PushOptions, RunStopped, SourceError, StreamClient, ValidationOptions
from bulkpush._records import Outcome
from bulkpush.emulator import Emulator, EmulatorConfig
from bulkpush.sources import FileRange

from .conftest import TEST_TOKEN, EmulatorFactory

pytestmark = pytest.mark.timeout(120)

FAST = EmulatorConfig(tokens=frozenset({TEST_TOKEN}), products_rate=None, other_rate=None)

PATHS = ["records", "spans", "processes"]
_names = itertools.count()


def tricky_catalog(n: int = 3_000) -> bytes:
    """Good products with every kind of line the fast path must hand to the validator."""
    lines: list[bytes] = []
    for i in range(n):
        k = i % 50
        if k == 3:
            lines.append(b'{"id":"%d","t":"crlf"}\r' % i)  # CRLF line end
        elif k == 7:
            lines.append('{"id":"%d","t":"a\u2028b\u2029c"}'.encode() % i)
        elif k == 11:
            lines.append(b"")  # blank
        elif k == 13:
            lines.append(b'{"id":"%d","t":"nested","n":{"a":1}}' % i)
        elif k == 17:
            lines.append(b'{"t":"no id %d"}' % i)
        elif k == 19:
            lines.append(b'{"id":"%d","t":"bad \xff utf8"}' % i)
        elif k == 23:
            lines.append(b'  {"id":"%d","t":"spaces"}  ' % i)
        elif k == 29:
            lines.append(b'{"id":"%d","t":"[brackets] {braces}"}' % i)
        elif k == 31:
            lines.append(b'{"id":"%d","t":"syntax error"' % i)
        elif k == 37:
            lines.append(b'{"id":%d,"t":"numeric id"}' % i)
        else:
            lines.append(b'{"id":"%d","t":"product %d","price":%d.5}' % (i, i, i))
    # The last line has no line end.
    return b"\xef\xbb\xbf" + b"\n".join(lines)


def _tiny_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(procs, "MIN_SEGMENT", 8_000)
    monkeypatch.setattr(procs, "MAX_SEGMENT", 16_000)
    # A stream (compressed file, stdin) goes in segments of this many bytes.
    monkeypatch.setattr(reader_module, "STREAM_SEGMENT", 20_000)


def _options(path: str, **kw: Any) -> PushOptions:
    if path == "processes":
        return PushOptions(workers=2, process_min_bytes=0, **kw)
    return PushOptions(workers=1, **kw)


def _records_only(monkeypatch: pytest.MonkeyPatch) -> None:
    real = engine_module.PipelineSettings

    def settings(**kw: Any) -> Any:
        return real(**kw, spans=False)

    monkeypatch.setattr(engine_module, "PipelineSettings", settings)


async def _push(
    emu: Emulator, path: str, source: Any, tmp: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any
) -> tuple[dict[str, Any], list[Any], dict[str, bytes]]:
    with monkeypatch.context() as m:
        if path == "records":
            _records_only(m)
        if path == "processes":
            _tiny_segments(m)
        sid = emu.create_stream(f"paths-{path}-{next(_names)}")
        rejects = tmp / f"rejects-{path}.ndjson"
        opts = _options(path, rejects_path=str(rejects), **kw)
        async with StreamClient(token=TEST_TOKEN, api_url=emu.url) as client:
            report = await client.push(source, stream=sid, options=opts)
    data = report.to_dict()
    lines = [orjson.loads(x) for x in rejects.read_bytes().splitlines()] if rejects.exists() else []
    return data, lines, emu.products(sid)


def _same(reports: dict[str, tuple[dict[str, Any], list[Any], dict[str, bytes]]]) -> None:
    """The same counts, rejections and stored products on every path.

    Reading processes cut chunks at segment ends too (each segment's last
    chunk is short): the API then names different examples of the rejections
    it makes itself (one per message per request), so for them only the
    client's own rejections are compared one by one.
    """
    base_report, base_rejects, base_stored = reports["records"]
    keys = ("read", "accepted", "rejected", "not_sent")
    for path, (report, rejects, stored) in reports.items():
        assert {k: report.get(k) for k in keys} == {k: base_report.get(k) for k in keys}, path
        assert stored == base_stored, path
        if path == "processes":
            assert _ordered(_client(rejects)) == _ordered(_client(base_rejects)), path
            assert _client(report["errors"]) == _client(base_report["errors"]), path
            occurrences = {(e["stage"], e["message"]): e["occurrences"] for e in report["errors"]}
            base = {(e["stage"], e["message"]): e["occurrences"] for e in base_report["errors"]}
            assert occurrences == base, path
        else:
            assert _ordered(rejects) == _ordered(base_rejects), path
            assert report["errors"] == base_report["errors"], path
    assert base_report["read"] == base_report["accepted"] + base_report["rejected"]


def _ordered(rejects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The rejects file is in the order the answers came (requests run concurrently).
    return sorted(rejects, key=lambda r: (r["source"], r["line"], r["stage"]))


def _client(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["stage"] == "client"]


@pytest.mark.parametrize("level", ["full", "light"])
async def test_every_path_reports_rejects_and_stores_the_same(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    emu = await emulator_factory(FAST)
    cat = tmp_path / "tricky.ndjson"
    cat.write_bytes(tricky_catalog())
    validation = ValidationOptions(level=level)  # type: ignore[arg-type]
    reports = {
        p: await _push(emu, p, str(cat), tmp_path, monkeypatch, validation=validation)
        for p in PATHS
    }
    _same(reports)
    report, rejects, stored = reports["processes"]
    # Light validation leaves some rejections to the API: named by line, mapped back.
    stages = {r["stage"] for r in rejects}
    assert stages == ({"client"} if level == "full" else {"client", "upload"})
    assert report["rejected"] > 0 and len(stored) == report["accepted"]
    by_line = {r["line"]: r for r in rejects}
    missing_id = 17 + 1  # the line of the product numbered 17
    assert by_line[missing_id]["stage"] == "client"
    nested, bad_utf8 = 13 + 1, 19 + 1
    if level == "full":
        assert by_line[nested]["id"] == "13"
    else:  # light passes it; the emulator takes nested values
        assert nested not in by_line and "13" in stored
        assert by_line[bad_utf8]["stage"] == "upload"  # named by the API, mapped back
    assert b"\r" not in stored["3"]  # CRLF normalised
    assert stored["7"] == '{"id":"7","t":"a\u2028b\u2029c"}'.encode()


async def test_the_last_line_without_a_line_end_and_a_bom_are_read_on_every_path(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = await emulator_factory(FAST)
    cat = tmp_path / "c.ndjson"
    cat.write_bytes(b'\xef\xbb\xbf{"id":"a"}\n{"id":"b"}\n\n{"id":"c"}')
    reports = {p: await _push(emu, p, str(cat), tmp_path, monkeypatch) for p in PATHS}
    _same(reports)
    assert set(reports["processes"][2]) == {"a", "b", "c"}


@pytest.mark.parametrize(
    "kind", ["bytesio", "gzip", "zstd", "json", "csv", "iterable", "range", "two-files"]
)
async def test_every_source_kind_gives_the_same_on_every_path(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    import zstandard

    emu = await emulator_factory(FAST)
    body = tricky_catalog(600)
    plain = tmp_path / "c.ndjson"
    plain.write_bytes(body)

    def source() -> Any:
        if kind == "bytesio":
            return io.BytesIO(body)
        if kind == "gzip":
            p = tmp_path / "c.ndjson.gz"
            p.write_bytes(gzip.compress(body))
            return str(p)
        if kind == "zstd":
            p = tmp_path / "c.ndjson.zst"
            p.write_bytes(zstandard.ZstdCompressor().compress(body))
            return str(p)
        if kind == "json":
            p = tmp_path / "c.json"
            p.write_bytes(b"[" + b",".join(b'{"id":"%d"}' % i for i in range(500)) + b"]")
            return str(p)
        if kind == "csv":
            p = tmp_path / "c.csv"
            p.write_bytes(b"id,t\n" + b"".join(b"%d,x\n" % i for i in range(500)))
            return str(p)
        if kind == "iterable":
            return [{"id": str(i), "t": "x"} for i in range(500)] + [{"t": "no id"}]
        if kind == "range":
            return FileRange(str(plain), start=len(body) // 3, end=2 * len(body) // 3, first_line=1)
        return [str(plain), str(plain)]

    reports = {p: await _push(emu, p, source(), tmp_path, monkeypatch) for p in PATHS}
    _same(reports)


async def test_a_truncated_gzip_read_by_processes_sends_its_whole_lines_then_stops(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = await emulator_factory(FAST)
    body = b"".join(b'{"id":"%d","t":"%s"}\n' % (i, b"y" * (i % 90)) for i in range(20_000))
    whole = gzip.compress(body)
    cat = tmp_path / "cut.ndjson.gz"
    cat.write_bytes(whole[: len(whole) * 2 // 3])
    intact = zlib.decompressobj(31).decompress(cat.read_bytes())
    lines = intact.count(b"\n")  # the whole lines before the cut
    for path in ("spans", "processes"):
        with monkeypatch.context() as m:
            _tiny_segments(m)
            sid = emu.create_stream(f"cut-{path}")
            async with StreamClient(token=TEST_TOKEN, api_url=emu.url) as client:
                with pytest.raises(RunStopped) as stopped:
                    await client.push(str(cat), stream=sid, options=_options(path))
        assert "truncated" in str(stopped.value.cause)
        report = stopped.value.report
        assert report.read == report.accepted == len(emu.products(sid)) == lines, path


async def test_a_reading_process_that_dies_stops_the_run_cleanly(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Requests paced at 30/s of 100 products: the run lasts long enough to kill a process.
    emu = await emulator_factory(EmulatorConfig(tokens=frozenset({TEST_TOKEN})))
    sid = emu.create_stream("dying-reader")
    cat = tmp_path / "c.ndjson"
    cat.write_bytes(b"".join(b'{"id":"%d","t":"%s"}\n' % (i, b"x" * 50) for i in range(40_000)))
    monkeypatch.setattr(procs, "MIN_SEGMENT", 60_000)
    monkeypatch.setattr(procs, "MAX_SEGMENT", 60_000)
    opts = PushOptions(workers=2, process_min_bytes=0, max_products_per_request=100)
    outcomes: list[Outcome] = []
    async with StreamClient(token=TEST_TOKEN, api_url=emu.url) as client:
        pipeline = await client.engine.open_push(client.target(sid), [str(cat)], options=opts)
        with pytest.raises(RunStopped) as stopped:
            async for event in pipeline.events():
                if isinstance(event, Outcome):
                    outcomes.append(event)
                    if len(outcomes) == 3:
                        reader = pipeline._reader
                        assert reader is not None and reader.procs is not None
                        pool = reader.procs._pool
                        assert pool is not None
                        for pid in list(pool._processes):  # type: ignore[attr-defined]
                            os.kill(pid, signal.SIGKILL)
    cause = stopped.value.cause
    assert isinstance(cause, SourceError)
    assert "a reading process ended unexpectedly" in str(cause)
    report = stopped.value.report
    assert 0 < report.read < 40_000
    assert report.read == report.accepted + report.rejected + report.not_sent
    # Nothing counted accepted that the API did not answer 2xx, nothing stored uncounted.
    assert report.accepted == len(emu.products(sid))
    await asyncio.sleep(0)


async def test_reading_processes_map_api_named_lines_back_to_the_source(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = await emulator_factory(FAST)
    cat = tmp_path / "c.ndjson"
    # Light validation passes invalid UTF-8; the API names such products by line
    # (one per message per request: requests of 50 hold one each).
    rows = [
        b'{"id":"%d","t":"\xff"}' % i if i % 97 == 5 else b'{"id":"%d"}' % i for i in range(5_000)
    ]
    cat.write_bytes(b"\n".join(rows) + b"\n")
    light = ValidationOptions(level="light")
    report, rejects, stored = await _push(
        emu,
        "processes",
        str(cat),
        tmp_path,
        monkeypatch,
        validation=light,
        max_products_per_request=50,
    )
    bad = [i for i in range(5_000) if i % 97 == 5]
    # (The rejects file is in the order the answers came: requests run concurrently.)
    assert sorted((r["line"], r["id"], r["stage"]) for r in rejects) == [
        (i + 1, str(i), "upload") for i in bad
    ]
    assert report["accepted"] == len(stored) == 5_000 - len(bad)


def test_workers_must_be_sane() -> None:
    from bulkpush.errors import ConfigError

    with pytest.raises(ConfigError, match="workers"):
        PushOptions(workers=0)
    assert dataclasses.replace(PushOptions(), workers=3).workers == 3


async def test_where_processes_cannot_start_the_catalog_is_read_here(
    emulator_factory: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A sandbox without /dev/shm: multiprocessing cannot make its semaphores.
    def no_pool(*args: Any, **kwargs: Any) -> Any:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(procs, "ProcessPoolExecutor", no_pool)
    emu = await emulator_factory(FAST)
    cat = tmp_path / "c.ndjson"
    cat.write_bytes(tricky_catalog(2_000))
    reports = {
        "records": await _push(emu, "records", str(cat), tmp_path, monkeypatch),
        "processes": await _push(emu, "processes", str(cat), tmp_path, monkeypatch),
    }
    _same(reports)
    assert "the reading processes (--workers 2) could not start" in caplog.text


async def test_a_named_pipe_is_read_whole_on_every_path(
    emulator_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # bulkpush push <(zcat catalog.gz): nothing may be read from the pipe to sniff it.
    import threading

    emu = await emulator_factory(FAST)
    body = tricky_catalog(1_500)
    results = {}
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # the same name every time: it is the source the reports name
    for path in PATHS:

        def feed() -> None:
            with open(fifo, "wb") as f:
                f.write(body)

        # A daemon: were the push to fail before opening the pipe, the writer
        # would wait in open() for ever and keep the test process from ending.
        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        try:
            results[path] = await _push(emu, path, str(fifo), tmp_path, monkeypatch)
        finally:
            writer.join(10)
    _same(results)
    assert results["processes"][0]["read"] == results["records"][0]["read"] > 1_400
