"""Upload bodies: incremental gzip decoding and the per-product checks.

Everything here is pure (no I/O): a handler feeds the body's chunks as they
arrive and asks for the result at the end, so memory holds one chunk plus the
products a request carries, never the whole body twice.

The product messages are the Stream API's "Invalid batch" table, verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, cast

import ijson
import orjson
from isal import isal_zlib

__all__ = [
    "CONTROL_CHARACTER",
    "EMPTY_PAYLOAD",
    "EMPTY_PAYLOAD_LINE",
    "EMPTY_PRODUCT_ATTRIBUTES",
    "MISSING_ID",
    "PAYLOAD_TOO_LARGE",
    "SYNTAX_ERROR",
    "BodyError",
    "ErrorAggregate",
    "GzipDecoder",
    "JsonArrayValidator",
    "LineCounter",
    "NdjsonValidator",
    "UploadResult",
    "Validator",
]

# "Invalid batch", chunked type: the error titles, exactly as documented.
EMPTY_PRODUCT_ATTRIBUTES = "Empty Product Attributes"
EMPTY_PAYLOAD_LINE = "Empty Payload line"
MISSING_ID = 'Missing "id" attribute'
PAYLOAD_TOO_LARGE = "Product payload is too large"
CONTROL_CHARACTER = "Control character error, possibly incorrectly encoded"
SYNTAX_ERROR = "Syntax error"
EMPTY_PAYLOAD = "Empty Payload"

# Assumption: "Our solution automatically rejects any product exceeding 1MB" has no
# documented message or status; only the table's 2,097,152-byte line limit is enforced.
# Assumption: the maximum recommended 10,000 products per request is not enforced.
# Assumption: an example's raw value is cut to this many characters, so a
# 2 MB line does not travel back in every batch answer.
EXAMPLE_VALUE_MAX_CHARS = 4096
# Assumption: gzip output is produced in slices of at most this many bytes, so
# a small compressed body cannot expand into a large buffer at once.
_DECODE_SLICE = 1 << 22

# isal's stub declares ``error`` as an instance; at run time it is the exception class.
_GZIP_ERRORS: tuple[type[BaseException], ...] = (
    cast("type[BaseException]", isal_zlib.error),
    ValueError,
)
_CHAR_POSITION = re.compile(r"\(char (\d+)\)")


class BodyError(Exception):
    """Raised when an upload body cannot be read at all (status and title of the answer)."""

    def __init__(self, status: int, title: str) -> None:
        super().__init__(f"{status} {title}")
        self.status = status
        self.title = title


class GzipDecoder:
    """Decodes a gzip body fed in pieces; concatenated gzip members are supported.

    ``feed`` returns the decoded bytes so far, in slices of bounded size;
    ``finish`` raises :class:`BodyError` (400) when the body ended inside a
    member. Malformed data raises :class:`BodyError` (400) at once.
    """

    __slots__ = ("_decoder", "_in_member")

    def __init__(self) -> None:
        self._decoder = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
        self._in_member = False

    def feed(self, data: bytes) -> list[bytes]:
        """Decode ``data``; returns the decoded pieces (possibly none)."""
        out: list[bytes] = []
        while data:
            self._in_member = True
            try:
                piece = self._decoder.decompress(data, _DECODE_SLICE)
                if piece:
                    out.append(piece)
                while self._decoder.unconsumed_tail:
                    piece = self._decoder.decompress(self._decoder.unconsumed_tail, _DECODE_SLICE)
                    if piece:
                        out.append(piece)
            except _GZIP_ERRORS as exc:
                # Assumption: a body that is not valid gzip is a 400 Bad Request.
                raise BodyError(400, "Malformed gzip body") from exc
            if self._decoder.eof:
                self._in_member = False
                data = self._decoder.unused_data
                self._decoder = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
            else:
                data = b""
        return out

    def finish(self) -> None:
        """Check the body ended at a member boundary."""
        if self._in_member:
            raise BodyError(400, "Malformed gzip body: truncated")


@dataclass(slots=True)
class ErrorAggregate:
    """One unique error message of a batch: how often, and the first example."""

    message: str
    occurrences: int
    line_number: int
    value: str

    def to_json(self) -> dict[str, Any]:
        """The documented ``errors[]`` item: message, occurrences, example."""
        return {
            "message": self.message,
            "occurrences": self.occurrences,
            "example": {"lineNumber": self.line_number, "value": self.value},
        }


@dataclass(slots=True)
class UploadResult:
    """What one upload body contained, once fully read.

    Attributes:
        lines: products (lines, or array elements) in the request.
        accepted: ``(product id, stored bytes)`` of each valid product, in order;
            empty in throughput mode and for ids the upload stage does not check.
        accepted_count: products counted as a success by the upload stage.
        errors: the upload stage's errors by unique message, in order of first
            occurrence.
        processing_errors: errors the *processing* stage will report (referenced
            streams do not validate products on upload).
        whole_request_error: a reason the whole request is refused (e.g. "Empty
            Payload"), or ``None``.
    """

    lines: int = 0
    accepted: list[tuple[str, bytes]] = field(default_factory=list)
    accepted_count: int = 0
    errors: dict[str, ErrorAggregate] = field(default_factory=dict)
    processing_errors: dict[str, ErrorAggregate] = field(default_factory=dict)
    whole_request_error: str | None = None

    @property
    def rejected_count(self) -> int:
        """Products the upload stage refused."""
        return sum(e.occurrences for e in self.errors.values())


def _example(raw: bytes) -> str:
    return raw[:EXAMPLE_VALUE_MAX_CHARS].decode("utf-8", "replace")


def _add_error(errors: dict[str, ErrorAggregate], message: str, line_no: int, raw: bytes) -> None:
    agg = errors.get(message)
    if agg is None:
        errors[message] = ErrorAggregate(message, 1, line_no, _example(raw))
    else:
        agg.occurrences += 1


def _is_empty_value(value: object) -> bool:
    return value is None or value in ("", [], {})


def product_id(obj: dict[str, Any]) -> str | None:
    """The product's id as a string, or ``None`` when it has no usable id.

    Assumption: an id is a non-empty string or a number (``7824796324`` becomes
    ``"7824796324"``); ``null``, ``""``, booleans, arrays and objects are
    "Missing \\"id\\" attribute".
    """
    pid = obj.get("id")
    if type(pid) is str:
        return pid or None
    if type(pid) is int or type(pid) is float:
        return str(pid)
    return None


def check_product(obj: object) -> str | None:
    """The error message for a parsed product, or ``None`` when it is valid."""
    if type(obj) is not dict:
        # Assumption: a line that is valid JSON but not an object is a syntax error.
        return SYNTAX_ERROR
    if product_id(obj) is not None:
        return None
    if all(_is_empty_value(v) for v in obj.values()):
        # "When sending a product where all attributes are empty" (example: ``{}``).
        return EMPTY_PRODUCT_ATTRIBUTES
    return MISSING_ID


def classify_parse_error(line: bytes, exc: Exception) -> str:
    """Which documented message a line that does not parse gets.

    Blank lines are "Empty Payload line"; an unescaped control character or
    bytes that are not UTF-8 are the "Control character error, possibly
    incorrectly encoded" (the encoding errors of the reference's table);
    anything else is a "Syntax error".
    """
    if not line.strip():
        # Assumption: a line of only whitespace is "Empty Payload line" (the
        # reference's example body is a single space).
        return EMPTY_PAYLOAD_LINE
    # Assumption: invalid UTF-8 is reported as the control character error.
    text = str(exc)
    if "control character" in text or "UTF-8" in text or "surrogate" in text:
        return CONTROL_CHARACTER
    match = _CHAR_POSITION.search(text)
    if match is not None:
        pos = int(match.group(1))
        if pos < len(line) and line[pos] < 0x20:
            return CONTROL_CHARACTER
    return SYNTAX_ERROR


_EMPTY_MESSAGES = frozenset({EMPTY_PAYLOAD_LINE, EMPTY_PRODUCT_ATTRIBUTES})


def _finish_unvalidated(result: UploadResult) -> None:
    """Referenced streams: every product counts as uploaded, unless there is none.

    "Empty Payload" when no element has content (the reference's examples
    ``''``, ``[]``, ``[ ]`` and ``[{ }]``); otherwise the upload stage is a
    success and the products' own errors wait for the processing stage.
    """
    empties = sum(
        agg.occurrences
        for agg in result.processing_errors.values()
        if agg.message in _EMPTY_MESSAGES
    )
    if result.lines == empties:
        result.whole_request_error = EMPTY_PAYLOAD
    else:
        result.accepted_count = result.lines


class Validator:
    """Base of the body validators: ``feed`` decoded bytes, then ``finish``."""

    def feed(self, data: bytes) -> None:
        """Take the next decoded bytes of the body."""
        raise NotImplementedError

    def finish(self) -> UploadResult:
        """The result, once the whole body was fed."""
        raise NotImplementedError


class NdjsonValidator(Validator):
    """Checks an NDJSON body line by line, as a chunked stream does.

    Line numbers count every line of the body from 1 (a final line without a
    newline counts; the empty remainder after a final newline does not).

    Args:
        max_line_bytes: a longer line is "Product payload is too large"; it is
            never buffered beyond this size.
        validate: ``True`` (chunked streams) puts invalid lines in the upload
            stage's errors; ``False`` (referenced streams) counts every line as
            uploaded and leaves the errors to the processing stage.
    """

    def __init__(self, *, max_line_bytes: int, validate: bool = True) -> None:
        self._max = max_line_bytes
        self._validate = validate
        self._tail = b""
        self._oversize = False  # inside a line already longer than the maximum
        self._oversize_head = b""
        self._decoded = 0
        self.result = UploadResult()

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self._decoded += len(data)
        if self._oversize:
            nl = data.find(b"\n")
            if nl < 0:
                return
            self._line_too_large()
            data = data[nl + 1 :]
        if self._tail:
            nl = data.find(b"\n")
            if nl < 0:
                self._keep_tail(self._tail + data)
                return
            self._lines([self._tail + data[:nl]])
            self._tail = b""
            data = data[nl + 1 :]
        parts = data.split(b"\n")
        self._keep_tail(parts.pop())
        self._lines(parts)

    def _keep_tail(self, tail: bytes) -> None:
        if len(tail) > self._max:
            self._oversize = True
            self._oversize_head = tail[:EXAMPLE_VALUE_MAX_CHARS]
            self._tail = b""
        else:
            self._tail = tail

    def _line_too_large(self) -> None:
        result = self.result
        result.lines += 1
        errors = result.errors if self._validate else result.processing_errors
        _add_error(errors, PAYLOAD_TOO_LARGE, result.lines, self._oversize_head)
        self._oversize = False
        self._oversize_head = b""

    def _lines(self, lines: list[bytes]) -> None:
        # The hot path: one orjson.loads per line, nothing else on a valid line.
        result = self.result
        accepted = result.accepted
        errors = result.errors if self._validate else result.processing_errors
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        max_len = self._max
        n = result.lines
        for line in lines:
            n += 1
            if len(line) > max_len:
                _add_error(errors, PAYLOAD_TOO_LARGE, n, line)
                continue
            try:
                obj = loads(line)
            except decode_error as exc:
                _add_error(errors, classify_parse_error(line, exc), n, line)
                continue
            if type(obj) is dict:
                pid = obj.get("id")
                if type(pid) is str and pid:
                    accepted.append((pid, line))
                    continue
            message = check_product(obj)
            if message is None:
                accepted.append((product_id(obj) or "", line))
            else:
                _add_error(errors, message, n, line)
        result.lines = n

    def finish(self) -> UploadResult:
        if self._oversize:
            self._line_too_large()
        elif self._tail:
            self._lines([self._tail])
            self._tail = b""
        result = self.result
        if self._decoded == 0:
            result.whole_request_error = EMPTY_PAYLOAD
            return result
        if self._validate:
            result.accepted_count = len(result.accepted)
        else:
            _finish_unvalidated(result)
        return result


class LineCounter(Validator):
    """Throughput mode: counts lines, parses nothing, stores nothing.

    A blank line counts like any other; every line counts as a success.
    """

    # Assumption (throughput mode only): no line is checked, so none is rejected.

    def __init__(self) -> None:
        self._count = 0
        self._last = b"\n"
        self._decoded = 0

    def feed(self, data: bytes) -> None:
        if data:
            self._decoded += len(data)
            self._count += data.count(b"\n")
            self._last = data[-1:]

    def finish(self) -> UploadResult:
        lines = self._count + (0 if self._last == b"\n" else 1)
        result = UploadResult(lines=lines, accepted_count=lines)
        if self._decoded == 0:
            result.whole_request_error = EMPTY_PAYLOAD
        return result


class JsonArrayValidator(Validator):
    """Reads a JSON-array body (referenced streams) element by element.

    The array is parsed incrementally (ijson), so the body is never held whole.
    A referenced stream "does not validate products on upload": every element
    counts as uploaded; elements without a usable id are left to the processing
    stage's errors (their "lineNumber" is the 1-based element index: an
    assumption). A body that is not one well-formed JSON array fails as a whole
    ("Syntax error").

    Args:
        store: keep ``(id, compact orjson encoding)`` of each element (``False``
            in throughput mode, which only counts elements).
    """

    def __init__(self, *, store: bool = True) -> None:
        self._store = store
        self._items = ijson.sendable_list()
        self._parser = ijson.items_coro(self._items, "item", use_float=True)
        self._started = False
        self._decoded = 0
        self._failed: str | None = None
        self.result = UploadResult()

    def feed(self, data: bytes) -> None:
        if not data or self._failed is not None:
            return
        self._decoded += len(data)
        if not self._started:
            stripped = data.lstrip()
            if not stripped:
                return
            self._started = True
            if not stripped.startswith(b"["):
                # Assumption: a JSON body that is not an array is a syntax error.
                self._failed = SYNTAX_ERROR
                return
        try:
            self._parser.send(data)
        except ijson.JSONError:
            self._failed = SYNTAX_ERROR
            return
        self._take()

    def _take(self) -> None:
        # Assumption: an element's "lineNumber" is its 1-based index in the array.
        result = self.result
        n = result.lines
        for obj in self._items:
            n += 1
            message = check_product(obj)
            if message is None:
                if self._store:
                    result.accepted.append((product_id(obj) or "", orjson.dumps(obj)))
            else:
                _add_error(result.processing_errors, message, n, orjson.dumps(obj))
        del self._items[:]
        result.lines = n

    def finish(self) -> UploadResult:
        result = self.result
        if self._failed is None and self._started:
            try:
                self._parser.close()
            except ijson.JSONError:
                self._failed = SYNTAX_ERROR
            else:
                self._take()
        if self._failed is not None:
            result.whole_request_error = self._failed
            _add_error(result.errors, self._failed, 1, b"")
            return result
        _finish_unvalidated(result)
        return result
