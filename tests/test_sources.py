from __future__ import annotations

import gzip
import io
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkpush import sources
from bulkpush._records import Record, Rejection
from bulkpush._validation import MSG_BAD_ENCODING, ValidationOptions, Validator
from bulkpush.errors import ConfigError, SourceError
from bulkpush.limits import STREAM_API
from bulkpush.sources import (
    FileRange,
    detect_format,
    iter_objects,
    iter_records,
    open_source,
    split_ranges,
)

CAP = STREAM_API.max_line_bytes


def read(data: bytes, **kwargs: object) -> list[Record | Rejection]:
    return list(iter_records(io.BytesIO(data), **kwargs))  # type: ignore[arg-type]


def records(data: bytes, **kwargs: object) -> list[Record]:
    out = read(data, **kwargs)
    assert all(isinstance(x, Record) for x in out), out
    return out  # type: ignore[return-value]


def positions(items: list[Record | Rejection]) -> list[tuple[int, int]]:
    return [(x.line, x.offset) if isinstance(x, Record) else (-1, -1) for x in items]


# --- detect_format -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("a.ndjson", b"", "ndjson"),
        ("a.jsonl.gz", b"", "ndjson"),
        ("a.NDJSON.zst", b"", "ndjson"),
        ("a.csv", b"id,title\n", "csv"),
        ("a.csv.gz", b"", "csv"),
        ("a.json", b"[\n{}", "json"),
        ("a.json", b'  {"id":1}\n{"id":2}\n', "ndjson"),
        ("a.json.gz", b"\xef\xbb\xbf[", "json"),
        ("-", b"  [", "json"),
        ("<stdin>", b'\n\n{"id":1}', "ndjson"),
        ("<stdin>", b"", "ndjson"),
        ("data.txt", b"id;title\n", "csv"),
        (
            "x.ndjson",
            b'{"product":{"id":1},"reason":"r","stage":"client","source":"a","line":3}\n',
            "rejects",
        ),
        (
            "rejects",
            b'{"reason":"r","stage":"upload","source":"a","line":3,"product":"x"}',
            "rejects",
        ),
        ("x.ndjson", b'{"product":{"id":1},"reason":"r"}\n', "ndjson"),
    ],
)
def test_detect_format(name: str, head: bytes, expected: str) -> None:
    assert detect_format(name, head) == expected


# --- NDJSON --------------------------------------------------------------------


def test_ndjson_lines_offsets_and_raw() -> None:
    data = b'{"id":1}\r\n\r\n   \n  {"id":2}  \n\t{"id":3}\r\n{"id":4}'
    out = records(data, format="ndjson")
    assert [r.raw for r in out] == [b'{"id":1}', b'{"id":2}', b'{"id":3}', b'{"id":4}']
    assert [r.line for r in out] == [1, 4, 5, 6]
    for r in out:
        assert data[r.offset :].lstrip().startswith(r.raw)
        assert r.offset == 0 or data[r.offset - 1 : r.offset] == b"\n"
    assert out[0].source == "<stream>"


def test_ndjson_bom_is_dropped_and_counted() -> None:
    out = records(b'\xef\xbb\xbf{"id":1}\n{"id":2}\n', name="bom.ndjson")
    assert [(r.line, r.offset, r.raw) for r in out] == [
        (1, 0, b'{"id":1}'),
        (2, 12, b'{"id":2}'),
    ]
    assert out[0].source == "bom.ndjson"


def test_ndjson_bad_lines_are_records_for_validation() -> None:
    out = records(b'{"id":"\xff"}\nnot json\n[1]\n', format="ndjson")
    assert len(out) == 3
    validate = Validator()
    rejections = [validate(r) for r in out]
    assert all(x is not None for x in rejections)
    assert rejections[0] is not None and rejections[0].message == MSG_BAD_ENCODING


