from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bulkpush.report as report_module
from bulkpush._records import Chunk, Outcome, Record, Rejection, Unattributed
from bulkpush.report import (
    CONTRACT_KEYS,
    RejectsWriter,
    Report,
    merge_reports,
    redact,
    render_summary,
)

_seq = itertools.count()


def rec(
    line: int, source: str = "cat.ndjson", pid: str | None = None, raw: bytes | None = None
) -> Record:
    if raw is None:
        raw = orjson.dumps({"id": pid if pid is not None else f"p{line}", "name": "x"})
    return Record(source=source, line=line, offset=line * 10, raw=raw)


def chunk(first_line: int, n: int, source: str = "cat.ndjson") -> Chunk:
    records = [rec(first_line + i, source) for i in range(n)]
    return Chunk(seq=next(_seq), records=records, nbytes=sum(r.size + 1 for r in records))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- accounting ----------------------------------------------------------------


@st.composite
def events(draw: st.DrawFn) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    line = 1
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["client", "outcome", "not_sent", "bad_outcome"]))
        if kind == "client":
            r = rec(line)
            reasons = draw(st.integers(1, 3))  # one rejection per failed check
            out.append(("client", [Rejection(r, "client", f"check {i}") for i in range(reasons)]))
            line += 1
        elif kind == "not_sent":
            k = draw(st.integers(0, 5))
            out.append(("not_sent", k))
            line += k
        else:
            n = draw(st.integers(1, 15))
            c = chunk(line, n)
            line += n
            named_n = draw(st.integers(0, n))
            left = n - named_n
            unattr_n = draw(st.integers(0, left))
            left -= unattr_n
            not_sent = draw(st.integers(0, left))
            accepted = left - not_sent
            named = [
                Rejection(r, "upload", draw(st.sampled_from("ABC"))) for r in c.records[:named_n]
            ]
            if named and draw(st.booleans()):  # one product named under a second message
                named.append(Rejection(named[0].record, "upload", "D"))
            unattributed = (
                [Unattributed("A", unattr_n, c.first.source, c.first.line, c.last.line)]
                if unattr_n
                else []
            )
            if kind == "bad_outcome":  # an outcome that does not add up to its chunk
                accepted = draw(st.integers(0, 2 * n))
            attempts = draw(st.integers(1, 4))
            out.append(
                (
                    "outcome",
                    Outcome(
                        chunk=c,
                        status=202 if named or unattributed else 200,
                        batch_id=f"b{c.seq}",
                        accepted=accepted,
                        rejections=named,
                        unattributed=unattributed,
                        not_sent=not_sent,
                        attempts=attempts,
                        throttled=draw(st.integers(0, attempts - 1)),
                        bytes_sent=c.nbytes,
                    ),
                )
            )
    return out


def feed(report: Report, evs: list[tuple[str, Any]]) -> None:
    for kind, ev in evs:
        if kind == "client":
            report.add_read(1, ev[0].record.size + 1)
            for r in ev:
                report.add_rejection(r)
        elif kind == "not_sent":
            report.add_read(ev)
            report.add_not_sent(ev)
        else:
            report.add_read(len(ev.chunk), ev.chunk.nbytes)
            report.add_outcome(ev)


