"""The JSON reader: a top-level array of products (or one object), streamed element by element.

The array is read a block at a time and cut into elements, never parsed
whole. JSON values are self-delimiting, so a parse that succeeds proves
where elements end, whatever their strings hold: the fast way parses a
block's elements in one orjson call, up to the ``,`` before the last one
that starts as the current one does (or up to the last ``},``); failing
that, one object at a time, from its ``{`` to a ``}`` that a ``,`` or ``]``
follows. When a few such tries fail (a nested product, a broken one, one
over the cap), an exact scan takes over: a regular expression skips strings
and everything but brackets and commas. Elements are re-encoded compactly
with orjson. An element over the cap (``max_record_bytes``) is not held
whole, as an NDJSON line is not: its first ``cap + 1`` bytes become the
record's ``raw`` (validation rejects it as too large) and the rest is
scanned and dropped. So memory holds a block or two and at most one capped
element, whatever the file holds. Measured on this machine (2 cores, ~760
byte products): ~170 MB/s compact, ~90 MB/s indented, ~65 MB/s with nested
variants (ijson's C backend, used before: ~50-100 MB/s).

``line`` is the element number (1-based); ``offset`` is -1. An element that
is not valid JSON, a bracket that closes the array too early and an array
that never closes yield one rejection (:data:`MSG_JSON_BROKEN`) at that
element and end the file (the rest is not read). An element orjson reads but
cannot write back (nested over 254 levels, or over its 1,024 read levels) is
a rejection (:data:`MSG_UNENCODABLE`) and reading goes on. A top-level
object (rather than an array) is read as one product. Any other top-level
value is a ``SourceError``. An integer outside orjson's 64 bits (below
-2**63, from 2**64 on), which it would read as a float and so change, is a
rejection (:data:`MSG_UNENCODABLE`) too.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import Any

import orjson

from bulkpush._records import STAGE_CLIENT, Record, Rejection
from bulkpush.errors import SourceError
from bulkpush.sources._framing import BLOCK, BOM, WS, Reader

__all__ = ["MSG_JSON_BROKEN", "MSG_UNENCODABLE", "read_json"]

MSG_JSON_BROKEN = "Syntax error: the JSON array breaks off here; the rest of the file was not read"
MSG_UNENCODABLE = (
    "Cannot be encoded as JSON (nested over 254 levels, an integer over 64 bits, a non-string "
    "key, an unpaired surrogate or an unsupported type)"
)

# A complete string; possessive, so never any backtracking.
_STRING = rb'"(?:[^"\\]++|\\.)*+"'
# Inside an element (depth >= 2): anything but brackets, strings whole. Stops at
# a bracket, or at a '"' whose string does not end in the bytes at hand.
_SKIP_INSIDE = re.compile(rb'(?:[^"\[\]{}]++|' + _STRING + rb")*+", re.S)
# Between the array's elements (depth 1): the same, stopping at commas too.
_SKIP_TOP = re.compile(rb'(?:[^"\[\]{},]++|' + _STRING + rb")*+", re.S)
# Inside a string cut by a block's end: its next quote or backslash.
_STRING_STOP = re.compile(rb'["\\]')
_LEADING_WS = re.compile(rb"[ \t\r\n]*+")

# A '}' that may end an object element: a ',' or ']' (or the end of the bytes at
# hand) follows it. The fast path tries this many before the exact scan.
_OBJECT_END = re.compile(rb"\}[ \t\r\n]*+(?:[,\]]|\Z)")
_FAST_TRIES = 4

# orjson's own limits: it reads 1,024 levels of nesting and writes 254.
_ORJSON_READ_DEPTH = 1024

#: What an element orjson cannot read or write faithfully stands for.
_HUGE = object()
# orjson reads an integer outside [-2**63, 2**64) as a float, losing digits. Such
# an integer has 19 digits or more and follows a ':', ',' or '[' (or starts the
# element): patterns that start with a literal, which re finds at memchr speed.
_INT_MIN, _INT_END = -(2**63), 2**64
_LONG_INT_AFTER = tuple(
    re.compile(re.escape(lead) + rb"[ \t\r\n]*+-?[0-9]{19}") for lead in (b":", b",", b"[")
)
_LONG_INT_FIRST = re.compile(rb"-?[0-9]{19}")


class _Broken(Exception):
    """The array's structure is broken: the rest of the file cannot be split into elements."""


class _Element:
    """The bytes of the element being scanned: kept up to ``cap + 1``, then only counted."""

    __slots__ = ("cap", "depth", "parts", "size")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[bytes] = []
        self.size = 0
        self.depth = 1  # the deepest nesting seen in it, the array's own level being 1

    def add(self, data: bytes, lo: int, hi: int) -> None:
        """Add ``data[lo:hi]``: counted, and kept while the element is within the cap."""
        kept = self.size
        self.size += hi - lo
        if kept <= self.cap:
            self.parts.append(data[lo : min(hi, lo + self.cap + 1 - kept)])

    def raw(self) -> bytes:
        return b"".join(self.parts)