def test_ndjson_line_over_the_api_limit_is_cut_short_and_rejected() -> None:
    long_line = b'{"id":"big","d":"' + b"x" * (CAP + 500_000) + b'"}'
    data = b'{"id":1}\n' + long_line + b'\n{"id":3}\n'
    out = records(data, format="ndjson")
    assert [r.line for r in out] == [1, 2, 3]
    assert len(out[1].raw) == CAP + 1
    assert out[2].offset == len(b'{"id":1}\n') + len(long_line) + 1
    rejection = Validator(ValidationOptions(max_product_bytes=CAP))(out[1])
    assert rejection is not None and "too large" in rejection.message
    # the same, as the last line without a newline
    out = records(b'{"id":1}\n' + long_line, format="ndjson")
    assert len(out) == 2 and len(out[1].raw) == CAP + 1


def test_empty_sources() -> None:
    for fmt in ("ndjson", "json", "csv", "rejects"):
        assert read(b"", format=fmt) == []
        assert read(b"  \n\n", format=fmt) == []


# --- compression, files, stdin ------------------------------------------------

LINES = b'{"id":1}\n\n{"id":2}\r\n'


@pytest.mark.parametrize(
    ("suffix", "pack"),
    [
        (".ndjson", lambda b: b),
        (".ndjson.gz", gzip.compress),
        (".ndjson.zst", lambda b: zstandard.ZstdCompressor().compress(b)),
        (".ndjson", gzip.compress),  # found by magic bytes, not the name
        (".data", lambda b: zstandard.ZstdCompressor().compress(b)),
    ],
)
def test_files_plain_and_compressed(tmp_path: Path, suffix: str, pack: object) -> None:
    path = tmp_path / f"cat{suffix}"
    path.write_bytes(pack(LINES))  # type: ignore[operator]
    out = list(iter_records(path))
    assert [(r.line, r.offset, r.raw) for r in out] == [  # type: ignore[union-attr]
        (1, 0, b'{"id":1}'),
        (3, 10, b'{"id":2}'),
    ]
    assert out[0].source == str(path)
    with open_source(path) as f:
        assert f.read() == LINES


def test_multi_member_gzip_and_multi_frame_zstd(tmp_path: Path) -> None:
    gz = tmp_path / "a.ndjson.gz"
    gz.write_bytes(gzip.compress(b'{"id":1}\n') + gzip.compress(b'{"id":2}\n'))
    assert len(list(iter_records(gz))) == 2
    zst = tmp_path / "a.ndjson.zst"
    c = zstandard.ZstdCompressor()
    zst.write_bytes(c.compress(b'{"id":1}\n') + c.compress(b'{"id":2}\n'))
    assert len(list(iter_records(zst))) == 2


def test_corrupt_and_truncated_compressed_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson.gz"
    bad.write_bytes(b"\x1f\x8b" + b"garbage" * 100)
    with pytest.raises(SourceError, match=re.escape("bad.ndjson.gz")):
        list(iter_records(bad))
    body = b"".join(b'{"id":%d}\n' % i for i in range(100_000))
    truncated = tmp_path / "cut.ndjson.gz"
    truncated.write_bytes(gzip.compress(body)[:-100])
    with pytest.raises(SourceError, match=re.escape("cut.ndjson.gz")):
        list(iter_records(truncated))
    zcut = tmp_path / "cut.ndjson.zst"
    zcut.write_bytes(zstandard.ZstdCompressor().compress(body)[:-50])
    with pytest.raises(SourceError, match=re.escape("cut.ndjson.zst")):
        list(iter_records(zcut))


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=re.escape("nope.ndjson")) as info:
        list(iter_records(tmp_path / "nope.ndjson"))
    assert info.value.source == str(tmp_path / "nope.ndjson")
    with pytest.raises(SourceError, match=re.escape(str(tmp_path))):
        list(iter_records(tmp_path))
    with (
        pytest.raises(SourceError, match=re.escape("nope.csv")),
        open_source(tmp_path / "nope.csv"),
    ):
        pass


def test_binary_file_object_compressed() -> None:
    out = read(gzip.compress(b'{"id":1}\n{"id":2}'), name="upload")
    assert [x.raw for x in out if isinstance(x, Record)] == [b'{"id":1}', b'{"id":2}']
    assert out[0].record.source if isinstance(out[0], Rejection) else out[0].source == "upload"