@settings(max_examples=200, deadline=None)
@given(events(), st.integers(0, 3))
def test_accounting_balances_for_any_mix(evs: list[tuple[str, Any]], max_examples: int) -> None:
    report = Report(max_examples=max_examples)
    feed(report, evs)
    report.finish(stopped="stream disabled (403)" if evs else None)
    assert report.balanced
    d = report.to_dict()
    assert set(CONTRACT_KEYS) <= set(d)
    assert d["read"] == d["accepted"] + d["rejected"] + d["not_sent"]
    assert json.loads(json.dumps(d)) == d
    assert orjson.loads(orjson.dumps(d)) == d
    outcomes = [ev for kind, ev in evs if kind == "outcome"]
    assert d["requests"] == sum(o.attempts for o in outcomes)
    assert d["retries"] == sum(o.attempts - 1 for o in outcomes)
    assert d["throttled"] == sum(o.throttled for o in outcomes)
    assert d["batches"] == [o.batch_id for o in outcomes]
    occurrences = sum(e["occurrences"] for e in d["errors"])
    expected = sum(len(ev) for kind, ev in evs if kind == "client") + sum(
        len(o.rejections) + o.unattributed_count for o in outcomes
    )
    assert occurrences == expected
    assert [e["occurrences"] for e in d["errors"]] == sorted(
        (e["occurrences"] for e in d["errors"]), reverse=True
    )
    for e in d["errors"]:
        assert len(e["examples"]) <= max_examples
        lines = [ex["line"] for ex in e["examples"]]
        assert lines == sorted(lines)


def test_a_product_is_never_counted_twice() -> None:
    report = Report()
    c = chunk(1, 3)
    a, b, _ = c.records
    report.add_read(3)
    report.add_outcome(
        Outcome(
            chunk=c,
            status=202,
            accepted=1,
            rejections=[
                Rejection(a, "upload", "price must be a number"),
                Rejection(b, "upload", "price must be a number"),
                Rejection(a, "upload", "name is required"),
            ],
            attempts=1,
        )
    )
    r = rec(10)
    report.add_read(1)
    report.add_rejection(Rejection(r, "client", "missing id"))
    report.add_rejection(Rejection(r, "client", "name too long"))
    assert (report.rejected, report.accepted) == (3, 1)
    assert report.balanced and not report.anomalies
    by_msg = {e["message"]: e["occurrences"] for e in report.to_dict()["errors"]}
    assert by_msg == {
        "price must be a number": 2,
        "name is required": 1,
        "missing id": 1,
        "name too long": 1,
    }


def test_an_outcome_that_does_not_add_up_is_reconciled_and_noted() -> None:
    report = Report()
    c = chunk(1, 10)
    report.add_read(10)
    report.add_outcome(Outcome(chunk=c, status=200, accepted=7, attempts=1))
    assert (report.accepted, report.not_sent) == (7, 3)
    c2 = chunk(11, 4)
    report.add_read(4)
    report.add_outcome(
        Outcome(
            chunk=c2,
            status=202,
            accepted=3,
            unattributed=[Unattributed("bad", 3, "cat.ndjson", 11, 14)],
            attempts=1,
        )
    )
    assert report.balanced
    assert (report.accepted, report.rejected) == (10, 1)
    assert len(report.anomalies) == 2
    assert "lines 11-14" in report.anomalies[1]
    assert "Accounting notes" in report.summary()


# -- aggregation ---------------------------------------------------------------


def test_errors_aggregate_by_stage_and_message_with_capped_examples_in_source_order() -> None:
    report = Report(max_examples=2)
    outcomes = []
    # Chunks complete out of order; examples still come out in source order.
    for first in (21, 1, 11):
        c = chunk(first, 10)
        outcomes.append(
            Outcome(
                chunk=c,
                status=202,
                batch_id=f"b{first}",
                accepted=8,
                rejections=[Rejection(c.records[3], "upload", "Syntax error")],
                unattributed=[
                    Unattributed("Syntax error", 1, c.first.source, c.first.line, c.last.line)
                ],
                attempts=1,
            )
        )
    for o in outcomes:
        report.add_read(len(o.chunk))
        report.add_outcome(o)
    client = rec(99, raw=b'{"id": 1, broken')
    report.add_read(1)
    report.add_rejection(Rejection(client, "client", "Syntax error"))

    d = report.to_dict()
    assert report.balanced
    assert d["rejected"] == 7
    assert d["rejected_by_stage"] == {"client": 1, "upload": 6}
    assert d["unattributed_total"] == 3
    upload, client_err = d["errors"]
    assert upload == {
        "stage": "upload",
        "message": "Syntax error",
        "occurrences": 6,
        "examples": [
            {"source": "cat.ndjson", "line": 4, "id": "p4"},
            {"source": "cat.ndjson", "line": 14, "id": "p14"},
        ],
    }
    assert client_err["stage"] == "client"
    assert client_err["examples"] == [{"source": "cat.ndjson", "line": 99, "id": None}]
    assert [u["first_line"] for u in d["unattributed"]] == [21, 1, 11]
    assert d["unattributed"][0] == {
        "message": "Syntax error",
        "count": 1,
        "source": "cat.ndjson",
        "first_line": 21,
        "last_line": 30,
        "batch_id": "b21",
    }


