"""The span fast path (bulkpush._spans.check_block) gives exactly what the per-line path gives.

The reference is today's path: ``read_ndjson`` over the same bytes, then the
``Validator`` on each record. Explicit cases cover what the fast path must
send to the fallback; a hypothesis fuzz mutates sample products.
"""

from __future__ import annotations

import io
from array import array
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkpush import _validation as v
from bulkpush._records import Record, Rejection
from bulkpush._spans import BlockResult, check_block
from bulkpush._validation import ValidationOptions, Validator
from bulkpush.samples import iter_products
from bulkpush.sources._framing import DEFAULT_MAX_RECORD_BYTES
from bulkpush.sources._ndjson import read_ndjson

FULL = Validator()
LIGHT = Validator(ValidationOptions(level="light"))
FLAT = Validator(ValidationOptions(flatten=True))
SMALL = Validator(ValidationOptions(max_product_bytes=200))
VALIDATORS = {"full": FULL, "light": LIGHT, "flatten": FLAT, "small": SMALL}
SOURCE = "cat.ndjson"
CAP = DEFAULT_MAX_RECORD_BYTES

BOM = b"\xef\xbb\xbf"


@dataclass
class Expected:
    body: bytes
    kept: list[tuple[int, int]]  # (line, offset)
    rejections: list[tuple[str, int, int, bytes, str | None, str, str]]
    read: int


def reference(
    data: bytes, validator: Validator, *, first_line: int, base_offset: int, cap: int
) -> Expected:
    """Today's path: read_ndjson, then the Validator on each record."""
    records = read_ndjson(
        io.BytesIO(data).read, b"", SOURCE, cap=cap, line_no=first_line, offset=base_offset
    )
    body: list[bytes] = []
    kept: list[tuple[int, int]] = []
    rejections = []
    read = 0
    for record in records:
        read += 1
        rejection = validator(record)
        if rejection is None:
            body.append(record.raw + b"\n")
            kept.append((record.line, record.offset))
        else:
            r = rejection.record
            assert r is record
            rejections.append(
                (r.source, r.line, r.offset, r.raw, r.id, rejection.message, rejection.stage)
            )
    return Expected(b"".join(body), kept, rejections, read)


def actual(
    data: bytes,
    validator: Validator,
    *,
    first_line: int,
    base_offset: int,
    cap: int,
    wrap: bool = False,
) -> tuple[Expected, BlockResult]:
    block: bytes | memoryview = data
    if wrap:  # a view of the start of a larger reused buffer, with stale bytes past it
        buf = bytearray(data) + bytearray(b'\n{"id":"stale"}\n[' * 3)
        block = memoryview(buf)[: len(data)]
    result = check_block(
        block,
        validator,
        source=SOURCE,
        first_line=first_line,
        base_offset=base_offset,
        bom=base_offset == 0,
        cap=cap,
    )
    body = bytes(result.body)
    starts = result.starts
    lines = result.lines
    assert starts.dtype == np.uint32
    assert lines.dtype == np.int64
    assert len(starts) == len(lines) + 1
    assert int(starts[0]) == 0
    assert int(starts[-1]) == len(body)
    products = [body[int(a) : int(b) - 1] for a, b in pairwise(starts.tolist())]
    assert b"".join(p + b"\n" for p in products) == body
    assert all(b"\n" not in p for p in products)
    line_starts = [0]
    for i, byte in enumerate(data):
        if byte == 10:
            line_starts.append(i + 1)
    assert result.line_starts.tolist() == line_starts  # every line's start, then the end
    kept = [(first_line + int(i), base_offset + line_starts[int(i)]) for i in lines]
    assert list(lines) == sorted(set(lines.tolist()))
    rejections = []
    for rejection in result.rejections:
        r = rejection.record
        rejections.append(
            (r.source, r.line, r.offset, r.raw, r.id, rejection.message, rejection.stage)
        )
    return Expected(body, kept, rejections, result.read), result