def test_stdin_in_a_subprocess() -> None:
    code = (
        "import sys\n"
        "from bulkpush.sources import iter_records\n"
        "for r in iter_records('-'):\n"
        "    print(r.source, r.line, r.offset, r.raw.decode())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=gzip.compress(b'{"id":1}\n\n{"id":2}\n'),
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert proc.stdout.decode().splitlines() == [
        '<stdin> 1 0 {"id":1}',
        '<stdin> 3 10 {"id":2}',
    ]


# --- byte ranges -----------------------------------------------------------------


def test_split_ranges_cover_a_file(tmp_path: Path) -> None:
    path = tmp_path / "big.ndjson"
    body = b"".join(b'{"id":%d,"t":"%s"}\n' % (i, b"x" * (i % 50)) for i in range(5000))
    path.write_bytes(body)
    whole = list(iter_records(path))
    for parts in (1, 2, 3, 7, 64):
        ranges = split_ranges(path, parts)
        assert 1 <= len(ranges) <= parts
        assert ranges[0][0] == 0 and ranges[-1][1] == len(body)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        got = []
        for start, end, first in ranges:
            assert start == 0 or body[start - 1 : start] == b"\n"
            part = list(iter_records(path, start_offset=start, end_offset=end, first_line=first))
            assert not part or part[0].line == first  # type: ignore[union-attr]
            got += part
        assert got == whole


def test_split_ranges_of_an_empty_file_and_bad_input(tmp_path: Path) -> None:
    empty = tmp_path / "e.ndjson"
    empty.write_bytes(b"")
    assert split_ranges(empty, 4) == [(0, 0, 1)]
    with pytest.raises(ConfigError):
        split_ranges(empty, 0)
    gz = tmp_path / "a.ndjson.gz"
    gz.write_bytes(gzip.compress(b'{"id":1}\n'))
    with pytest.raises(ConfigError):
        split_ranges(gz, 2)
    with pytest.raises(ConfigError):
        list(iter_records(gz, start_offset=5))
    csvf = tmp_path / "a.csv"
    csvf.write_bytes(b"id\n1\n")
    with pytest.raises(ConfigError):
        list(iter_records(csvf, start_offset=1))
    with pytest.raises(SourceError):
        split_ranges(tmp_path / "missing.ndjson", 2)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.lists(
        st.sampled_from([b'{"id":1}', b"", b"  ", b"\r", b"x", b'{"a":"\xff"}', b"\xef\xbb\xbf"]),
        max_size=30,
    ).map(b"\n".join)
    | st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 400), max_size=5),
)
def test_any_byte_ranges_partition_the_lines(
    tmp_path_factory: pytest.TempPathFactory, content: bytes, cuts: list[int]
) -> None:
    path = tmp_path_factory.mktemp("r") / "f.ndjson"
    path.write_bytes(content)
    if content[:2] == b"\x1f\x8b" or content[:4] == b"\x28\xb5\x2f\xfd":
        return
    whole = list(iter_records(path, format="ndjson"))
    points = sorted({min(c, len(content)) for c in cuts} | {0, len(content)})
    got = []
    for start, end in itertools.pairwise(points):
        line_start = start if start == 0 else content.find(b"\n", start - 1) + 1 or len(content)
        first = content.count(b"\n", 0, line_start) + 1
        got += list(
            iter_records(
                path, format="ndjson", start_offset=start, end_offset=end, first_line=first
            )
        )
    assert got == whole


# --- CSV -------------------------------------------------------------------------


def test_csv_rows() -> None:
    data = (
        b"\xef\xbb\xbfid,title,price\r\n"
        b"1,Shirt,9.99\r\n"
        b'2,"Multi\r\nline",\r\n'
        b"\r\n"
        b",,\r\n"
        b"3,Short\r\n"
        b"4,a,b,extra\r\n"
        b"5,,1"
    )
    out = read(data, format="csv", name="cat.csv")
    assert positions(out)[:4] == [
        (2, data.index(b"1,Shirt")),
        (3, data.index(b'2,"Multi')),
        (7, data.index(b"3,Short")),
        (-1, -1),
    ]
    assert [orjson.loads(x.raw) for x in out if isinstance(x, Record)] == [
        {"id": "1", "title": "Shirt", "price": "9.99"},
        {"id": "2", "title": "Multi\r\nline"},
        {"id": "3", "title": "Short"},
        {"id": "5", "price": "1"},
    ]
    rejection = out[3]
    assert isinstance(rejection, Rejection)
    assert rejection.message == sources.MSG_CSV_EXTRA_CELLS
    assert (rejection.record.line, rejection.record.offset) == (8, data.index(b"4,a"))
    assert rejection.record.raw == b"4,a,b,extra"
    assert out[4].line == 9  # type: ignore[union-attr]