def test_examples_across_sources_follow_first_appearance() -> None:
    report = Report(max_examples=3)
    for source, line in [("a.ndjson", 5), ("b.ndjson", 1), ("a.ndjson", 2), ("b.ndjson", 0)]:
        report.add_read(1)
        report.add_rejection(Rejection(rec(line, source), "client", "m"))
    ex = report.to_dict()["errors"][0]["examples"]
    assert [(e["source"], e["line"]) for e in ex] == [
        ("a.ndjson", 2),
        ("a.ndjson", 5),
        ("b.ndjson", 0),
    ]


def test_distinct_messages_are_bounded() -> None:
    report = Report(max_messages=3)
    for i in range(10):
        report.add_read(1)
        report.add_rejection(Rejection(rec(i + 1), "client", f"bad value {i}"))
    errors = report.to_dict()["errors"]
    assert len(errors) == 4
    other = next(e for e in errors if e["message"].startswith("(other messages"))
    assert other["occurrences"] == 7
    assert sum(e["occurrences"] for e in errors) == 10


def test_requests_retries_throttled_bytes_batches_and_pinpoint() -> None:
    report = Report()
    c1, c2 = chunk(1, 2), chunk(3, 2)
    report.add_read(4, 400)
    report.add_outcome(
        Outcome(
            chunk=c1, status=200, batch_id="b1", accepted=2, attempts=3, throttled=2, bytes_sent=50
        )
    )
    report.add_outcome(
        Outcome(chunk=c2, status=200, batch_id="b1", accepted=2, attempts=1, bytes_sent=60)
    )
    report.add_pinpoint_cost(4, 1000)
    d = report.to_dict()
    assert (d["requests"], d["retries"], d["throttled"]) == (8, 2, 2)
    assert (d["bytes_read"], d["bytes_sent"]) == (400, 1110)
    assert d["batches"] == ["b1"]
    assert d["pinpoint"] == {"requests": 4, "bytes_sent": 1000}


def test_stop_and_chunk_errors_are_reported() -> None:
    clock = FakeClock()
    report = Report(stream="123", target="productsup-stream", clock=clock)
    c = chunk(1, 5)
    report.add_read(8)
    report.add_outcome(
        Outcome(chunk=c, status=403, not_sent=5, attempts=1, error="403 stream is disabled")
    )
    report.add_not_sent(3)
    clock.now += 2.5
    report.finish(stopped="the stream is disabled (403)")
    d = report.to_dict()
    assert report.balanced and d["not_sent"] == 8
    assert d["duration_s"] == 2.5
    assert d["stopped"] == "the stream is disabled (403)"
    assert d["chunk_errors"] == [
        {
            "seq": c.seq,
            "status": 403,
            "error": "403 stream is disabled",
            "source": "cat.ndjson",
            "first_line": 1,
            "last_line": 5,
            "products": 5,
            "not_sent": 5,
            "batch_id": None,
        }
    ]
    summary = report.summary()
    assert "Stopped early: the stream is disabled (403); 8 products not sent." in summary