def check(
    data: bytes,
    validator: Validator = FULL,
    *,
    first_line: int = 1,
    base_offset: int = 0,
    cap: int = CAP,
    wrap: bool = False,
) -> BlockResult:
    """Assert check_block == the reference, with and without a reused-buffer view."""
    if not data.endswith(b"\n"):
        data += b"\n"
    want = reference(data, validator, first_line=first_line, base_offset=base_offset, cap=cap)
    got, result = actual(
        data, validator, first_line=first_line, base_offset=base_offset, cap=cap, wrap=wrap
    )
    assert got.body == want.body
    assert got.kept == want.kept
    assert got.rejections == want.rejections
    assert got.read == want.read
    if not wrap:
        again, _ = actual(
            data, validator, first_line=first_line, base_offset=base_offset, cap=cap, wrap=True
        )
        assert again == got
    return result


def lines(*products: bytes) -> bytes:
    return b"".join(p + b"\n" for p in products)


P1 = b'{"id":"a1","title":"One"}'
P2 = b'{"id":2,"title":"Two","price":"3.50 EUR"}'
P3 = b'{"id":"c3","title":"Three","stock":4,"ok":true,"none":null}'


def rejected_messages(result: BlockResult) -> list[str]:
    return [r.message for r in result.rejections]


def test_clean_block_is_the_body_without_a_copy() -> None:
    data = lines(P1, P2, P3)
    result = check(data)
    assert result.body is data
    assert result.lines.tolist() == [0, 1, 2]
    assert result.starts.tolist() == [0, len(P1) + 1, len(P1) + len(P2) + 2, len(data)]
    buf = bytearray(data) + bytearray(100)
    view = memoryview(buf)[: len(data)]
    result = check_block(view, FULL, source=SOURCE, first_line=1, base_offset=0, bom=True, cap=CAP)
    assert isinstance(result.body, memoryview)
    assert result.body.obj is buf
    assert bytes(result.body) == data


def test_empty_block() -> None:
    result = check_block(b"", FULL, source=SOURCE, first_line=1, base_offset=0, bom=True, cap=CAP)
    assert bytes(result.body) == b""
    assert result.starts.tolist() == [0]
    assert result.read == 0


def test_a_block_must_end_with_a_newline() -> None:
    with pytest.raises(ValueError, match="whole lines"):
        check_block(P1, FULL, source=SOURCE, first_line=1, base_offset=0, bom=True, cap=CAP)


