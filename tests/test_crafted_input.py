"""Trust boundaries: what one crafted line, row, element or connection can do.

Each test reproduces a failure of the issue "Trust boundaries and fault
tolerance" (a traceback and no report, rows merged silently, an element held
whole, a server kept busy by idle sockets) and pins what happens instead.
Library level, and through ``python -m bulkpush push`` against the emulator
over loopback.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkpush._records import Record, Rejection
from bulkpush._validation import (
    MAX_FLATTEN_DEPTH,
    MSG_FLATTEN_TOO_DEEP,
    MSG_TOO_LARGE,
    ValidationOptions,
    Validator,
)
from bulkpush.client import StreamClient
from bulkpush.emulator import Emulator, EmulatorConfig
from bulkpush.errors import RunStopped, SourceError
from bulkpush.report._rejects import MSG_PRODUCT_TOO_DEEP
from bulkpush.sources import MSG_JSON_BROKEN, MSG_UNENCODABLE, iter_records
from bulkpush.sources._csv import MSG_CSV_UNCLOSED_QUOTE
from bulkpush.sources._jsonarray import read_json

pytestmark = pytest.mark.timeout(120)

TOKEN = "crafted-input-token"
FLAT = Validator(ValidationOptions(flatten=True))

EmulatorFactory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def emu_factory() -> AsyncIterator[EmulatorFactory]:
    started: list[Emulator] = []

    async def make(idle_timeout_s: float | None = None, **kwargs: Any) -> Emulator:
        kwargs.setdefault("tokens", frozenset({TOKEN}))
        kwargs.setdefault("products_rate", None)
        kwargs.setdefault("other_rate", None)
        config = EmulatorConfig(**kwargs)
        if idle_timeout_s is None:
            emu = Emulator(config)
        else:
            emu = Emulator(config, idle_timeout_s=idle_timeout_s)
        await emu.start()
        started.append(emu)
        return emu

    yield make
    for emu in reversed(started):
        await emu.aclose()


async def cli(emu: Emulator, *args: str) -> tuple[int, str, str]:
    """``python -m bulkpush ARGS`` against ``emu``: exit code, stdout, stderr."""
    env = {**os.environ, "BULKPUSH_TOKEN": TOKEN, "BULKPUSH_API_URL": emu.url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkpush", *args,
        env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def read(data: bytes, **kwargs: Any) -> list[Record | Rejection]:
    return list(iter_records(io.BytesIO(data), **kwargs))


def nested(levels: int) -> bytes:
    """A product nested ``levels`` deep, the product itself being level 1."""
    inner = b'{"a":' * (levels - 1) + b"1" + b"}" * (levels - 1)
    return b'{"id":"deep","a":' + inner + b"}"


def test_nested_builds_what_it_says() -> None:
    assert nested(1) == b'{"id":"deep","a":1}'
    assert nested(3) == b'{"id":"deep","a":{"a":{"a":1}}}'


# --- 1. one crafted product rejects itself, never the run ---------------------------


def test_flatten_rejects_a_product_nested_1000_deep() -> None:
    record = Record("c.ndjson", 2, 0, nested(1000))
    rejection = FLAT(record)
    assert rejection is not None and rejection.message == MSG_FLATTEN_TOO_DEEP
    assert rejection.message == "Nested too deep to flatten (over 254 levels)"


def test_flatten_takes_the_deepest_product_orjson_can_write() -> None:
    deepest = orjson.dumps(orjson.loads(nested(MAX_FLATTEN_DEPTH)))  # orjson writes it back
    record = Record("c.ndjson", 1, 0, deepest)
    assert FLAT(record) is None
    assert orjson.loads(record.raw) == {"id": "deep", ".".join(["a"] * MAX_FLATTEN_DEPTH): 1}
    too_deep = FLAT(Record("c.ndjson", 1, 0, nested(MAX_FLATTEN_DEPTH + 1)))
    assert too_deep is not None and too_deep.message == MSG_FLATTEN_TOO_DEEP
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(orjson.loads(nested(MAX_FLATTEN_DEPTH + 2)))


def rejects_line(product: bytes, line: int) -> bytes:
    tail = b',"id":null,"reason":"r","stage":"client","source":"c.ndjson","line":%d}' % line
    return b'{"product":' + product + tail


def test_a_rejects_file_product_nested_300_deep_is_rejected_alone() -> None:
    data = b"\n".join(
        [
            rejects_line(b'{"id":"1"}', 1),
            rejects_line(nested(300), 2),
            rejects_line(b'{"id":"3"}', 3),
        ]
    )
    out = read(data, name="rejects.ndjson")
    assert [type(x) for x in out] == [Record, Rejection, Record]
    assert isinstance(out[1], Rejection) and out[1].message == MSG_PRODUCT_TOO_DEEP
    assert out[1].record.line == 2
    assert [x.raw for x in out if isinstance(x, Record)] == [b'{"id":"1"}', b'{"id":"3"}']


@pytest.mark.parametrize("levels", [300, 2_000])
def test_a_json_array_element_nested_too_deep_is_rejected_alone(levels: int) -> None:
    data = b'[{"id":"1"},\n' + nested(levels) + b',\n{"id":"3"}]'
    out = read(data, format="json")
    assert [type(x) for x in out] == [Record, Rejection, Record]
    assert isinstance(out[1], Rejection) and out[1].message == MSG_UNENCODABLE
    assert [x.record.line if isinstance(x, Rejection) else x.line for x in out] == [1, 2, 3]


class _Explodes(Validator):
    """A validator with a bug that one product's content triggers."""

    def __call__(self, record: Record) -> Rejection | None:
        if b"boom" in record.raw:
            raise RecursionError("maximum recursion depth exceeded")
        return super().__call__(record)


