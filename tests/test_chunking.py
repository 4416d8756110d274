from __future__ import annotations

import itertools

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bulkpush._chunking import BodyFormat, Chunker, body_size, encode_body
from bulkpush._records import Chunk, Record
from bulkpush.errors import CatalogTooSmall, ConfigError


def rec(i: int, size: int) -> Record:
    """A record whose raw is exactly ``size`` bytes (a JSON string; size >= 2)."""
    return Record("src", i + 1, -1, b'"' + b"x" * (size - 2) + b'"')


def run(chunker: Chunker, records: list[Record]) -> list[Chunk]:
    out: list[Chunk] = []
    for r in records:
        out += chunker.feed(r)
    out += chunker.flush()
    return out


def test_body_size_matches_encoding() -> None:
    recs = [rec(i, 20) for i in range(3)]
    chunk = Chunk(seq=0, records=recs, nbytes=body_size(60, 3, "ndjson"))
    assert len(encode_body(chunk, "ndjson")) == chunk.nbytes == 63
    assert encode_body(chunk, "ndjson").count(b"\n") == 3
    chunk_json = Chunk(seq=0, records=recs, nbytes=body_size(60, 3, "json"))
    body = encode_body(chunk_json, "json")
    assert len(body) == chunk_json.nbytes == 64
    assert orjson.loads(body) == ["x" * 18] * 3
    assert body_size(0, 0, "json") == 2
    assert body_size(0, 0, "ndjson") == 0


def test_count_limit_cuts_exactly() -> None:
    chunks = run(Chunker(max_count=3), [rec(i, 20) for i in range(7)])
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert [c.seq for c in chunks] == [0, 1, 2]


def test_feed_returns_a_full_chunk_as_soon_as_it_is_full() -> None:
    chunker = Chunker(max_count=2)
    assert chunker.feed(rec(0, 20)) == []
    done = chunker.feed(rec(1, 20))
    assert len(done) == 1 and len(done[0]) == 2
    assert chunker.flush() == []


def test_byte_limit_counts_separators() -> None:
    # three records of 20 bytes: 21 bytes each as NDJSON; 42 fit in 42, 63 do not
    chunks = run(Chunker(max_bytes=42), [rec(i, 20) for i in range(3)])
    assert [len(c) for c in chunks] == [2, 1]
    assert all(c.nbytes <= 42 for c in chunks)
    chunks = run(Chunker(max_bytes=62, body_format="json"), [rec(i, 20) for i in range(3)])
    assert [c.nbytes for c in chunks] == [43, 22]


def test_target_bytes_cuts_once_reached() -> None:
    chunks = run(Chunker(target_bytes=50), [rec(i, 20) for i in range(6)])
    assert [len(c) for c in chunks] == [3, 3]


def test_record_larger_than_max_bytes_is_a_programming_error() -> None:
    with pytest.raises(ConfigError, match="cannot fit"):
        Chunker(max_bytes=30).feed(rec(0, 40))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_count": 0},
        {"max_bytes": 1},
        {"min_bytes": -1},
        {"min_bytes": 60, "max_bytes": 100},
        {"target_bytes": 5, "min_bytes": 10, "max_bytes": 100},
        {"target_bytes": 500, "max_bytes": 100},
        {"body_format": "xml"},
    ],
)
def test_inconsistent_limits_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Chunker(**kwargs)  # type: ignore[arg-type]


def test_empty_input_gives_no_chunk() -> None:
    assert Chunker().flush() == []
    assert Chunker(min_bytes=100, max_bytes=1000).flush() == []


def test_catalog_too_small_for_a_referenced_stream() -> None:
    chunker = Chunker(min_bytes=10_000_000, max_bytes=200_000_000, body_format="json")
    for i in range(10):
        chunker.feed(rec(i, 100))
    with pytest.raises(CatalogTooSmall) as info:
        chunker.flush()
    assert isinstance(info.value, ConfigError)
    assert info.value.nbytes == body_size(1000, 10, "json")
    message = str(info.value)
    assert "1,011 bytes" in message and "10,000,000" in message and "chunked stream" in message


def test_small_tail_is_merged_into_the_held_chunk() -> None:
    # target 100, min 60: chunks of 5 x 21 bytes; a tail of 1 record is merged back
    chunker = Chunker(min_bytes=60, target_bytes=100, max_bytes=200)
    chunks = run(chunker, [rec(i, 20) for i in range(11)])
    assert [len(c) for c in chunks] == [5, 6]
    assert all(c.nbytes >= 60 for c in chunks)


def test_small_tail_is_balanced_when_it_cannot_be_merged() -> None:
    # max 130: 6 records (126 bytes) per chunk; a tail of 1 (21 bytes) cannot merge (147 > 130)
    chunker = Chunker(min_bytes=60, max_bytes=130)
    chunks = run(chunker, [rec(i, 20) for i in range(13)])
    assert [len(c) for c in chunks] == [6, 3, 4]
    assert all(60 <= c.nbytes <= 130 for c in chunks)
    assert [c.seq for c in chunks] == [0, 1, 2]


