"""The body decoding and product checks, without HTTP."""

from __future__ import annotations

import gzip

import pytest

from bulkpush.emulator.validation import (
    CONTROL_CHARACTER,
    EMPTY_PAYLOAD,
    EMPTY_PAYLOAD_LINE,
    EMPTY_PRODUCT_ATTRIBUTES,
    MISSING_ID,
    PAYLOAD_TOO_LARGE,
    SYNTAX_ERROR,
    BodyError,
    GzipDecoder,
    JsonArrayValidator,
    LineCounter,
    NdjsonValidator,
    UploadResult,
)


def ndjson(body: bytes, *, piece: int | None = None, max_line: int = 2_097_152) -> UploadResult:
    v = NdjsonValidator(max_line_bytes=max_line)
    step = piece or max(len(body), 1)
    for i in range(0, len(body), step):
        v.feed(body[i : i + step])
    return v.finish()


def test_documented_messages_are_verbatim() -> None:
    assert EMPTY_PRODUCT_ATTRIBUTES == "Empty Product Attributes"
    assert EMPTY_PAYLOAD_LINE == "Empty Payload line"
    assert MISSING_ID == 'Missing "id" attribute'
    assert PAYLOAD_TOO_LARGE == "Product payload is too large"
    assert CONTROL_CHARACTER == "Control character error, possibly incorrectly encoded"
    assert SYNTAX_ERROR == "Syntax error"
    assert EMPTY_PAYLOAD == "Empty Payload"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"{}", EMPTY_PRODUCT_ATTRIBUTES),
        (b'{"id":"","name":""}', EMPTY_PRODUCT_ATTRIBUTES),
        (b" ", EMPTY_PAYLOAD_LINE),
        (b"", EMPTY_PAYLOAD_LINE),
        (b'{"name":"x"}', MISSING_ID),
        (b'{"id":null,"name":"x"}', MISSING_ID),
        (b'{"id":true,"name":"x"}', MISSING_ID),
        (b'{"id":"1","name":"a\x01"}', CONTROL_CHARACTER),
        (b'{"id":"1","name":"\xff"}', CONTROL_CHARACTER),
        (b'{"id":"1","price":15", "size":"XL"}', SYNTAX_ERROR),
        (b"[1,2]", SYNTAX_ERROR),
    ],
)
def test_each_invalid_line_gets_its_message(line: bytes, message: str) -> None:
    result = ndjson(b'{"id":"ok"}\n' + line + b"\n")
    assert [p for p, _ in result.accepted] == ["ok"]
    assert list(result.errors) == [message]
    agg = result.errors[message]
    assert (agg.occurrences, agg.line_number) == (1, 2)
    assert agg.value == line.decode("utf-8", "replace")


def test_numeric_ids_become_strings_and_lines_are_kept_verbatim() -> None:
    line = b'{"id":7824796324,"price":5,"sale_price":4.5, "size":""}'
    assert ndjson(line).accepted == [("7824796324", line)]


def test_errors_aggregate_by_message_with_the_first_example() -> None:
    body = b'{"a":1}\n{"id":"1"}\n{"b":2}\n{}\n{"c":3}\n'
    result = ndjson(body)
    assert result.lines == 5
    assert result.accepted_count == 1
    assert result.errors[MISSING_ID].occurrences == 3
    assert result.errors[MISSING_ID].line_number == 1
    assert result.errors[MISSING_ID].value == '{"a":1}'
    assert result.errors[EMPTY_PRODUCT_ATTRIBUTES].line_number == 4
    assert result.rejected_count == 4


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64])
def test_lines_split_across_pieces_are_joined(piece: int) -> None:
    body = b"".join(b'{"id":"%d","v":"%s"}\n' % (i, b"x" * i) for i in range(30))
    result = ndjson(body, piece=piece)
    assert [p for p, _ in result.accepted] == [str(i) for i in range(30)]
    assert not result.errors


def test_last_line_without_newline_counts_and_trailing_newline_does_not() -> None:
    assert ndjson(b'{"id":"1"}\n{"id":"2"}').lines == 2
    assert ndjson(b'{"id":"1"}\n{"id":"2"}\n').lines == 2
    result = ndjson(b'{"id":"1"}\n\n{"id":"2"}\n')
    assert result.lines == 3 and result.errors[EMPTY_PAYLOAD_LINE].line_number == 2


def test_crlf_lines_are_accepted() -> None:
    assert len(ndjson(b'{"id":"1"}\r\n{"id":"2"}\r\n').accepted) == 2


def test_empty_body_is_empty_payload() -> None:
    assert ndjson(b"").whole_request_error == EMPTY_PAYLOAD


