"""NDJSON read as blocks (the span fast path's reader) makes the lines ``read_ndjson`` makes."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from bulkpush._records import Record
from bulkpush.sources._blocks import Block, read_ndjson_blocks
from bulkpush.sources._framing import BOM, WS
from bulkpush.sources._ndjson import read_ndjson
from bulkpush.sources._open import reader_into, safe_reader


def _reference(data: bytes, cap: int, *, offset: int = 0, end: int | None = None, line: int = 1):
    f = io.BytesIO(data[offset:])
    gen = read_ndjson(safe_reader(f, "s"), b"", "s", cap=cap, line_no=line, offset=offset, end=end)
    out = []
    while True:
        try:
            r = next(gen)
        except StopIteration as stop:
            return out, stop.value
        out.append((r.line, r.offset, r.raw))


def _from_blocks(
    data: bytes, cap: int, block: int, *, offset: int = 0, end: int | None = None, line: int = 1
):
    """The records a consumer of the blocks makes: each block split at its line ends."""
    f = io.BytesIO(data[offset:])
    gen = read_ndjson_blocks(
        reader_into(f, "s"), b"", "s", cap=cap, line_no=line, offset=offset, end=end,
        block_size=block,
    )  # fmt: skip
    out = []
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return out, stop.value
        if isinstance(item, Record):
            out.append((item.line, item.offset, item.raw))
            continue
        assert isinstance(item, Block)
        data_ = bytes(item.data)
        assert data_.endswith(b"\n")
        pos, ln = item.offset, item.line
        for text in data_[:-1].split(b"\n"):
            raw = text[: cap + 1] if len(text) > cap else text.strip(WS)
            if pos == 0 and raw.startswith(BOM):
                raw = raw[len(BOM) :].strip(WS)
            if raw:
                out.append((ln, pos, raw))
            pos += len(text) + 1
            ln += 1


LINES = st.lists(
    st.one_of(
        st.sampled_from([b"", b"  ", b'{"id":1}', b'{"id":"a b"}\r', b"\t{}", BOM + b'{"id":2}']),
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
        st.integers(30, 200).map(lambda n: b'{"x":"' + b"y" * n + b'"}'),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(LINES, st.booleans(), st.sampled_from([64, 100, 257, 4096]), st.integers(8, 120))
def test_blocks_make_the_records_of_read_ndjson(lines, final_newline, block, cap):
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    assert _from_blocks(data, cap, block) == _reference(data, cap)


@settings(max_examples=150, deadline=None)
@given(LINES, st.sampled_from([64, 100, 4096]), st.data())
def test_a_byte_range_gives_the_lines_starting_in_it(lines, block, data):
    text = b"\n".join(lines) + b"\n"
    starts = [0, *[i + 1 for i, b in enumerate(text) if b == 10][:-1]]
    k = data.draw(st.integers(0, len(starts) - 1))
    start = starts[k]
    end = data.draw(st.integers(start, len(text) + 1))
    got = _from_blocks(text, 50, block, offset=start, end=end, line=k + 1)
    assert got == _reference(text, 50, offset=start, end=end, line=k + 1)


def test_a_line_longer_than_the_buffer_is_one_truncated_record():
    long = b'{"id":"x","d":"' + b"z" * 10_000 + b'"}'
    data = b'{"id":1}\n' + long + b'\n{"id":2}\n' + long
    got, stop = _from_blocks(data, 100, 64)
    assert got == _reference(data, 100)[0]
    assert stop == len(data)
    assert [g[0] for g in got] == [1, 2, 3, 4]
    assert got[1][2] == long[:101] and got[3][2] == long[:101]


def test_the_consumer_may_give_the_line_count():
    data = b'{"id":1}\n\n{"id":2}\n'
    gen = read_ndjson_blocks(reader_into(io.BytesIO(data), "s"), b"", "s", cap=50)
    block = next(gen)
    assert isinstance(block, Block) and block.line == 1 and block.offset == 0
    block.nlines = 3
    try:
        next(gen)
    except StopIteration as stop:
        assert stop.value == len(data)


def test_a_read_that_fails_gives_the_whole_lines_before_it_then_raises():
    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = False

        def readinto(self, b):  # type: ignore[no-untyped-def]
            if self.sent:
                raise OSError("the disk failed")
            self.sent = True
            data = b'{"id":1}\n{"id":2}\n{"id":'
            b[: len(data)] = data
            return len(data)

    gen = read_ndjson_blocks(reader_into(Failing(), "s"), b"", "s", cap=50)
    block = next(gen)
    assert isinstance(block, Block) and bytes(block.data) == b'{"id":1}\n{"id":2}\n'
    try:
        next(gen)
    except Exception as exc:
        assert "the disk failed" in str(exc.__cause__ or exc)
    else:
        raise AssertionError("the failure was not raised")