def test_summary_has_counts_throughput_top_errors_unattributed_and_rejects_file() -> None:
    clock = FakeClock()
    report = Report(stream="42", clock=clock)
    c = chunk(1, 1000)
    report.add_read(1000, 2_000_000)
    report.add_outcome(
        Outcome(
            chunk=c,
            status=202,
            batch_id="batch-1",
            accepted=990,
            rejections=[Rejection(c.records[6], "upload", "Attribute price must be a number")],
            unattributed=[
                Unattributed("Attribute price must be a number", 9, "cat.ndjson", 1, 1000)
            ],
            attempts=2,
            throttled=1,
            bytes_sent=1_000_000,
        )
    )
    report.set_rejects_file("rejects.ndjson", 1)
    clock.now += 2
    report.finish()
    s = report.summary()
    assert "1,000 products in 2.0 s" in s
    assert "500 products/s" in s and "1.0 MB/s" in s and "0.5 MB/s" in s
    assert "accepted      990" in s
    assert "of which 9 not named by the API" in s
    assert "10 x [upload] Attribute price must be a number" in s
    assert "e.g. cat.ndjson:7 (id p7)" in s
    assert "9 x 'Attribute price must be a number' in cat.ndjson lines 1-1000, batch batch-1" in s
    assert "--pinpoint-rejects" in s
    assert "bulkpush push rejects.ndjson --stream 42" in s
    assert "WARNING" not in s


def test_messages_that_carry_a_credential_are_masked() -> None:
    token = "sk_live_0123456789abcdefABCDEF"
    report = Report()
    c = chunk(1, 2)
    report.add_read(2)
    report.add_outcome(
        Outcome(
            chunk=c,
            status=202,
            accepted=1,
            rejections=[Rejection(c.records[0], "upload", f"echo: Authorization: Bearer {token}")],
            attempts=1,
            error=f"failed with token={token}",
        )
    )
    report.finish(stopped=f"401 for X-Auth-Token: {token}")
    text = orjson.dumps(report.to_dict()).decode() + report.summary()
    assert token not in text
    assert "Bearer ***" in text
    assert redact("no secret here: 12 products") == "no secret here: 12 products"


def test_merge_reports() -> None:
    parts = []
    for i, (first, dur) in enumerate([(1001, 3.0), (1, 5.0)]):
        report = Report(max_examples=2, stream="7")
        c = chunk(first, 10)
        report.add_read(10, 100)
        report.add_outcome(
            Outcome(
                chunk=c,
                status=202,
                batch_id=f"b{i}",
                accepted=7,
                rejections=[
                    Rejection(c.records[1], "upload", "m"),
                    Rejection(c.records[2], "upload", "m"),
                ],
                unattributed=[Unattributed("m", 1, c.first.source, c.first.line, c.last.line)],
                attempts=2,
                bytes_sent=90,
            )
        )
        report.set_rejects_file("rejects.ndjson", 2)
        report.duration_s, report.finished = dur, True
        parts.append(report.to_dict())
    parts[1]["stopped"] = "interrupted"
    merged = merge_reports(parts, max_examples=2)
    assert set(CONTRACT_KEYS) <= set(merged)
    assert (merged["read"], merged["accepted"], merged["rejected"]) == (20, 14, 6)
    assert merged["balanced"]
    assert (merged["requests"], merged["retries"], merged["bytes_sent"]) == (4, 2, 180)
    assert merged["batches"] == ["b0", "b1"]
    assert merged["duration_s"] == 5.0
    assert merged["errors"] == [
        {
            "stage": "upload",
            "message": "m",
            "occurrences": 6,
            "examples": [
                {"source": "cat.ndjson", "line": 2, "id": "p2"},
                {"source": "cat.ndjson", "line": 3, "id": "p3"},
            ],
        }
    ]
    assert len(merged["unattributed"]) == 2
    assert merged["unattributed_total"] == 2
    assert merged["rejects_written"] == 4
    assert merged["stopped"] == "interrupted"
    assert merged["parts"] == 2
    summary = render_summary(merged)
    assert "bulkpush stopped early to stream 7: 20 products in 5.0 s" in summary
    assert merge_reports([])["read"] == 0


# -- files ---------------------------------------------------------------------