@pytest.mark.parametrize("piece", [5, 100, 10_000])
def test_a_line_over_the_maximum_is_rejected_without_being_buffered(piece: int) -> None:
    big = b'{"id":"big","v":"' + b"x" * 5000 + b'"}'
    body = b'{"id":"1"}\n' + big + b'\n{"id":"2"}\n'
    v = NdjsonValidator(max_line_bytes=1000)
    for i in range(0, len(body), piece):
        v.feed(body[i : i + piece])
        assert len(v._tail) <= 1000  # never more than the maximum is held
    result = v.finish()
    assert [p for p, _ in result.accepted] == ["1", "2"]
    assert result.errors[PAYLOAD_TOO_LARGE].line_number == 2
    assert result.lines == 3


def test_a_final_oversized_line_without_newline() -> None:
    result = ndjson(b'{"id":"1"}\n' + b"y" * 50, piece=10, max_line=20)
    assert result.errors[PAYLOAD_TOO_LARGE].line_number == 2


def test_line_at_exactly_the_maximum_passes() -> None:
    line = b'{"id":"1","v":"' + b"x" * 10 + b'"}'
    assert ndjson(line, max_line=len(line)).accepted_count == 1
    assert ndjson(line, max_line=len(line) - 1).errors


def test_referenced_ndjson_defers_errors_to_processing() -> None:
    v = NdjsonValidator(max_line_bytes=100, validate=False)
    v.feed(b'{"id":"1"}\n{"name":"no id"}\n')
    result = v.finish()
    assert result.errors == {}
    assert result.accepted_count == 2
    assert result.processing_errors[MISSING_ID].line_number == 2


def test_line_counter_counts_without_parsing() -> None:
    c = LineCounter()
    for piece in (b"not json\n{", b'"id":1}\n', b"last"):
        c.feed(piece)
    result = c.finish()
    assert (result.lines, result.accepted_count, result.accepted) == (3, 3, [])
    assert LineCounter().finish().whole_request_error == EMPTY_PAYLOAD


def array(body: bytes, piece: int = 3, store: bool = True) -> UploadResult:
    v = JsonArrayValidator(store=store)
    for i in range(0, len(body), piece):
        v.feed(body[i : i + piece])
    return v.finish()


@pytest.mark.parametrize("body", [b"", b"[]", b"[ ]", b"[{ }]", b"  \n"])
def test_referenced_empty_payloads(body: bytes) -> None:
    assert array(body).whole_request_error == EMPTY_PAYLOAD


def test_json_array_elements_are_stored_compactly() -> None:
    result = array(b'[\n{"id": "a", "n": 1},\n{"id": 2, "f": 4.5}\n]')
    assert result.accepted == [("a", b'{"id":"a","n":1}'), ("2", b'{"id":2,"f":4.5}')]
    assert result.accepted_count == 2


def test_json_array_without_ids_fails_later_not_now() -> None:
    result = array(b'[{"id":"a"},{"name":"b"}]')
    assert result.whole_request_error is None
    assert result.accepted_count == 2
    assert result.processing_errors[MISSING_ID].line_number == 2


@pytest.mark.parametrize("body", [b'[{"id":"a"},', b'[{"id":"a" "b"}]', b'{"id":"a"}'])
def test_a_broken_json_array_fails_as_a_whole(body: bytes) -> None:
    result = array(body)
    assert result.whole_request_error == SYNTAX_ERROR


def test_json_array_in_throughput_mode_counts_only() -> None:
    result = array(b'[{"id":"a"},{"id":"b"}]', store=False)
    assert result.accepted == [] and result.accepted_count == 2


def test_gzip_decoder_handles_pieces_and_members() -> None:
    data = gzip.compress(b"hello " * 1000) + gzip.compress(b"world")
    decoder = GzipDecoder()
    out = b"".join(b"".join(decoder.feed(data[i : i + 17])) for i in range(0, len(data), 17))
    decoder.finish()
    assert out == b"hello " * 1000 + b"world"


def test_gzip_decoder_bounds_each_output_piece() -> None:
    bomb = gzip.compress(b"\0" * 20_000_000)
    pieces = GzipDecoder().feed(bomb)
    assert sum(map(len, pieces)) == 20_000_000
    assert max(map(len, pieces)) <= 1 << 22


def test_malformed_and_truncated_gzip_are_400() -> None:
    with pytest.raises(BodyError) as info:
        GzipDecoder().feed(b"this is not gzip")
    assert info.value.status == 400
    decoder = GzipDecoder()
    decoder.feed(gzip.compress(b"x" * 1000)[:-8])
    with pytest.raises(BodyError):
        decoder.finish()
