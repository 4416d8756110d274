"""Merging the parts' rejects files: each product once, in part order, in bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import orjson
import pytest

from bulkpush._records import Record, Rejection
from bulkpush.report import rejects_line
from bulkpush.worker.runner import merge_rejects, rejects_part_path

pytestmark = pytest.mark.timeout(60)

SOURCE = "/data/catalog.ndjson"


def reject(line: int, reason: str = "missing id", product: bytes | None = None) -> bytes:
    raw = product if product is not None else b'{"title":"p%d"}' % line
    return rejects_line(Rejection(Record(SOURCE, line, line * 20, raw), "client", reason))


def write_attempt(
    rejects: Path, part: int, attempt: int, first_line: int, lines: list[bytes], tail: bytes = b""
) -> Path:
    path = Path(rejects_part_path(str(rejects), part, attempt, first_line))
    path.write_bytes(b"".join(lines) + tail)
    return path


def merged(rejects: Path) -> list[tuple[int, str]]:
    return [(d["line"], d["reason"]) for d in map(orjson.loads, rejects.read_bytes().splitlines())]


def test_a_resumed_part_writes_each_product_once(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.ndjson"
    # Part 0: attempt 1 checkpointed at line 10 and died; line 12 was in
    # flight, rejected, and written, and is read again by attempt 2 (which
    # rejects it for a reason of its own). Attempt 2's last line is half-written.
    write_attempt(rejects, 0, 1, 1, [reject(3), reject(7), reject(12, "first try")])
    killed = write_attempt(rejects, 0, 2, 10, [reject(12), reject(15)])
    killed.rename(str(killed) + ".tmp")  # the name of a file whose writer died
    write_attempt(rejects, 0, 3, 14, [reject(15), reject(18)], tail=b'{"product":{"ti')
    write_attempt(rejects, 1, 1, 101, [reject(105)])
    other = tmp_path / "rejects.ndjson.partial-notes"  # not a part file: left alone
    other.write_bytes(b"keep me\n")
    assert merge_rejects(str(rejects)) == 6
    assert merged(rejects) == [
        (3, "missing id"),
        (7, "missing id"),
        (12, "missing id"),
        (15, "missing id"),
        (18, "missing id"),
        (105, "missing id"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "rejects.ndjson",
        "rejects.ndjson.partial-notes",
    ]


def test_a_whole_file_part_keeps_its_last_attempt_only(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.ndjson"
    # Restarted from line 1: the second attempt read everything again.
    write_attempt(rejects, 0, 1, 1, [reject(2, "old"), reject(9, "old")])
    write_attempt(rejects, 0, 2, 1, [reject(2), reject(9), reject(40)])
    assert merge_rejects(str(rejects)) == 3
    assert merged(rejects) == [(2, "missing id"), (9, "missing id"), (40, "missing id")]


def test_attempts_are_taken_in_the_order_they_ran(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.ndjson"
    # By name, attempt 10 sorts before attempt 2.
    for attempt in range(2, 10):
        write_attempt(rejects, 0, attempt, 1 + attempt, [reject(50, f"attempt {attempt}")])
    write_attempt(rejects, 0, 10, 40, [reject(50, "attempt 10")])
    assert merge_rejects(str(rejects)) == 1
    assert merged(rejects) == [(50, "attempt 10")]


def test_identical_products_on_different_lines_are_all_kept(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.ndjson"
    same = b'{"title":"twin"}'
    write_attempt(rejects, 0, 1, 1, [reject(4, product=same), reject(5, product=same)])
    write_attempt(rejects, 0, 2, 5, [reject(5, product=same)])
    assert merge_rejects(str(rejects)) == 2
    assert merged(rejects) == [(4, "missing id"), (5, "missing id")]


def test_files_named_before_first_lines_were_recorded_are_merged_as_before(
    tmp_path: Path,
) -> None:
    rejects = tmp_path / "rejects.ndjson"
    (tmp_path / "rejects.ndjson.part00000-1").write_bytes(reject(3) + reject(12))
    (tmp_path / "rejects.ndjson.part00000-2").write_bytes(reject(12) + reject(15))
    write_attempt(rejects, 0, 3, 14, [reject(15)])  # a newer worker finished it
    (tmp_path / "rejects.ndjson.part00001-1").write_bytes(reject(105))
    assert merge_rejects(str(rejects)) == 4
    assert [line for line, _ in merged(rejects)] == [3, 12, 15, 105]
    assert [p.name for p in tmp_path.iterdir()] == ["rejects.ndjson"]


def test_no_part_files_make_an_empty_file(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.ndjson"
    assert merge_rejects(str(rejects)) == 0
    assert rejects.read_bytes() == b""


def test_memory_does_not_grow_with_the_rejects(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.ndjson"
    filler = b"x" * 200
    per_part = 20_000
    for part in range(3):
        first = 1 + part * per_part
        lines = [
            reject(n, product=b'{"title":"%d","f":"%s"}' % (n, filler))
            for n in range(first, first + per_part)
        ]
        write_attempt(rejects, part, 1, first, lines)
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert size > 15_000_000
    tracemalloc.start()
    try:
        assert merge_rejects(str(rejects)) == 3 * per_part
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A set of the lines seen would hold all ~15 MB of them.
    assert peak < 1_000_000, peak
    assert rejects.stat().st_size == size
