"""Clearer input handling: what a catalog that is not what it seems gets told.

Library level (``iter_records``, the pipeline) and through ``python -m
bulkpush push`` against the emulator over loopback: a single JSON object, a
binary file, a ``;``-separated CSV with a BOM, a truncated ``.gz``, an empty
file, products too large for the API, light validation, ``bytes_read``.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import random
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkpush._records import Record, Rejection
from bulkpush.client import PushOptions, StreamClient
from bulkpush.emulator import Emulator, EmulatorConfig
from bulkpush.errors import RunStopped, SourceError
from bulkpush.sources import iter_records
from bulkpush.sources._framing import BLOCK

TOKEN = "input-handling-token"

EmulatorFactory = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def emu_factory() -> AsyncIterator[EmulatorFactory]:
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


async def cli(emu: Emulator, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """``python -m bulkpush ARGS`` against ``emu``: exit code, stdout, stderr."""
    env = {**os.environ, "BULKPUSH_TOKEN": TOKEN, "BULKPUSH_API_URL": emu.url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bulkpush", *args,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def read(data: bytes, **kwargs: Any) -> list[Record | Rejection]:
    return list(iter_records(io.BytesIO(data), **kwargs))


def products(n: int, start: int = 0) -> bytes:
    return b"".join(b'{"id":"%d","title":"product %d"}\n' % (i, i) for i in range(start, start + n))


PRETTY = orjson.dumps(
    {"id": "1", "title": "A shirt", "price": "9.99", "size": "XL", "color": "red", "stock": 3},
    option=orjson.OPT_INDENT_2,
)
SINGLE_OBJECT = "expected an array of products or NDJSON (one product per line)"


# --- 1. one JSON object, pretty-printed ----------------------------------------


@pytest.mark.parametrize("name", ["product.json", "product.ndjson", "product"])
def test_a_pretty_printed_object_is_one_clear_error(name: str) -> None:
    assert PRETTY.count(b"\n") == 7  # read as NDJSON it made eight syntax errors
    with pytest.raises(SourceError) as info:
        read(PRETTY + b"\n", name=name)
    assert str(info.value) == f"{SINGLE_OBJECT}: {name} holds a single JSON object"


def test_pretty_objects_one_after_another_and_a_long_one() -> None:
    with pytest.raises(SourceError, match="holds JSON objects spread over several lines each"):
        read(PRETTY + b"\n" + PRETTY, name="two.json")
    # An object longer than the block read first: its end is never looked for.
    big = {"id": "1", "text": ["x" * 100] * (BLOCK // 50)}
    long = orjson.dumps(big, option=orjson.OPT_INDENT_2)
    with pytest.raises(SourceError, match=r"long\.json holds a JSON object spread over many lines"):
        read(long, name="long.json")


@pytest.mark.parametrize(
    "data",
    [
        b'{"id":"1"}\n',  # one product on one line is NDJSON
        b'{"id":"1"}\n{"id":"2"}\n',
        b'{"id": "1", "title": \n{"id":"2"}\n',  # a broken line, then NDJSON: rejected line by line
        b'{"id": "1"\n{"id":"2"}\n',
    ],
)
def test_ndjson_and_broken_ndjson_are_still_read_line_by_line(data: bytes) -> None:
    out = read(data, name="c.ndjson")
    assert [r.line for r in out if isinstance(r, Record)] == [
        i for i, ln in enumerate(data.split(b"\n"), 1) if ln.strip()
    ]


def test_an_explicit_format_reads_what_it_is_told() -> None:
    assert len(read(PRETTY, format="ndjson")) == 8
    (one,) = read(PRETTY, format="json")
    assert isinstance(one, Record) and orjson.loads(one.raw)["id"] == "1"


# --- 2. binary input ---------------------------------------------------------------


def test_random_bytes_look_binary() -> None:
    data = random.Random(7).randbytes(5000)
    with pytest.raises(SourceError) as info:
        read(data, name="blob")
    assert str(info.value).startswith("blob looks binary (not text, not gzip or zstd): ")
    assert "universal-newline" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(200), "a zip archive"),
        ("id,title\n1,shirt\n".encode("utf-16"), "UTF-16 text: save it as UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "starts with the bytes 89 50 4e 47 0d 0a 1a 0a"),
    ],
)
def test_binary_files_are_named_for_what_they_look_like(data: bytes, says: str) -> None:
    with pytest.raises(SourceError, match="looks binary") as info:
        read(data, name="catalog.csv")
    assert says in str(info.value)


def test_binary_inside_gzip_says_once_decompressed() -> None:
    with pytest.raises(SourceError, match=r"^x.gz looks binary once decompressed \(not text\)"):
        read(gzip.compress(bytes(range(256)) * 10), name="x.gz")


def test_latin1_text_is_still_text() -> None:
    data = "id,title\n1,Chemise bleue\n2,Pull été\n".encode("latin-1")
    out = read(data, name="c.csv")
    assert [type(x) for x in out] == [Record, Rejection]  # the row that is not UTF-8


# --- 4. a truncated .gz -------------------------------------------------------------


def intact_lines(compressed: bytes) -> int:
    """The complete lines of a cut gzip stream, decompressed as far as it goes."""
    return zlib.decompressobj(wbits=31).decompress(compressed).count(b"\n")


def test_a_truncated_gzip_yields_its_intact_prefix_then_fails() -> None:
    whole = gzip.compress(products(20_000))
    cut = whole[: len(whole) // 2]
    expected = intact_lines(cut)
    assert expected > 1000
    got: list[Record | Rejection] = []
    with pytest.raises(SourceError) as info:
        for item in iter_records(io.BytesIO(cut), name="c.ndjson.gz"):
            got.append(item)
    assert str(info.value).startswith(f"c.ndjson.gz is truncated at byte {len(cut):,}: ")
    assert len(got) == expected
    assert all(isinstance(r, Record) and orjson.loads(r.raw) for r in got)


async def test_a_truncated_gzip_through_the_cli_sends_what_was_intact(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("truncated", "chunked")
    whole = gzip.compress(products(3_000))
    cut = whole[: len(whole) * 2 // 3]
    path = tmp_path / "catalog.ndjson.gz"
    path.write_bytes(cut)
    report_path = tmp_path / "report.json"
    code, _, err = await cli(emu, "push", str(path), "--stream", sid, "--report", str(report_path))
    assert code == 2, err
    assert f"catalog.ndjson.gz is truncated at byte {len(cut):,}" in err
    report = orjson.loads(report_path.read_bytes())
    intact = intact_lines(cut)
    assert report["read"] == report["accepted"] == len(emu.products(sid)) == intact > 0
    assert report["not_sent"] == 0
    assert f"truncated at byte {len(cut):,}" in report["stopped"]


async def test_a_truncated_gzip_stops_the_library_run_after_sending(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("truncated lib", "chunked")
    path = tmp_path / "c.ndjson.gz"
    whole = gzip.compress(products(2_000))
    path.write_bytes(whole[: len(whole) // 2])
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        with pytest.raises(RunStopped) as info:
            await client.push(
                str(path), stream=sid, options=PushOptions(max_products_per_request=100)
            )
    assert isinstance(info.value.cause, SourceError)
    report = info.value.report
    assert report.accepted == report.read == len(emu.products(sid)) > 0
    assert report.read == report.accepted + report.rejected + report.not_sent


# --- 8. bytes_read counts every byte -------------------------------------------------


async def test_bytes_read_counts_blank_lines_and_every_other_byte(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("bytes", "chunked")
    data = b"\xef\xbb\xbf" + products(5) + b"\n \n\r\n" + b'  {"id":"x"}  \r\n' + b"\n\n"
    plain = tmp_path / "c.ndjson"
    plain.write_bytes(data)
    packed = tmp_path / "c.ndjson.gz"
    packed.write_bytes(gzip.compress(data))
    csv = tmp_path / "c.csv"
    csv.write_bytes(b"id,title\r\n\r\n1,a\r\n2,b\r\n\r\n")
    async with StreamClient(token=TOKEN, api_url=emu.url) as client:
        for path, size in ((plain, len(data)), (packed, len(data)), (csv, csv.stat().st_size)):
            report = await client.push(str(path), stream=sid)
            assert report.bytes_read == size, path
        report = await client.push([str(plain), str(csv)], stream=sid)
        assert report.bytes_read == len(data) + csv.stat().st_size


# --- 3. CSV delimiters ---------------------------------------------------------------

SEMICOLONS = "\ufeffid;title;price\r\n1;Chemise, bleue;9,99\r\n2;Pull;19,50\r\n".encode()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (SEMICOLONS, [{"id": "1", "title": "Chemise, bleue", "price": "9,99"}]),
        (b"id\ttitle\n1\tA, B; C\n", [{"id": "1", "title": "A, B; C"}]),
        (b'"a|b"|title\n1|x\n', [{"a|b": "1", "title": "x"}]),  # quoted: not counted
        (b"\n\nid,title\n1,x\n", [{"id": "1", "title": "x"}]),
        (b"id\n1\n", [{"id": "1"}]),
    ],
)
def test_the_csv_delimiter_is_sniffed_from_the_header(
    data: bytes, expected: list[dict[str, str]]
) -> None:
    out = read(data, name="c.csv")
    assert all(isinstance(r, Record) for r in out)
    assert [orjson.loads(r.raw) for r in out][: len(expected)] == expected


def test_a_given_csv_delimiter_wins_over_sniffing() -> None:
    # The header has more commas than semicolons; the caller knows better.
    data = b"id;title,with,commas\n1;x\n"
    (one,) = read(data, name="c.csv", csv_delimiter=";")
    assert isinstance(one, Record) and orjson.loads(one.raw) == {
        "id": "1",
        "title,with,commas": "x",
    }


def test_the_csv_delimiter_option_reaches_push_options() -> None:
    from bulkpush.errors import ConfigError
    from bulkpush.worker.jobs import JobOptions

    assert JobOptions(csv_delimiter=";").push_options().csv_delimiter == ";"
    assert PushOptions().csv_delimiter is None
    for bad in (";;", '"', "\n", ""):
        with pytest.raises(ConfigError, match="csv_delimiter"):
            PushOptions(csv_delimiter=bad)


async def test_a_semicolon_csv_with_a_bom_through_the_cli(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("csv", "chunked")
    path = tmp_path / "export.csv"
    path.write_bytes(SEMICOLONS)
    code, _, err = await cli(emu, "push", str(path), "--stream", sid, "-q")
    assert code == 0, err
    stored = {k: orjson.loads(v) for k, v in emu.products(sid).items()}
    assert stored == {
        "1": {"id": "1", "title": "Chemise, bleue", "price": "9,99"},
        "2": {"id": "2", "title": "Pull", "price": "19,50"},
    }
    code, _, err = await cli(emu, "push", str(path), "--stream", sid, "--csv-delimiter", "ab")
    assert code == 2 and "--csv-delimiter" in err


# --- 6. the ids of products too large to send ----------------------------------------


def test_prefix_id_reads_an_early_id_and_only_the_first_bytes() -> None:
    from bulkpush._validation import prefix_id

    tail = b'"' + b"x" * 3_000_000  # never closed: not JSON
    assert prefix_id(b'{"id":"a1",' + tail) == "a1"
    assert prefix_id(b' {"sku": "s", "n": -1.5e3, "ok": true, "id" : 12 , "t":' + tail) == "12"
    assert prefix_id(b'{"id":"\\u00e9"}') == "é"
    assert prefix_id(b'{"id": 1.50}') == "1.5"  # as Record.product_id spells it
    for raw in (
        b'{"id":null,' + tail,
        b'{"id":"",' + tail,
        b'{"id":true}',
        b'{"a":{"id":1},"id":2}',  # after a nested value: not early enough to read
        b'{"t":"x","id":"cut',
        b'{"pad":"' + b"p" * 70_000 + b'","id":"late"}',  # past the bytes looked at
    ):
        assert prefix_id(raw) is None, raw[:30]


@pytest.mark.parametrize("level", ["full", "light"])
def test_a_product_too_large_gets_its_id_without_a_parse(level: Any) -> None:
    from bulkpush._validation import MSG_TOO_LARGE, ValidationOptions, Validator

    validate = Validator(ValidationOptions(level=level))
    cut = Record("c", 1, 0, b'{"id":"big-1","text":"' + b"x" * 2_000_000)
    rejection = validate(cut)
    assert rejection is not None and rejection.message == MSG_TOO_LARGE
    assert cut.id == "big-1" and cut.product_id() == "big-1"


async def test_products_too_large_reach_the_rejects_file_with_their_ids(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("large", "chunked")
    huge = b'{"id":"huge-3mb","text":"' + b"x" * 3_000_000 + b'"}'
    large = b'{"id":"large-1.5mb","text":"' + b"y" * 1_500_000 + b'"}'
    path = tmp_path / "c.ndjson"
    path.write_bytes(huge + b"\n" + large + b'\n{"id":"ok","t":"x"}\n')
    rejects, report = tmp_path / "rejects.ndjson", tmp_path / "report.json"
    code, _, err = await cli(
        emu, "push", str(path), "--stream", sid, "-q",
        "--rejects", str(rejects), "--report", str(report),
    )  # fmt: skip
    assert code == 1, err
    lines = [orjson.loads(ln) for ln in rejects.read_bytes().splitlines()]
    by_line = {ln["line"]: ln for ln in lines}
    assert isinstance(by_line[1]["product"], str)  # cut short: kept as text
    assert isinstance(by_line[2]["product"], dict)
    assert by_line[1]["id"] == "huge-3mb" and by_line[2]["id"] == "large-1.5mb"
    (entry,) = orjson.loads(report.read_bytes())["errors"]
    assert [ex["id"] for ex in entry["examples"]] == ["huge-3mb", "large-1.5mb"]
    assert list(emu.products(sid)) == ["ok"]


# --- 5. a catalog with no products -----------------------------------------------------


async def test_an_empty_file_is_named_on_stderr_and_exits_0(
    emu_factory: EmulatorFactory, tmp_path: Path
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream("empty", "chunked")
    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.ndjson"
    blank.write_bytes(b"\n  \n\r\n")
    good = tmp_path / "good.ndjson"
    good.write_bytes(products(3))
    code, out, err = await cli(emu, "push", str(empty), "--stream", sid)
    assert code == 0, err
    assert ": 0 products in " in out
    assert f"bulkpush: warning: {empty} holds no products" in err
    code, _, err = await cli(emu, "push", str(blank), "--stream", sid, "-q")
    assert code == 0 and f"{blank} holds no products" in err
    code, _, err = await cli(emu, "push", "-", "--stream", sid, "-q", stdin=b"")
    assert code == 0 and "<stdin> holds no products" in err
    # Among other files, an empty one is still named; the others are not.
    code, _, err = await cli(emu, "push", str(good), str(empty), "--stream", sid, "-q")
    assert code == 0 and f"{empty} holds no products" in err and str(good) not in err
    code, _, err = await cli(emu, "push", str(good), "--stream", sid, "-q")
    assert code == 0 and "warning" not in err


# --- 7. light validation and the README agree ------------------------------------------


def test_light_validation_checks_what_the_readme_says() -> None:
    from bulkpush._validation import MSG_MISSING_ID, ValidationOptions, Validator

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    choices = readme.split("## Choices made where the API documentation is silent")[1]
    light = " ".join(choices[choices.index("`light`") :].split("\n- ")[0].split())
    assert 'checks size, shape (`{` … `}` on one line) and that `"id"` appears' in light
    assert "the API names only one product per error message per request" in light
    validate = Validator(ValidationOptions(level="light"))
    missing = validate(Record("c", 1, 0, b'{"title":"no id"}'))
    assert missing is not None and missing.message == MSG_MISSING_ID
    assert validate(Record("c", 1, 0, b'{"id":"1","title":"x"}')) is None


@pytest.mark.parametrize("flag", ["--report", "--rejects"])
async def test_an_output_that_cannot_be_written_is_refused_before_anything_is_sent(
    emu_factory: EmulatorFactory, tmp_path: Path, flag: str
) -> None:
    emu = await emu_factory()
    sid = emu.create_stream(f"unwritable {flag}", "chunked")
    path = tmp_path / "c.ndjson"
    path.write_bytes(products(100))
    target = tmp_path / "no-such-dir" / "out.json"
    code, _, err = await cli(emu, "push", str(path), "--stream", sid, flag, str(target))
    assert code == 2, err
    assert f"cannot write the {flag[2:]} file {target}" in err
    assert "Traceback" not in err
    assert emu.products(sid) == {}  # nothing was sent
    code, _, err = await cli(emu, "push", str(path), "--stream", sid, flag, str(tmp_path))
    assert code == 2 and "is a directory" in err, err  # (click refuses it first)