def test_csv_detected_by_extension(tmp_path: Path) -> None:
    path = tmp_path / "cat.csv.gz"
    path.write_bytes(gzip.compress(b"id,t\n1,x\n"))
    out = list(iter_records(path))
    assert [x.raw for x in out] == [b'{"id":"1","t":"x"}']  # type: ignore[union-attr]


def test_csv_bad_encoding_row_is_rejected() -> None:
    out = read(b"id,t\n1,\xff\n2,ok\n", format="csv")
    assert isinstance(out[0], Rejection) and out[0].message == MSG_BAD_ENCODING
    assert out[0].record.line == 2 and out[0].record.raw == b"1,\xff"
    assert isinstance(out[1], Record) and out[1].line == 3


@pytest.mark.parametrize("header", [b"id,id\n", b"id,,t\n"])
def test_csv_bad_header(header: bytes) -> None:
    with pytest.raises(SourceError, match="header"):
        read(header + b"1,2,3\n", format="csv")


def test_csv_row_over_the_limit() -> None:
    data = b"id,d\n1," + b"x" * (CAP + 10) + b"\n2,y\n"
    out = read(data, format="csv")
    assert isinstance(out[0], Rejection) and out[0].message == sources.MSG_CSV_ROW_TOO_LARGE
    assert isinstance(out[1], Record) and out[1].line == 3


# --- JSON arrays ------------------------------------------------------------------


def test_json_array_elements() -> None:
    data = b'[\n  {"id": 1, "price": 1.50},\n  {"id": "b", "t": [1, 2]},\n  3\n]\n'
    out = records(data, format="json")
    assert [r.line for r in out] == [1, 2, 3]
    assert [r.raw for r in out] == [b'{"id":1,"price":1.5}', b'{"id":"b","t":[1,2]}', b"3"]
    assert all(r.offset == -1 for r in out)


def test_json_array_that_breaks_off() -> None:
    out = read(b'[{"id":1},{"id":2},{"id":3 "x"}, {"id":4}]', format="json", name="a.json")
    assert [type(x) for x in out] == [Record, Record, Rejection]
    assert isinstance(out[2], Rejection)
    assert out[2].message == sources.MSG_JSON_BROKEN and out[2].record.line == 3
    out = read(b'[{"id":1},', format="json")
    assert len(out) == 2 and isinstance(out[1], Rejection)


def test_json_top_level_object_is_one_product_and_scalars_are_refused() -> None:
    out = records(b'{\n  "id": 1,\n  "t": "x"\n}\n', format="json")
    assert [(r.line, r.raw) for r in out] == [(1, b'{"id":1,"t":"x"}')]
    with pytest.raises(SourceError, match="array"):
        read(b'"just a string"', format="json")
    assert read(b"[]", format="json") == []


# --- rejects files -------------------------------------------------------------------


def test_rejects_file_round_trip() -> None:
    lines = [
        {"product": {"id": 1, "t": ""}, "reason": "r", "stage": "client", "source": "a", "line": 4},
        {"product": "not json {", "reason": "r", "stage": "client", "source": "a", "line": 9},
        {"product": {"id": 2}, "reason": "r", "stage": "upload", "source": "a", "line": 12},
    ]
    data = b"\n".join(orjson.dumps(x) for x in lines) + b'\n\n{"id":3,"t":"fixed by hand"}\n'
    out = records(data, name="rejects.ndjson")
    assert [(r.line, r.raw) for r in out] == [
        (1, b'{"id":1,"t":""}'),
        (2, b"not json {"),
        (3, b'{"id":2}'),
        (5, b'{"id":3,"t":"fixed by hand"}'),
    ]
    assert all(r.source == "rejects.ndjson" for r in out)