def _skip(pattern: re.Pattern[bytes], data: bytes, i: int) -> int:
    m = pattern.match(data, i)
    return i if m is None else m.end()


def _skip_ws(read: Reader, data: bytes, i: int) -> tuple[bytes, int]:
    """``data`` and the index of its next non-whitespace byte, reading on; ``_Broken`` at EOF."""
    while True:
        i = _skip(_LEADING_WS, data, i)
        if i < len(data):
            return data, i
        data, i = read(BLOCK), 0
        if not data:
            raise _Broken  # the file ends inside the array


def _object_fast(read: Reader, data: bytes, i: int, cap: int) -> tuple[Any, bytes, int]:
    """The object element at ``data[i]`` (a ``{``) parsed by orjson, if a few tries find its end.

    A ``}`` followed by a ``,`` or ``]`` may end it: orjson parses up to
    there, and a value that parses whole ends exactly there (JSON values are
    self-delimiting), wherever quotes and brackets are. Returns ``(None,
    data, i)`` when a few such tries fail (a nested or broken element, one
    over the cap), for the exact scan to take over.
    """
    at = i
    tries = 0
    while tries < _FAST_TRIES:
        m = _OBJECT_END.search(data, at)
        if m is None or m.end() == len(data):  # its end may lie in the next block
            if len(data) - i > cap:
                break
            more = read(BLOCK)
            if not more:
                break
            at = (len(data) if m is None else m.start()) - i
            data, i = data[i:] + more, 0
            continue
        end = m.start() + 1
        if end - i > cap:
            break
        try:
            obj = orjson.loads(memoryview(data)[i:end])
        except orjson.JSONDecodeError:
            tries += 1
            at = end
            continue
        if _may_hold_huge_int(data, i, end) and _has_huge_int(data[i:end]):
            obj = _HUGE
        return obj, data, end
    return None, data, i


def _scan(read: Reader, data: bytes, i: int, cap: int) -> tuple[_Element, bytes, int]:
    """The exact scan of the element starting at ``data[i]`` (not whitespace).

    Returns it, and ``data`` with the index of the ``,`` or ``]`` that ends
    it; raises ``_Broken`` where the array stops making sense.
    """
    depth = 1  # the array's own level
    in_string = escaped = False
    elem = _Element(cap)
    start = i
    while True:
        if i >= len(data):
            elem.add(data, start, len(data))
            data = read(BLOCK)
            if not data:
                raise _Broken  # the file ends inside the element
            i = start = 0
        elif in_string:
            if escaped:
                escaped = False
                i += 1
                continue
            m = _STRING_STOP.search(data, i)
            if m is None:
                i = len(data)
            else:
                in_string = data[m.start()] != 0x22  # a '"' ends the string, a '\\' escapes
                escaped = in_string
                i = m.end()
        else:
            i = _skip(_SKIP_TOP if depth == 1 else _SKIP_INSIDE, data, i)
            if i >= len(data):
                continue
            c = data[i]
            if c == 0x22:  # '"': a string that does not end in these bytes
                in_string = True
            elif c in b"[{":
                depth += 1
                elem.depth = max(elem.depth, depth)
            elif depth > 1:  # a closing bracket inside the element (a mismatch fails its parse)
                depth -= 1
            else:  # a ',' or closing bracket at the array's level ends the element
                elem.add(data, start, i)
                if c == 0x7D or not elem.size:
                    raise _Broken  # a '}' closes the array, or no element: "[1,]", "[,"
                return elem, data, i
            i += 1


def _batch_end(data: bytes, i: int) -> int:
    """Where whole elements from ``data[i]`` may end: at the ``,`` before the last element
    that starts as this one does (products mostly start with the same key), else -1."""
    colon = data.find(b":", i, i + 256)
    if colon < 0:
        return -1
    start = data.rfind(data[i:colon], i + 1)  # '{"id"', as it is printed
    k = start - 1
    while k > i and data[k] in WS:
        k -= 1
    return k if start > 0 and data[k] == 0x2C else -1


def _batch(data: bytes, i: int, end: int) -> list[Any] | None:
    """The elements in ``data[i:end]``, parsed in one call, if they make a sequence of values
    (None when not, or when they may hold an integer orjson would change)."""
    if _may_hold_huge_int(data, i, end):
        return None
    try:
        items: list[Any] = orjson.loads(b"[" + data[i:end] + b"]")
    except orjson.JSONDecodeError:
        return None
    return items


