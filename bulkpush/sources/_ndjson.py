"""The NDJSON reader: the hot path of the whole tool.

NDJSON positions: ``line`` is the physical line (1-based, lines end at
``\\n``; a ``\\r`` before it is stripped; a lone ``\\r`` does not end a
line); ``offset`` is the byte offset of the line's first byte in the
decompressed stream. ``raw`` is the line with surrounding whitespace
stripped, never re-serialised. A UTF-8 BOM at the start of the stream is
dropped. Blank (whitespace-only) lines are not products: they are skipped and
yield nothing, but still count for line numbers. (The API would refuse them
as "Empty Payload line"; they carry no product to report.)

A bulkpush rejects file is NDJSON too: it is read here, then each line is
unwrapped to its product (``bulkpush.report._rejects``, where it is written).
"""

from __future__ import annotations

import sys
from collections.abc import Generator

from bulkpush._records import Record
from bulkpush.sources._framing import BOM, WS, Reader, line_batches

__all__ = ["read_ndjson"]


def read_ndjson(
    read: Reader,
    prefix: bytes,
    source: str,
    *,
    cap: int,
    line_no: int = 1,
    offset: int = 0,
    end: int | None = None,
) -> Generator[Record, None, int]:
    """Records of the lines whose first byte is before ``end``; ``raw`` truncated past ``cap``.

    ``prefix``: bytes already read from ``read``'s stream; ``line_no`` and
    ``offset``: the position of the first line (a BOM is dropped only at 0).
    Returns the offset after the last line read (the first line at or past
    ``end``, or the end of the stream).
    """
    # The hot path of the whole tool: no generator layers per line, no copy when
    # a line needs no stripping.
    bom = offset == 0
    stop = sys.maxsize if end is None else end
    for lines, special in line_batches(read, prefix, cap):
        for line in lines:
            if offset >= stop:
                return offset
            n = len(line)
            if n > cap:
                raw = line[: cap + 1]
            elif line and line[0] not in WS and line[-1] not in WS:
                raw = line
            else:
                raw = line.strip()
            if raw:
                if bom and offset == 0 and raw.startswith(BOM):
                    raw = raw[len(BOM) :].strip()
                if raw:
                    yield Record(source, line_no, offset, raw)
            line_no += 1
            offset += n + 1 if special is None else special
    return offset