def _with_validator(validator: Validator) -> Callable[[Any], Validator]:
    def factory(_options: Any) -> Validator:
        return validator

    return factory


async def test_an_unexpected_error_checking_one_product_rejects_it_alone(
    emu_factory: EmulatorFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bulkpush._engine as engine

    monkeypatch.setattr(engine, "Validator", _with_validator(_Explodes()))
    emu = await emu_factory()
    sid = emu.create_stream("unexpected-check")
    path = tmp_path / "c.ndjson"
    # ("[" makes the product one the fast path hands to the validator.)
    path.write_bytes(b'{"id":"1"}\n{"id":"2","t":"[boom]"}\n{"id":"3"}\n')
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        report = await client.push(str(path), stream=sid)
    assert (report.read, report.accepted, report.rejected) == (3, 2, 1)
    assert sorted(emu.products(sid)) == ["1", "3"]
    (error,) = report.to_dict()["errors"]
    assert "could not be checked: an unexpected RecursionError" in str(error)


async def test_an_unexpected_error_while_reading_stops_with_the_report(
    emu_factory: EmulatorFactory,
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("unexpected-read")

    def catalog() -> Iterator[dict[str, str]]:
        yield {"id": "1"}
        yield {"id": "2"}
        raise ValueError("a bug\nover two lines")

    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        with pytest.raises(RunStopped) as info:
            await client.push(catalog(), stream=sid)
    cause = info.value.cause
    assert isinstance(cause, SourceError)
    assert str(cause) == "reading <iterable> failed unexpectedly (ValueError: a bug over two lines)"
    report = info.value.report
    assert (report.read, report.accepted, report.not_sent) == (2, 2, 0)
    assert report.stopped == str(cause)
    assert sorted(emu.products(sid)) == ["1", "2"]


async def test_crafted_nesting_through_the_cli(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("crafted-cli")
    catalog = tmp_path / "c.ndjson"
    catalog.write_bytes(b'{"id":"1","a":{"b":2}}\n' + nested(1000) + b'\n{"id":"3"}\n')
    report_path, rejects = tmp_path / "report.json", tmp_path / "rejects.ndjson"
    code, _, err = await cli(
        emu, "push", str(catalog), "--stream", sid, "--flatten", "--quiet",
        "--report", str(report_path), "--rejects", str(rejects),
    )  # fmt: skip
    assert code == 1, err
    assert "Traceback" not in err
    report = orjson.loads(report_path.read_bytes())
    assert (report["read"], report["accepted"], report["rejected"]) == (3, 2, 1)
    (line,) = rejects.read_bytes().splitlines()
    written = orjson.loads(line)
    assert (written["line"], written["reason"], written["id"]) == (2, MSG_FLATTEN_TOO_DEEP, "deep")

    # The rejects file, with a product nested 300 deep put in by hand, pushed again.
    fixed = tmp_path / "fixed.ndjson"
    fixed.write_bytes(rejects_line(nested(300), 2) + b"\n" + rejects_line(b'{"id":"4"}', 9) + b"\n")
    code, _, err = await cli(
        emu, "push", str(fixed), "--stream", sid, "--quiet", "--report", str(report_path)
    )
    assert code == 1, err
    assert "Traceback" not in err
    report = orjson.loads(report_path.read_bytes())
    assert (report["read"], report["accepted"], report["rejected"]) == (2, 1, 1)
    assert "4" in emu.products(sid)


# --- 2. an unclosed CSV quote rejects its line, and the rows after it are read ----------


FOUR_ROWS = b'id,title\n1,a\n2,"b\n3,c\n4,d\n'


def test_an_unclosed_quote_rejects_its_line_and_reads_on() -> None:
    out = read(FOUR_ROWS, format="csv", name="c.csv")
    assert [type(x) for x in out] == [Record, Rejection, Record, Record]
    rejection = out[1]
    assert isinstance(rejection, Rejection) and rejection.message == MSG_CSV_UNCLOSED_QUOTE
    assert (rejection.record.line, rejection.record.raw) == (3, b'2,"b')
    assert rejection.record.offset == FOUR_ROWS.index(b'2,"b')
    records = [x for x in out if isinstance(x, Record)]
    assert [(r.line, r.raw) for r in records] == [
        (2, b'{"id":"1","title":"a"}'),
        (4, b'{"id":"3","title":"c"}'),
        (5, b'{"id":"4","title":"d"}'),
    ]
    assert [r.offset for r in records] == [FOUR_ROWS.index(b) for b in (b"1,a", b"3,c", b"4,d")]


def test_an_unclosed_quote_past_the_cap_rejects_its_line_and_reads_on() -> None:
    cap = 64
    data = b'id,t\n1,a\n2,"b\n' + b"x,y\n" * 40 + b"3,c\n"
    out = read(data, format="csv", max_record_bytes=cap)
    assert isinstance(out[1], Rejection) and out[1].message == MSG_CSV_UNCLOSED_QUOTE
    assert out[1].record.line == 3
    records = [x for x in out if isinstance(x, Record)]
    assert len(records) == 1 + 40 + 1
    assert [r.line for r in records] == [2, *range(4, 44), 44]
    assert records[-1].raw == b'{"id":"3","t":"c"}'


def test_a_quoted_cell_over_several_lines_is_still_one_row() -> None:
    data = b'id,t\n1,"a\nb, ""c""\nd"\n2,e\n'
    out = read(data, format="csv")
    assert [(r.line, r.raw) for r in out if isinstance(r, Record)] == [
        (2, orjson.dumps({"id": "1", "t": 'a\nb, "c"\nd'})),
        (5, b'{"id":"2","t":"e"}'),
    ]


def test_an_unclosed_quote_in_the_header_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="header"):
        read(b'id,"title\n1,a\n', format="csv")


async def test_an_unclosed_quote_through_the_cli(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("csv-quote")
    catalog = tmp_path / "c.csv"
    catalog.write_bytes(FOUR_ROWS)
    report_path = tmp_path / "report.json"
    code, out, err = await cli(
        emu, "push", str(catalog), "--stream", sid, "--report", str(report_path)
    )
    assert code == 1, err
    report = orjson.loads(report_path.read_bytes())
    assert (report["read"], report["accepted"], report["rejected"]) == (4, 3, 1)
    assert sorted(emu.products(sid)) == ["1", "3", "4"]
    assert "quoted cell opened here is never closed" in out


# --- 3. a JSON-array element over the cap is never held whole ---------------------------


def _write_big_element_catalog(path: Path, shape: str, size: int) -> None:
    with path.open("wb") as f:
        f.write(b'[\n  {"id": "a", "t": "x"},\n  {"id": "big", ')
        written = 0
        if shape == "string":
            f.write(b'"d": "')
            piece = b"x" * 65_536
            while written < size:
                f.write(piece)
                written += len(piece)
            f.write(b'"}')
        else:  # many small attributes in nested arrays, strings with brackets and escapes
            f.write(b'"d": [')
            piece = (b'{"k": "v]}\\"[{,' + b"w" * 200 + b'", "n": [1, 2.5, null]},') * 1000
            while written < size:
                f.write(piece)
                written += len(piece)
            f.write(b'{"k": "end"}]}')
        f.write(b',\n  {"id": "c"}\n]\n')


@pytest.mark.parametrize("shape", ["string", "attributes"])
def test_a_20_mb_element_is_rejected_while_streaming(tmp_path: Path, shape: str) -> None:
    size = 20_000_000
    cap = 1_000_000
    path = tmp_path / "big.json"
    _write_big_element_catalog(path, shape, size)
    tracemalloc.start()
    try:
        started = time.monotonic()
        out = list(iter_records(path, max_record_bytes=cap))
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 6_000_000, peak  # one block, the element's first MB, and the records
    assert elapsed < 30
    assert [type(x) for x in out] == [Record, Record, Record]
    first, big, last = out
    assert isinstance(first, Record) and first.raw == b'{"id":"a","t":"x"}'
    assert isinstance(last, Record) and (last.line, last.raw) == (3, b'{"id":"c"}')
    assert isinstance(big, Record) and big.line == 2 and len(big.raw) == cap + 1
    rejection = Validator(ValidationOptions(max_product_bytes=cap))(big)
    assert rejection is not None and rejection.message == MSG_TOO_LARGE
    assert big.id == "big"  # read from its first bytes: the report and rejects file name it


def _chunked(data: bytes, size: int) -> Callable[[int], bytes]:
    pos = 0

    def read(_n: int) -> bytes:
        nonlocal pos
        piece = data[pos : pos + size]
        pos += len(piece)
        return piece

    return read


def _elements(data: bytes, size: int, cap: int = 1 << 20) -> list[Record | Rejection]:
    return list(read_json(_chunked(data[1:], size), data[:1], "t.json", cap=cap))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet='ab"\\[]{},: \n\t\u00e9\u2028\U0001f600', max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet='a"\\[]{},', max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(json_values, max_size=8),
    pretty=st.booleans(),
    size=st.integers(1, 40) | st.just(1 << 20),
)
def test_json_array_elements_survive_any_block_boundary(
    items: list[Any], pretty: bool, size: int
) -> None:
    data = orjson.dumps(items, option=orjson.OPT_INDENT_2 if pretty else 0)
    out = _elements(data, size)
    assert all(isinstance(r, Record) for r in out)
    assert [orjson.loads(r.raw) for r in out if isinstance(r, Record)] == items
    assert [r.line for r in out if isinstance(r, Record)] == list(range(1, len(items) + 1))


@pytest.mark.parametrize("pretty", [False, True])
@pytest.mark.parametrize("size", [7, 4096, 1 << 20])
def test_products_that_look_like_element_boundaries_inside(pretty: bool, size: int) -> None:
    items = [
        {
            "id": str(i),
            "t": '"},{"id": "x"}, {"id":' * (i % 3),
            "variants": [{"id": f"{i}-{k}", "v": [k, {"id": "}"}]} for k in range(i % 4)],
        }
        for i in range(2_000)
    ]
    data = orjson.dumps(items, option=orjson.OPT_INDENT_2 if pretty else 0)
    out = _elements(data, size)
    assert [orjson.loads(r.raw) for r in out if isinstance(r, Record)] == items
    assert len(out) == len(items)


@pytest.mark.parametrize(
    ("data", "records", "broken_at"),
    [
        (b'[{"id":1},', 1, 2),
        (b"[1,,2]", 1, 2),
        (b"[1,]", 1, 2),
        (b"[,1]", 0, 1),
        (b"[1}", 0, 1),
        (b"[1] x", 1, 2),
        (b'[{"a":"\\', 0, 1),
        (b'[{"id":1},{"id":2 "x"},{"id":3}]', 1, 2),
        (b'[{"id":1},{"id":[2}},{"id":3}]', 1, 2),
    ],
)
@pytest.mark.parametrize("size", [1, 3, 1 << 20])
def test_a_broken_json_array_is_one_rejection_where_it_breaks(
    data: bytes, records: int, broken_at: int, size: int
) -> None:
    out = _elements(data, size)
    assert sum(isinstance(x, Record) for x in out) == records
    last = out[-1]
    assert isinstance(last, Rejection) and last.message == MSG_JSON_BROKEN
    assert last.record.line == broken_at


def test_an_empty_array_and_trailing_whitespace_are_fine() -> None:
    assert _elements(b"[ \n ]  \n\n", 2) == []
    assert [r.raw for r in _elements(b'[ {"id": 1} ]\n', 1) if isinstance(r, Record)] == [
        b'{"id":1}'
    ]


# --- 4. idle and slow connections hold neither server ----------------------------------


async def _idle_sockets(
    host: str, port: int, n: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    conns = []
    for i in range(n):
        reader, writer = await asyncio.open_connection(host, port)
        if i % 2:  # a slow loris: half a request head, then nothing
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            await writer.drain()
        conns.append((reader, writer))
    return conns


async def _closed_by_the_server(
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], within: float
) -> None:
    async def eof(reader: asyncio.StreamReader) -> bytes:
        return await reader.read()

    try:
        got = await asyncio.wait_for(asyncio.gather(*(eof(r) for r, _ in conns)), within)
        assert all(data == b"" for data in got)  # closed without an answer
    finally:
        for _, writer in conns:
            writer.close()


IDLE = 80


async def test_idle_connections_do_not_hold_the_emulator(emu_factory: EmulatorFactory) -> None:
    emu = await emu_factory(idle_timeout_s=1.0)
    host, port = emu.url.removeprefix("http://").rsplit(":", 1)
    conns = await _idle_sockets(host, int(port), IDLE)
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{emu.url}/_emulator/counters") as resp,
    ):
        assert resp.status == 200
    assert time.monotonic() - started < 2
    await _closed_by_the_server(conns, within=10)


def test_the_default_idle_timeout_is_bounded() -> None:
    from bulkpush.emulator import server
    from bulkpush.worker import control

    assert 15 < server.IDLE_TIMEOUT_S <= 120 and Emulator().idle_timeout_s == server.IDLE_TIMEOUT_S
    assert 15 < control.IDLE_TIMEOUT_S <= 120
    with pytest.raises(ValueError, match="idle_timeout_s"):
        Emulator(idle_timeout_s=0)


async def test_idle_connections_do_not_hold_the_control_api(tmp_path: Path) -> None:
    from bulkpush.worker.control import start_control
    from bulkpush.worker.queue import open_queue
    from bulkpush.worker.runner import Worker

    queue = open_queue(f"sqlite:///{tmp_path / 'jobs.db'}")
    worker = Worker(queue, environ={})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    runner = await start_control(
        f"127.0.0.1:{port}", worker=worker, token="s3cret", idle_timeout_s=1.0
    )
    try:
        conns = await _idle_sockets("127.0.0.1", port, IDLE)
        started = time.monotonic()
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/healthz") as resp,
        ):
            assert resp.status == 200 and (await resp.json())["ok"] is True
        assert time.monotonic() - started < 2
        await _closed_by_the_server(conns, within=10)
    finally:
        await runner.cleanup()
        await queue.aclose()
