"""NDJSON read as blocks of whole lines, for the span fast path (``bulkpush._spans``).

:func:`read_ndjson_blocks` reads a stream into one reused buffer and yields
:class:`Block` views of whole lines (a few MB each), so that a block is
checked with a few C calls rather than line by line, and a run of valid
products is sent as the source's bytes. Positions are those of
``_ndjson``'s records: a block knows its first line's number and byte
offset; the consumer maps each product back from there. A line over the
cap (longer than the buffer holds) is not a block: it comes as the
:class:`Record` ``_ndjson`` would make (its first ``cap + 1`` bytes, rejected
by validation as too large), the rest read and dropped.

The buffer is reused: a block's ``data`` is valid until the next item is
asked for; a consumer keeps bytes by copying them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass

from bulkpush._records import Record

__all__ = ["SPAN_BLOCK", "Block", "ReadInto", "read_ndjson_blocks"]

#: Bytes per block: 1-4 MB measured best (docs/notes/spans-prototype.md:
#: 16 MB blocks no longer stay in cache across the checks' passes).
SPAN_BLOCK = 1 << 20

#: ``readinto(view)``: fill some of ``view``, return the bytes filled, 0 at the end.
ReadInto = Callable[[memoryview], int]


@dataclass(slots=True)
class Block:
    """Whole physical lines of ``source``, each ending in ``\\n``, starting at ``line`` and
    byte ``offset``.

    ``nlines``: the consumer may set it to the block's line count (it has
    found the line ends anyway), sparing the reader a count.
    """

    source: str
    data: memoryview
    line: int
    offset: int
    nlines: int = -1


def read_ndjson_blocks(
    readinto: ReadInto,
    prefix: bytes,
    source: str,
    *,
    cap: int,
    line_no: int = 1,
    offset: int = 0,
    end: int | None = None,
    block_size: int = SPAN_BLOCK,
) -> Generator[Block | Record, None, int]:
    """Blocks of the lines whose first byte is before ``end`` (and long lines as records).

    ``prefix``: bytes already read from the stream; ``line_no`` and
    ``offset``: the position of its first byte (a line start). Returns the
    offset after the last line read, as ``read_ndjson`` does.
    """
    size = max(block_size, 2 * cap + 4, len(prefix) + block_size)
    buf = bytearray(size)
    mv = memoryview(buf)
    filled = len(prefix)
    buf[:filled] = prefix
    eof = False
    stop = sys.maxsize if end is None else end
    failed: Exception | None = None
    while True:
        while not eof and filled < size:
            try:
                got = readinto(mv[filled:])
            except Exception as exc:  # (a truncated gzip file): the whole lines read come first
                failed = exc
                break
            eof = got == 0
            filled += got
        if failed is not None:
            cut = buf.rfind(b"\n", 0, filled) + 1
            if cut and offset < stop:
                limit = cut
                p = stop - offset
                if p < cut:
                    limit = buf.find(b"\n", p - 1, cut) + 1
                yield Block(source, mv[:limit], line_no, offset)
            raise failed
        if filled == 0 or offset >= stop:
            return offset
        limit, last_lines = filled, eof
        p = stop - offset  # index of the range's end in the buffer
        if p < filled:
            j = buf.find(b"\n", p - 1, filled)
            if j >= 0:
                limit, last_lines = j + 1, True
        cut = buf.rfind(b"\n", 0, limit) + 1
        if cut == 0 and not last_lines:
            # No line end in a full buffer: one line longer than the cap. Its
            # first cap + 1 bytes make its record; the rest is read and dropped.
            raw = bytes(mv[: cap + 1])
            length = filled
            while True:
                got = readinto(mv)
                if got == 0:
                    eof, filled = True, 0
                    break
                j = buf.find(b"\n", 0, got)
                if j >= 0:
                    length += j + 1
                    filled = _move_tail(buf, j + 1, got)
                    break
                length += got
            yield Record(source, line_no, offset, raw)
            line_no, offset = line_no + 1, offset + length
            continue
        if cut:
            block = Block(source, mv[:cut], line_no, offset)
            yield block
            line_no += block.nlines if block.nlines >= 0 else buf.count(b"\n", 0, cut)
            offset += cut
        if last_lines and limit > cut:
            # The last line, with no line end: a block of its own, its "\n" added.
            data = bytes(mv[cut:limit]) + b"\n"
            yield Block(source, memoryview(data), line_no, offset, 1)
            return offset + limit - cut
        if last_lines:
            return offset
        filled = _move_tail(buf, cut, filled)


def _move_tail(buf: bytearray, start: int, filled: int) -> int:
    """Move ``buf[start:filled]`` to the front; the new fill level."""
    tail = filled - start
    buf[:tail] = buf[start:filled]  # same length: allowed while views of buf exist
    return tail