@pytest.mark.parametrize("name", list(VALIDATORS))
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lines(P1, P2, P3), id="clean"),
        pytest.param(P1 + b"\r\n" + P2 + b"\r\n" + P3 + b"\r\n", id="crlf"),
        pytest.param(lines(P1, b'{"id":"x",\r"a":1}', P2), id="cr-between-tokens"),
        pytest.param(lines(P1, b'{"id":"x","a":"b\rc"}'), id="cr-in-string"),
        pytest.param(lines(P1, '{"id":"x","a":"b\u2028c\u2029"}'.encode(), P2), id="u2028-raw"),
        pytest.param(lines(P1, b'{"id":"x","a":"b\\u2028c\\u2029"}', P2), id="u2028-escaped"),
        pytest.param(lines(BOM + P1, P2), id="bom-first"),
        pytest.param(lines(b"  " + BOM + b" " + P1, P2), id="bom-after-spaces"),
        pytest.param(lines(P1, BOM + P2), id="bom-later"),
        pytest.param(lines(b"", P1, b"", b"", P2, b"  \t", b"\x0b\x0c", P3, b""), id="blank"),
        pytest.param(lines(b"", BOM + P1), id="blank-then-bom"),
        pytest.param(lines(P1, b"", b'{"id":"x","a":{"b":1}}', P2), id="blank-and-nested"),
        pytest.param(lines(P1, b"  ", b'{"id":"x","a":{"b":1}}'), id="space-and-nested"),
        pytest.param(lines(BOM), id="bom-alone"),
        pytest.param(lines(b"  " + P1, P2 + b" ", b"\t" + P3 + b"\t "), id="spaces"),
        pytest.param(lines(b'{"id":"x","a":{"b":1}}', P1), id="nested-object"),
        pytest.param(lines(P1, b'{"id":"x","a":[1,2,{"c":null}]}'), id="nested-array"),
        pytest.param(lines(P1, b'{"id":"x","a":{},"b":[]}'), id="nested-empty"),
        pytest.param(lines(P1, b'{"id":"x","a.b":1,"a":{"b":2}}'), id="flatten-collision"),
        pytest.param(lines(P1, b'{"id":"x","a":"{"}', b'{"id":"y","a":"[x]"}'), id="brace-in-str"),
        pytest.param(lines(b'{"id":"x","id":""}', b'{"id":"","id":"y"}', P2), id="dup-id"),
        pytest.param(lines(b'{"id":"x","id":true}', b'{"id":null,"id":3}'), id="dup-id-types"),
        pytest.param(lines(P1, b'{"id":"\xff"}', b'{"id":"x","a":"\xc3"}', P2), id="bad-utf8"),
        pytest.param(lines(P1, b'{"id":"x","a":"\xed\xa0\x80"}'), id="utf8-surrogate"),
        pytest.param(lines(P1, '{"id":"é","a":"ü"}'.encode(), P2), id="non-ascii"),
        pytest.param(lines(b'{"id":"x","a":"\x00"}', b'{"id":"x","a":"\t"}', P1), id="control"),
        pytest.param(lines(b'{"id":"x",\x0b"a":1}', b'{"id":"x",\t"a":1}'), id="control-out"),
        pytest.param(lines(P1, b'{"id":"x","a":"\\ud800"}', P2), id="lone-surrogate"),
        pytest.param(lines(P1, b'{"id":"x","a":"\\ud800"}'), id="lone-surrogate-last"),
        pytest.param(lines(b'{"id":"x","a":"\\udc00\\ud800"}', P1), id="bad-surrogate-pair"),
        pytest.param(lines(b'{"id":"x","a":"\\ud83d\\ude00"}', P1), id="surrogate-pair"),
        pytest.param(lines(b'{"title":"no id"}', P1), id="id-missing"),
        pytest.param(lines(b'{"id":"","t":"x"}', b'{"id":null,"t":"x"}'), id="id-empty-null"),
        pytest.param(lines(b'{"id":true,"t":"x"}', b'{"id":false}'), id="id-bool"),
        pytest.param(lines(b'{"id":0}', b'{"id":1.5}', b'{"id":-0}', b'{"id":1E+2}'), id="id-num"),
        pytest.param(lines(b'{"id":" "}', b'{"id":"\\t"}', b'{"id":"\\u0000"}'), id="id-space"),
        pytest.param(lines(b'{"id":{"a":1}}', b'{"id":[1]}'), id="id-nested"),
        pytest.param(
            lines(b'{"id":' + b"9" * 25 + b"}", b'{"id":18446744073709551616}'), id="id-big"
        ),
        pytest.param(
            lines(b'{"id":9223372036854775807}', b'{"id":-9223372036854775809}'), id="i64"
        ),
        pytest.param(
            lines(b'{"id":1e308}', b'{"id":1e309}', b'{"id":1e-400}'), id="id-float-range"
        ),
        pytest.param(lines(b'{"\\u0069d":"x"}', b'{"i\\u0064":"y","a":1}', P1), id="escaped-key"),
        pytest.param(lines(b'{"id":"x","\\u0069d":""}', P1), id="escaped-dup-key"),
        pytest.param(lines(b"{}", b'{"id":"","a":null,"b":""}', b'{"a":null}'), id="empty-attrs"),
        pytest.param(lines(P1 + P2, P1 + b" " + P2, P3), id="two-objects"),
        pytest.param(lines(b"[]", b'"x"', b"1", b"null", b"[" + P1 + b"]", P2), id="not-object"),
        pytest.param(lines(b"{", b'"id":"x"}', b'{"id":"y",', b'"a":1}'), id="split-object"),
        pytest.param(lines(b'{"id":"x","a":01}', b'{"id":"x",}', b'{"id":"x"}}', P1), id="syntax"),
        pytest.param(lines(b'{"id":"x","a":"}', b'{"}', P1), id="string-over-lines"),
        pytest.param(lines(b'{"id":"a\\"}', P1, b'{"id":"b\\\\"}'), id="escaped-quote"),
        pytest.param(lines(b'{"id":"x","a":NaN}', b'{"id":"x","a":1e-400}', P1), id="numbers"),
        pytest.param(lines(b"}", b"{", b"{}}", b"{{}", b"x"), id="fragments"),
        pytest.param(lines(P1, b'{"id":"x","a":"' + b"y" * 250 + b'"}', P2), id="over-small-max"),
        pytest.param(lines(b"\r", b"\r\r", P1 + b"\r\r", b"\r" + P2), id="lone-cr"),
        pytest.param(lines(P1, b"\x00", b"\xff", P2), id="garbage"),
        pytest.param(P1 + b"\n" + P2, id="last-line-without-newline"),
    ],
)
def test_same_as_the_per_line_path(data: bytes, name: str) -> None:
    check(data, VALIDATORS[name])
    check(data, VALIDATORS[name], first_line=41, base_offset=12_345, wrap=True)


