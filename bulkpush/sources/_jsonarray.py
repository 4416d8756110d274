"""The JSON reader: a top-level array of products (or one object), streamed with ijson.

Each element is built in memory, one at a time (the ``yajl2_c`` backend when
installed), and re-encoded compactly with orjson. ``line`` is the element
number (1-based); ijson gives no byte positions, so ``offset`` is -1. A
syntax error yields one rejection at the element where reading broke and ends
the file (the rest cannot be read). A top-level object (rather than an array)
is read as one product. Any other top-level value is a ``SourceError``. Known
limit of ``yajl2_c``: an integer beyond 64 bits is a syntax error there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import ijson
import orjson

from bulkpush._records import STAGE_CLIENT, Record, Rejection
from bulkpush.errors import SourceError
from bulkpush.sources._framing import BLOCK, BOM, WS, Reader

__all__ = ["MSG_JSON_BROKEN", "MSG_UNENCODABLE", "read_json"]

MSG_JSON_BROKEN = "Syntax error: the JSON array breaks off here; the rest of the file was not read"
MSG_UNENCODABLE = (
    "Cannot be encoded as JSON (an integer over 64 bits, a non-string key, an unpaired "
    "surrogate or an unsupported type)"
)


class _Chain:
    """``read(n)`` over some bytes already read, then the rest of the stream."""

    def __init__(self, prefix: bytes, read: Reader) -> None:
        self._prefix = prefix
        self._read = read

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            if n < 0 or n >= len(self._prefix):
                data, self._prefix = self._prefix, b""
            else:
                data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        return self._read(BLOCK if n < 0 else n)


def _ijson_backend() -> Any:
    try:
        return ijson.get_backend("yajl2_c")
    except Exception:  # pragma: no cover - the C backend is optional
        return ijson


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
    try:
        for item in _ijson_backend().items(_Chain(lead, read), "item", use_float=True):
            n += 1
            try:
                raw = orjson.dumps(item)
            except orjson.JSONEncodeError:
                yield Rejection(Record(source, n, -1, b""), STAGE_CLIENT, MSG_UNENCODABLE)
                continue
            yield Record(source, n, -1, raw)
    except SourceError:
        raise
    except Exception:  # ijson's JSONError and the like: the rest of the array is unreadable
        yield Rejection(Record(source, n + 1, -1, b""), STAGE_CLIENT, MSG_JSON_BROKEN)


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