# --- iterables -------------------------------------------------------------------------


def test_iter_objects() -> None:
    class Weird:
        pass

    from types import MappingProxyType

    items: list[object] = [
        {"id": 1},
        b' {"id":2}\n',
        '{"id":"3"}',
        "",
        MappingProxyType({"id": 4}),
        {"id": Weird()},
        "\ud800",
    ]
    out = list(iter_objects(items, name="py"))  # type: ignore[arg-type]
    assert [x.line if isinstance(x, Record) else x.record.line for x in out] == [1, 2, 3, 5, 6, 7]
    assert [x.raw for x in out[:4]] == [b'{"id":1}', b'{"id":2}', b'{"id":"3"}', b'{"id":4}']
    assert isinstance(out[4], Rejection) and out[4].message == sources.MSG_UNENCODABLE
    assert isinstance(out[5], Record)
    rejection = Validator()(out[5])
    assert rejection is not None and rejection.message == MSG_BAD_ENCODING


# --- properties: any bytes, every line ends in a bucket ----------------------------------


def nonblank_lines(data: bytes) -> list[int]:
    out = []
    for i, line in enumerate(data.split(b"\n"), 1):
        content = line[3:] if i == 1 and line.startswith(b"\xef\xbb\xbf") else line
        if content.strip():
            out.append(i)
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=400)
    | st.lists(
        st.sampled_from([b'{"id":1}', b"{", b"", b" \r", b'{"a":"\xff"}', b"\x00", b"[1]"]),
        max_size=20,
    ).map(b"\n".join)
)
def test_any_bytes_as_ndjson_every_line_ends_in_a_bucket(data: bytes) -> None:
    if data[:2] == b"\x1f\x8b" or data[:4] == b"\x28\xb5\x2f\xfd":
        return  # compressed by magic: covered by the SourceError property below
    validate = Validator()
    out = read(data, format="ndjson")
    assert [r.line for r in out] == nonblank_lines(data)
    for r in out:
        assert isinstance(r, Record)
        assert validate(r) is None or True


@settings(max_examples=300, deadline=None)
@given(
    fmt=st.sampled_from(["ndjson", "json", "csv", "rejects", None]),
    data=st.binary(max_size=300)
    | st.text(alphabet='[]{},:"\\\n\r abc1\x00', max_size=80).map(lambda s: s.encode())
    | st.binary(max_size=200).map(gzip.compress),
)
def test_any_bytes_in_any_format_raise_nothing_but_source_error(
    fmt: str | None, data: bytes
) -> None:
    validate = Validator()
    light = Validator(ValidationOptions(level="light"))
    try:
        out = read(data, format=fmt)
    except SourceError:
        return
    n_lines = data.count(b"\n") + 1
    for item in out:
        assert isinstance(item, Record | Rejection)
        record = item if isinstance(item, Record) else item.record
        if fmt in ("ndjson", "csv", "rejects") and data[:1] not in (b"\x1f",):
            assert 1 <= record.line <= n_lines
        if isinstance(item, Record):
            validate(item)
            light(item)


products = st.dictionaries(
    st.text(max_size=5),
    st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.text(max_size=8),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(products, max_size=15), st.booleans())
def test_json_arrays_give_one_record_per_element(
    items: list[dict[str, object]], pretty: bool
) -> None:
    data = orjson.dumps(items, option=orjson.OPT_INDENT_2 if pretty else 0)
    out = records(data, format="json")
    assert [orjson.loads(r.raw) for r in out] == items
    assert [r.line for r in out] == list(range(1, len(items) + 1))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(st.text(alphabet='ab,"\r\n x\xe9', max_size=6), min_size=3, max_size=3),
        max_size=12,
    )
)
def test_csv_written_by_the_csv_module_reads_back(rows: list[list[str]]) -> None:
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", "a", "b"])
    writer.writerows(rows)
    data = buf.getvalue().encode()
    out = read(data, format="csv")
    expected = [
        {k: v for k, v in zip(["id", "a", "b"], row, strict=True) if v}
        for row in rows
        if any(c.strip() for c in row)
    ]
    assert [orjson.loads(r.raw) for r in out if isinstance(r, Record)] == expected
    for r in out:
        assert isinstance(r, Record)
        assert data[r.offset :].startswith(data.split(b"\n")[r.line - 1])