def test_count_cut_below_min_bytes_is_a_config_error() -> None:
    chunker = Chunker(max_count=2, min_bytes=100, max_bytes=1000)
    chunker.feed(rec(0, 20))
    with pytest.raises(ConfigError, match="max_count"):
        chunker.feed(rec(1, 20))


def test_repr_shows_state() -> None:
    chunker = Chunker(max_count=5)
    chunker.feed(rec(0, 20))
    assert "pending=1" in repr(chunker) and "next_seq=0" in repr(chunker)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, object], list[int]]:
    body_format: BodyFormat = draw(st.sampled_from(["ndjson", "json"]))
    max_record = draw(st.integers(10, 200))
    sizes = draw(st.lists(st.integers(10, max_record), max_size=120))
    referenced = draw(st.booleans())
    if referenced:
        # the chunker's contract: room to balance (max >= 2 * (min + largest record))
        min_bytes = draw(st.integers(1, 600))
        max_bytes = draw(st.integers(2 * (min_bytes + max_record + 2), 3000))
        target = draw(st.none() | st.integers(min_bytes, max_bytes))
        max_count = 10**9
    else:
        min_bytes = 0
        max_bytes = draw(st.integers(max_record + 2, 3000))
        target = draw(st.none() | st.integers(1, max_bytes))
        max_count = draw(st.integers(1, 50))
    kwargs: dict[str, object] = {
        "max_count": max_count,
        "max_bytes": max_bytes,
        "min_bytes": min_bytes,
        "target_bytes": target,
        "body_format": body_format,
    }
    return kwargs, sizes


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_any_sequence_gives_chunks_within_every_limit(
    scenario: tuple[dict[str, object], list[int]],
) -> None:
    kwargs, sizes = scenario
    records = [rec(i, size) for i, size in enumerate(sizes)]
    chunker = Chunker(**kwargs)  # type: ignore[arg-type]
    body_format = chunker.body_format
    total = body_size(sum(r.size for r in records), len(records), body_format)
    if records and total < chunker.min_bytes:
        with pytest.raises(CatalogTooSmall):
            run(chunker, records)
        return
    chunks = run(chunker, records)
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [r for c in chunks for r in c.records] == records
    for c in chunks:
        assert len(c) >= 1
        assert len(c) <= chunker.max_count
        assert c.nbytes <= chunker.max_bytes
        assert c.nbytes >= chunker.min_bytes
        assert len(encode_body(c, body_format)) == c.nbytes
        if body_format == "json":
            assert len(orjson.loads(encode_body(c, body_format))) == len(c)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(10, 100), min_size=1, max_size=60), st.integers(1, 10))
def test_memory_holds_at_most_the_current_and_one_held_chunk(sizes: list[int], count: int) -> None:
    chunker = Chunker(max_count=count)
    returned = 0
    for i, size in enumerate(sizes):
        returned += sum(len(c) for c in chunker.feed(rec(i, size)))
        assert (i + 1) - returned <= count


# --- SpanChunker: the span fast path cuts exactly where Chunker cuts ---------


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(2, 60), min_size=0, max_size=120),
    cuts=st.lists(st.integers(0, 120), max_size=6),
    max_count=st.integers(1, 25),
    max_bytes=st.integers(70, 400),
    target=st.one_of(st.none(), st.integers(0, 400)),
)
def test_span_chunker_cuts_where_chunker_cuts(sizes, cuts, max_count, max_bytes, target):
    import numpy as np

    from bulkpush._chunking import SpanChunker

    if target is not None and target > max_bytes:
        target = max_bytes
    raws = [b"{" + b"x" * (n - 2) + b"}" for n in sizes]
    records = [Record("s", i + 1, i * 100, raw) for i, raw in enumerate(raws)]
    chunker = Chunker(max_count=max_count, max_bytes=max_bytes, target_bytes=target)
    expected = [c for r in records for c in chunker.feed(r)] + chunker.flush()
    spans = SpanChunker(max_count=max_count, max_bytes=max_bytes, target_bytes=target)
    got = []
    bounds = sorted({0, len(raws), *(c for c in cuts if c <= len(raws))})
    for a, b in itertools.pairwise(bounds):
        body = bytearray(b"".join(r + b"\n" for r in raws[a:b]))
        starts = np.zeros(b - a + 1, dtype=np.uint32)
        np.cumsum([len(r) + 1 for r in raws[a:b]], out=starts[1:])
        lines = np.arange(a + 1, b + 1, dtype=np.int64)
        got += spans.feed("s", memoryview(body), starts, lines, lines * 100 - 100)
        body[:] = b"!" * len(body)  # the buffer is reused: what was kept must be a copy
    got += spans.flush()
    assert [len(c) for c in got] == [len(c) for c in expected]
    assert [c.seq for c in got] == list(range(len(got)))
    for g, e in zip(got, expected, strict=True):
        assert encode_body(g, "ndjson") == encode_body(e, "ndjson")
        assert g.nbytes == e.nbytes
        assert [(r.line, r.offset, r.raw) for r in g.records] == [
            (r.line, r.offset, r.raw) for r in e.records
        ]
