"""Records from Python objects: an iterable of mappings or of raw NDJSON lines."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from bulkpush._records import STAGE_CLIENT, Record, Rejection
from bulkpush.sources._framing import DEFAULT_MAX_RECORD_BYTES
from bulkpush.sources._jsonarray import MSG_UNENCODABLE

__all__ = ["iter_objects"]


def iter_objects(
    items: Iterable[Mapping[str, Any] | bytes | str],
    *,
    name: str = "<iterable>",
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[Record | Rejection]:
    """Records from Python objects: mappings (encoded with orjson) or raw NDJSON lines.

    ``line`` is the item number (1-based), ``offset`` -1. Blank ``bytes``/
    ``str`` items are skipped like blank NDJSON lines. An item orjson cannot
    encode is a ``Rejection`` (its ``raw`` is the item's ``repr``, cut at
    ``max_record_bytes``); a ``str`` with unpaired surrogates becomes bytes
    that are not UTF-8 (and validation rejects them). Items are not cut:
    validation judges their size.
    """
    for n, item in enumerate(items, 1):
        if isinstance(item, bytes | bytearray | memoryview):
            raw = bytes(item).strip()
        elif isinstance(item, str):
            raw = item.encode("utf-8", "surrogatepass").strip()
        else:
            try:
                obj = item if type(item) is dict or not isinstance(item, Mapping) else dict(item)
                raw = orjson.dumps(obj)
            except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
                detail = repr(item)[:max_record_bytes].encode("utf-8", "replace")
                yield Rejection(Record(name, n, -1, detail), STAGE_CLIENT, MSG_UNENCODABLE)
                continue
        if raw:
            yield Record(name, n, -1, raw)