def test_no_file_left_open(tmp_path: Path) -> None:
    path = tmp_path / "a.ndjson"
    path.write_bytes(b'{"id":1}\n' * 10)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        it = iter_records(path)
        next(it)
        it.close()  # type: ignore[attr-defined]
    assert len(os.listdir("/proc/self/fd")) <= before


# --- the record size cap ----------------------------------------------------------


def test_default_cap_is_the_stream_api_line_limit() -> None:
    from bulkpush.sources._framing import DEFAULT_MAX_RECORD_BYTES

    assert DEFAULT_MAX_RECORD_BYTES == CAP


def test_sources_do_not_import_the_stream_api_limits() -> None:
    package = Path(sources.__file__).parent
    for module in package.glob("*.py"):
        imports = re.findall(r"^\s*(?:from|import) (bulkpush\.limits)\b", module.read_text(), re.M)
        assert not imports, module.name


def test_max_record_bytes_caps_every_reader(tmp_path: Path) -> None:
    cap = 20
    long_line = b'{"id":"big","d":"' + b"x" * 100 + b'"}'
    data = b'{"id":1}\n' + long_line + b'\n{"id":3}\n'
    out = records(data, format="ndjson", max_record_bytes=cap)
    assert [r.line for r in out] == [1, 2, 3]
    assert out[1].raw == long_line[: cap + 1]
    assert out[2].offset == len(b'{"id":1}\n') + len(long_line) + 1

    rows = read(b"id,d\n1," + b"x" * 30 + b"\n2,y\n", format="csv", max_record_bytes=cap)
    assert isinstance(rows[0], Rejection)
    assert rows[0].message == "Product payload is too large: CSV row over 20 bytes"
    assert isinstance(rows[1], Record) and rows[1].line == 3

    (obj,) = records(long_line, format="json", max_record_bytes=cap)
    assert obj.raw == long_line[: cap + 1]

    path = tmp_path / "a.ndjson"
    path.write_bytes(data)
    ranged = list(sources.FileRange(str(path), start=1, first_line=2).records(max_record_bytes=cap))
    assert [(r.line, len(r.raw)) for r in ranged] == [(2, cap + 1), (3, 8)]
    whole = list(sources.FileRange(str(path)).records(max_record_bytes=cap))
    assert [r.line for r in whole] == [1, 2, 3] and len(whole[1].raw) == cap + 1


def test_max_record_bytes_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="max_record_bytes"):
        read(b'{"id":1}\n', max_record_bytes=0)


def test_public_names() -> None:
    assert set(sources.__all__) == {
        "DEFAULT_MAX_RECORD_BYTES",
        "MSG_CSV_EXTRA_CELLS",
        "MSG_CSV_MALFORMED",
        "MSG_CSV_ROW_TOO_LARGE",
        "MSG_JSON_BROKEN",
        "MSG_UNENCODABLE",
        "FileRange",
        "Format",
        "detect_format",
        "iter_objects",
        "iter_records",
        "open_source",
        "split_ranges",
    }
    for name in sources.__all__:
        assert hasattr(sources, name), name


def test_an_ndjson_file_without_an_extension_is_read_by_byte_ranges(tmp_path: Path) -> None:
    # A job's parts of a plain NDJSON file named without an extension: each
    # range is read as NDJSON (the content says so), every line exactly once.
    path = tmp_path / "catalog"
    path.write_bytes(b"".join(b'{"id":"%d","t":"x"}\n' % i for i in range(3000)))
    ids: list[str] = []
    for start, end, first_line in split_ranges(str(path), 3):
        for rec in FileRange(str(path), start=start, end=end, first_line=first_line).records():
            assert isinstance(rec, Record)
            ids.append(rec.product_id() or "")
    assert ids == [str(i) for i in range(3000)]