def test_bom_is_dropped_only_at_stream_offset_zero() -> None:
    data = lines(BOM + P1, P2)
    assert check(data).read == 2
    assert rejected_messages(check(data)) == []
    result = check(data, base_offset=100)  # bom=False: the BOM is part of the product
    assert rejected_messages(result) == [v.MSG_SYNTAX]
    result = check(lines(P1, BOM + P2))
    assert rejected_messages(result) == [v.MSG_SYNTAX]


def test_crlf_bodies_are_normalised() -> None:
    result = check(P1 + b"\r\n" + P2 + b"\r\n")
    assert bytes(result.body) == lines(P1, P2)
    assert result.lines.tolist() == [0, 1]


def test_flatten_rewrites_and_light_keeps() -> None:
    nested = b'{"id":"x","a":{"b":1},"c":[2]}'
    data = lines(P1, nested, P2)
    assert rejected_messages(check(data)) == [v.MSG_NESTED]
    flat = check(data, FLAT)
    assert bytes(flat.body) == lines(P1, b'{"id":"x","a.b":1,"c.0":2}', P2)
    assert flat.lines.tolist() == [0, 1, 2]
    assert bytes(check(data, LIGHT).body) == data


def test_line_break_between_tokens_is_re_encoded() -> None:
    result = check(lines(P1, b'{"id":"x",\r"a":1}'))
    assert bytes(result.body) == lines(P1, b'{"id":"x","a":1}')


def test_blank_lines_count_for_line_numbers_but_are_not_products() -> None:
    result = check(lines(b"", P1, b"   ", P2), first_line=10, base_offset=7)
    assert result.read == 2
    assert result.lines.tolist() == [1, 3]


@pytest.mark.parametrize("name", list(VALIDATORS))
def test_lines_over_max_and_over_cap(name: str) -> None:
    big = b'{"id":"big","a":"' + b"z" * 400 + b'"}'
    data = lines(P1, big, b"   " + big, P2, big)
    check(data, VALIDATORS[name], cap=CAP)
    check(data, VALIDATORS[name], cap=300)  # cut short to cap + 1 bytes, not stripped
    check(data, VALIDATORS[name], cap=50, first_line=3, base_offset=9)
    check(lines(BOM + big, P1), VALIDATORS[name], cap=100)


def test_too_large_product_is_named_by_its_early_id() -> None:
    big = b'{"id":"big","a":"' + b"z" * 400 + b'"}'
    result = check(lines(P1, big), SMALL)
    assert [(r.record.id, r.message) for r in result.rejections] == [("big", v.MSG_TOO_LARGE)]


@pytest.mark.parametrize("value", [b"1e309", b"-1e309", b"1" * 400, b"1e0400", b"1" * 310 + b".5"])
def test_known_divergence_numbers_that_overflow_a_double(value: bytes) -> None:
    """KNOWN, ACCEPTED DIVERGENCE (bulkpush._spans docstring): a number that overflows a
    double in a value other than the id. Today's path rejects it (orjson makes it infinite),
    the fast path keeps it (msgspec only checks the syntax of values it skips)."""
    product = b'{"id":"x","n":' + value + b"}"
    data = lines(P1, product)
    want = reference(data, FULL, first_line=1, base_offset=0, cap=CAP)
    assert [r[5] for r in want.rejections] == [v.MSG_SYNTAX]
    got, _ = actual(data, FULL, first_line=1, base_offset=0, cap=CAP)
    assert got.rejections == []
    assert got.body == data
    # As the id it is caught (msgspec floats are finite; ints past int64 fall back).
    check(lines(P1, b'{"id":' + value + b"}"))