def _elements(read: Reader, data: bytes, cap: int) -> Iterator[Any | _Element]:
    """The elements of the array that ``data`` (then ``read``) holds, from just after its ``[``:
    each parsed (the common case) or as scanned bytes (a nested element, one over the cap).

    The fastest way first: the elements up to the last one in the block
    (found by how this one starts, or by the last ``},``) parsed in one orjson
    call (each end tried once per block); then one object at a time
    (:func:`_object_fast`); then the exact scan (:func:`_scan`). Raises
    ``_Broken`` where the array stops making sense; ends after the closing
    ``]``, which only whitespace may follow.
    """
    data, i = _skip_ws(read, data, 0)
    if data[i] == 0x5D:  # "[]"
        _expect_end(read, data[i + 1 :])
        return
    block = data
    failed: set[int] = set()  # the ends of batches in ``block`` that did not parse
    while True:
        batch = None
        end = -1
        if data[i] == 0x7B:
            if data is not block:
                block = data
                failed.clear()
            for end in (_batch_end(data, i), data.rfind(b"},", i) + 1):
                if 1 < end - i <= cap and end not in failed:
                    batch = _batch(data, i, end)
                    if batch is not None:
                        break
                    failed.add(end)
        if batch is not None:
            yield from batch
            i = end
        else:
            obj = None
            if data[i] == 0x7B:
                obj, data, i = _object_fast(read, data, i, cap)
            if obj is None:
                obj, data, i = _scan(read, data, i, cap)
            yield obj
        data, i = _skip_ws(read, data, i)
        if data[i] == 0x5D:
            _expect_end(read, data[i + 1 :])
            return
        if data[i] != 0x2C:
            raise _Broken
        data, i = _skip_ws(read, data, i + 1)


def _expect_end(read: Reader, rest: bytes) -> None:
    """Only whitespace after the array's ``]``, else ``_Broken``."""
    while True:
        if rest.strip(WS):
            raise _Broken
        rest = read(BLOCK)
        if not rest:
            return


def read_json(
    read: Reader, prefix: bytes, source: str, *, cap: int
) -> Iterator[Record | Rejection]:
    """Records of the array's elements (or of the one object); see the module docstring."""
    lead = prefix[len(BOM) :] if prefix.startswith(BOM) else prefix
    lead = lead.lstrip(WS)
    if not lead:
        return
    if lead[:1] == b"{":
        yield _single_object(read, lead, source, cap)
        return
    if lead[:1] != b"[":
        raise SourceError(
            f"{source}: a JSON catalog must be an array of products (or one object)", source=source
        )
    n = 0
    broken_at = 0
    try:
        for item in _elements(read, lead[1:], cap):
            n += 1
            obj: Any = item
            if isinstance(item, _Element):
                raw = item.raw()
                if item.size > cap:
                    yield Record(source, n, -1, raw)  # cut short: rejected as too large
                    continue
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    if item.depth - 1 <= _ORJSON_READ_DEPTH:
                        broken_at = n  # not JSON: where it ends is a guess
                        break
                    obj = _HUGE  # deeper than orjson reads
                if _may_hold_huge_int(raw, 0, len(raw)) and _has_huge_int(raw):
                    obj = _HUGE
            try:
                if obj is _HUGE:
                    raise orjson.JSONEncodeError
                raw = orjson.dumps(obj)
            except orjson.JSONEncodeError:
                yield Rejection(Record(source, n, -1, b""), STAGE_CLIENT, MSG_UNENCODABLE)
                continue
            yield Record(source, n, -1, raw)
    except _Broken:
        broken_at = n + 1
    if broken_at:
        yield Rejection(Record(source, broken_at, -1, b""), STAGE_CLIENT, MSG_JSON_BROKEN)


class _HugeInt(Exception):
    pass


def _may_hold_huge_int(data: bytes, lo: int, hi: int) -> bool:
    """Whether ``data[lo:hi]`` may hold an integer orjson would read as a float."""
    after_colon, after_comma, after_bracket = _LONG_INT_AFTER
    return (
        after_colon.search(data, lo, hi) is not None
        or after_comma.search(data, lo, hi) is not None
        or after_bracket.search(data, lo, hi) is not None
        or _LONG_INT_FIRST.match(data, lo, hi) is not None
    )


def _check_int(text: str) -> int:
    value = int(text)
    if not _INT_MIN <= value < _INT_END:
        raise _HugeInt
    return value


def _has_huge_int(raw: bytes) -> bool:
    """Whether ``raw`` holds an integer orjson would read as a float (rare: a slow parse)."""
    try:
        json.loads(raw, parse_int=_check_int)
    except _HugeInt:
        return True
    except (ValueError, RecursionError):
        pass  # not JSON (orjson says so next), or deeper than json reads: orjson judges
    return False


def _single_object(read: Reader, lead: bytes, source: str, cap: int) -> Record:
    buf = lead
    while len(buf) <= cap:
        block = read(BLOCK)
        if not block:
            break
        buf += block
    if len(buf) > cap:
        while read(BLOCK):  # drain: the product is too large whatever it holds
            pass
        return Record(source, 1, -1, buf[: cap + 1])
    raw = buf.strip()
    with contextlib.suppress(orjson.JSONDecodeError, orjson.JSONEncodeError):
        raw = orjson.dumps(orjson.loads(raw))  # when it fails, validation names the problem
    return Record(source, 1, -1, raw)