def test_write_json_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")
    report = Report()
    report.add_read(1)
    report.add_not_sent(1)
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        assert path.read_text() == "old"  # the final name still shows the old file
        replaced.append((os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    report.write_json(path)
    ((src, dst),) = replaced
    assert Path(src).parent == tmp_path and src != dst and dst == str(path)
    assert json.loads(path.read_text())["not_sent"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_write_json_failure_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")

    def boom(src: Any, dst: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        Report().write_json(path)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_rejects_file_lines(tmp_path: Path) -> None:
    path = tmp_path / "rejects.ndjson"
    big = {"id": "big", "description": "é" * 1_500_000, "n": 12345678901234567890123}
    big_raw = (
        b'{"id":"big","description":"'
        + ("é" * 1_500_000).encode()
        + b'","n":12345678901234567890123}'
    )
    good = rec(2, raw='{"id":"475-SHIRT-XL","name":"Hemd ✓ 日本","price":1.50}'.encode())
    bad = rec(3, raw=b'{"id":"x","price":15", "size":"XL"}')
    binary = rec(4, raw=b"\xff\xfe not utf-8")
    scalar = rec(5, raw=b"42")
    large = rec(6, raw=big_raw)
    with RejectsWriter(path) as w:
        w.write(Rejection(good, "upload", "Attribute price must be a string"))
        w.write(Rejection(bad, "client", "invalid JSON"))
        w.write(Rejection(binary, "client", "invalid JSON"))
        w.write(Rejection(scalar, "client", "not an object"))
        w.write(Rejection(large, "client", "product over 1 MB"))
    assert w.count == 5
    lines = read_lines(path)
    for line in lines:
        assert list(line) == ["product", "id", "reason", "stage", "source", "line"]
    assert lines[0] == {
        "product": {"id": "475-SHIRT-XL", "name": "Hemd ✓ 日本", "price": 1.5},
        "id": "475-SHIRT-XL",
        "reason": "Attribute price must be a string",
        "stage": "upload",
        "source": "cat.ndjson",
        "line": 2,
    }
    raw_lines = path.read_bytes().splitlines()
    # the product's bytes as sent, not re-encoded (1.50 stays 1.50)
    assert raw_lines[0].startswith(b'{"product":{"id":"475-SHIRT-XL","name":"Hemd \xe2\x9c\x93')
    assert b'"price":1.50}' in raw_lines[0]
    assert lines[1]["product"] == '{"id":"x","price":15", "size":"XL"}'
    assert lines[2]["product"] == "\\xff\\xfe not utf-8"
    assert lines[3]["product"] == "42"
    assert lines[4]["product"]["description"] == big["description"]
    assert raw_lines[4].startswith(b'{"product":' + big_raw + b",")
    # The id where it can be read: also from the first bytes of a line that is not JSON.
    assert [line["id"] for line in lines] == ["475-SHIRT-XL", "x", None, None, "big"]


def test_rejects_product_unwraps_to_the_bytes_sent(tmp_path: Path) -> None:
    # What the source reader's "rejects" format does: unwrap "product".
    path = tmp_path / "rejects.ndjson"
    raws = [orjson.dumps({"id": i, "name": f"n{i}", "tags": ["a", "b"]}) for i in range(20)]
    with RejectsWriter(path) as w:
        for i, raw in enumerate(raws):
            w.write(Rejection(rec(i + 1, raw=raw), "upload", "m"))
    assert [orjson.dumps(line["product"]) for line in read_lines(path)] == raws


def test_rejects_one_line_per_product(tmp_path: Path) -> None:
    path = tmp_path / "rejects.ndjson"
    a, b = rec(1), rec(2)
    with RejectsWriter(path) as w:
        w.write(Rejection(a, "client", "missing name"))
        w.write(Rejection(a, "client", "price not a number"))
        w.write_all(
            [
                Rejection(b, "upload", "m1"),
                Rejection(rec(3), "upload", "m1"),
                Rejection(b, "upload", "m2"),
            ]
        )
    lines = read_lines(path)
    assert [(x["line"], x["reason"]) for x in lines] == [
        (1, "missing name; price not a number"),
        (2, "m1; m2"),
        (3, "m1"),
    ]
    assert w.count == 3


def test_rejects_file_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "rejects.ndjson"
    w = RejectsWriter(path)
    for i in range(1000):
        w.write(Rejection(rec(i + 1), "client", "m"))
    assert not path.exists()
    assert (tmp_path / "rejects.ndjson.tmp").exists()
    assert "count=999" in repr(w)  # the last one is held to merge a second reason
    w.close()
    w.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rejects.ndjson"]
    assert len(read_lines(path)) == 1000 == w.count
    with pytest.raises(ValueError, match="closed"):
        w.write(Rejection(rec(1), "client", "m"))


def test_rejects_file_is_kept_after_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "rejects.ndjson"
    with pytest.raises(RuntimeError), RejectsWriter(path) as w:
        w.write(Rejection(rec(1), "client", "m"))
        raise RuntimeError("the run failed")
    assert [x["line"] for x in read_lines(path)] == [1]
    assert not (tmp_path / "rejects.ndjson.tmp").exists()


def test_rejects_reason_masks_credentials(tmp_path: Path) -> None:
    path = tmp_path / "rejects.ndjson"
    with RejectsWriter(path) as w:
        w.write(Rejection(rec(1), "upload", "header Authorization: Bearer abcdefghijklmnop"))
    assert b"abcdefghijklmnop" not in path.read_bytes()


def test_public_names() -> None:
    for name in report_module.__all__:
        assert hasattr(report_module, name), name


# -- the schema ------------------------------------------------------------------


def test_contract_keys_are_pinned() -> None:
    assert CONTRACT_KEYS == (
        "read",
        "accepted",
        "rejected",
        "not_sent",
        "requests",
        "retries",
        "throttled",
        "batches",
        "bytes_read",
        "bytes_sent",
        "duration_s",
        "errors",
    )


def test_every_report_has_the_schema_keys_in_order() -> None:
    from dataclasses import fields

    from bulkpush.report._schema import ReportData

    keys = [f.name for f in fields(ReportData)]
    assert keys[: len(CONTRACT_KEYS)] == list(CONTRACT_KEYS)
    report = Report()
    report.add_read(2)
    report.add_outcome(Outcome(chunk(1, 2), status=200, accepted=2, attempts=1))
    assert list(report.to_dict()) == keys[:-1]  # "parts" only in merged reports
    assert list(merge_reports([report.to_dict(), report.to_dict()])) == keys
    assert list(merge_reports([])) == keys


def test_docs_describe_every_key() -> None:
    from dataclasses import fields

    from bulkpush.report._schema import ReportData

    docs = (Path(__file__).parent.parent / "docs" / "report.md").read_text()
    for f in fields(ReportData):
        assert f"`{f.name}`" in docs, f.name


def test_rejects_lines_are_recognised_and_unwrapped(tmp_path: Path) -> None:
    from bulkpush.report._rejects import REJECTS_KEYS, is_rejects_line, unwrap_rejects

    path = tmp_path / "rejects.ndjson"
    bad = Record("cat.ndjson", 7, 70, b"not json")
    with RejectsWriter(path) as w:
        w.write(Rejection(rec(1), "client", "missing name"))
        w.write(Rejection(bad, "client", "invalid JSON"))
    lines = path.read_bytes().splitlines()
    assert all(is_rejects_line(line) for line in lines)
    assert all(list(orjson.loads(line)) == list(REJECTS_KEYS) for line in lines)
    read_back = [Record("rejects.ndjson", i, 0, line) for i, line in enumerate(lines, 1)]
    products = [r.raw for r in unwrap_rejects(read_back, cap=1000)]
    assert products == [rec(1).raw, b"not json"]
    assert not is_rejects_line(rec(1).raw)