@pytest.mark.xfail(strict=True, reason="known divergence: 1e309 in a non-id value is kept")
def test_known_divergence_marked() -> None:
    check(lines(P1, b'{"id":"x","n":1e309}'))


def test_many_suspect_lines_in_a_large_block() -> None:
    products = list(iter_products(600, seed=3, size="small", broken=0))
    tricky = [b"", b'{"id":""}', b'{"id":"x","a":"\\ud800"}', b"  " + P1, P1 + b"\r", b"{"]
    for k, t in enumerate(tricky * 10):
        products.insert((k * 37) % len(products), t)
    check(lines(*products))
    check(lines(*products), LIGHT, first_line=5, base_offset=99)


# --- fuzz -------------------------------------------------------------------------------

POOL = list(iter_products(30, seed=1, size="small")) + list(iter_products(20, seed=2))
TOKENS = [
    *(bytes([c]) for c in b'{}[]",:'),
    b"\r",
    b"\r\n",
    b"\n\n",
    b"\n",
    b"\x00",
    b"\xff",
    "é".encode(),
    BOM,
    "\u2028".encode(),
    b"\\ud800",
    b"\\u0069",
    b"true",
    b"null",
    b'"id":',
    b'""',
    b" ",
    b"\\",
]

mutation = st.tuples(
    st.sampled_from(["insert", "replace", "delete"]),
    st.floats(min_value=0, max_value=1, exclude_max=True),
    st.sampled_from(TOKENS),
    st.integers(min_value=1, max_value=4),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(st.integers(min_value=0, max_value=len(POOL) - 1), min_size=1, max_size=25),
    mutations=st.lists(mutation, max_size=8),
    name=st.sampled_from(list(VALIDATORS)),
    offset=st.sampled_from([0, 0, 1000]),
    cap=st.sampled_from([CAP, CAP, 180]),
    wrap=st.booleans(),
)
def test_fuzz_same_as_the_per_line_path(
    picks: list[int],
    mutations: list[tuple[str, float, bytes, int]],
    name: str,
    offset: int,
    cap: int,
    wrap: bool,
) -> None:
    data = bytearray(lines(*(POOL[i] for i in picks)))
    for op, where, token, length in mutations:
        at = int(where * len(data))
        if op == "insert":
            data[at:at] = token
        elif op == "replace":
            data[at : at + length] = token
        else:
            del data[at : at + length]
    check(
        bytes(data),
        VALIDATORS[name],
        first_line=1 + offset // 10,
        base_offset=offset,
        cap=cap,
        wrap=wrap,
    )


def test_other_buffers() -> None:
    data = lines(P1, b"", b'{"id":""}', P2)
    want = check(data)
    for block in (memoryview(array("B", data)), memoryview(data).cast("c")):
        result = check_block(
            block, FULL, source=SOURCE, first_line=1, base_offset=0, bom=True, cap=CAP
        )
        assert bytes(result.body) == bytes(want.body)
        assert result.lines.tolist() == want.lines.tolist()
        assert result.rejections == want.rejections


def test_a_crlf_block_stays_on_the_fast_path() -> None:
    class Counting(Validator):
        calls = 0

        def __call__(self, record: Record) -> Rejection | None:
            Counting.calls += 1
            return super().__call__(record)

    data = b"".join(b'{"id":"%d","t":"windows"}\r\n' % i for i in range(1000))
    result = check_block(
        data, Counting(), source=SOURCE, first_line=1, base_offset=0, bom=True, cap=10_000
    )
    assert Counting.calls == 0  # every CR ends a line: checked as LF lines, none suspect
    assert bytes(result.body) == data.replace(b"\r\n", b"\n")
    data2 = data + b'{"id":"y","t":"a lone \r inside"}\n'
    check_block(data2, Counting(), source=SOURCE, first_line=1, base_offset=0, bom=True, cap=10_000)
    assert Counting.calls == 1001  # a CR inside a line: no normalising, the CRLF lines fall back
