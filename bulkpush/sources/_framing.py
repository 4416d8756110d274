"""Line framing shared by the readers: blocks, lines, blank lines, the record size cap.

A stream is read a block (1 MiB) at a time and split at ``\\n``; a line is
never held whole past the cap (``max_record_bytes``): its first ``cap + 1``
bytes are kept, which is enough for validation to reject it as too large,
and the rest is read and dropped. Nothing here knows a format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

__all__ = [
    "BLOCK",
    "BOM",
    "DEFAULT_MAX_RECORD_BYTES",
    "WS",
    "Reader",
    "line_batches",
    "lines",
    "peek_first_line",
]

#: The default cap on one line or record, in bytes: the Productsup Stream
#: API's own line limit (Productsup Stream API reference, "Invalid batch":
#: "max line length is 2097152 bytes"), which is also the largest any target
#: accepts today. Spelled here rather than imported from ``bulkpush.limits``
#: so that the readers stay target-neutral: callers pass their target's limit
#: as ``max_record_bytes``. A test pins it to ``STREAM_API.max_line_bytes``.
DEFAULT_MAX_RECORD_BYTES = 2_097_152

BLOCK = 1 << 20
BOM = b"\xef\xbb\xbf"
WS = b" \t\r\n\x0b\x0c"

#: ``read(n)``: up to ``n`` bytes, ``b""`` at the end of the stream.
Reader = Callable[[int], bytes]


def line_batches(read: Reader, prefix: bytes, cap: int) -> Iterator[tuple[list[bytes], int | None]]:
    """Split a stream into lines (without their ``\\n``), a block's worth at a time.

    Yields ``(lines, None)`` where each line's physical length is
    ``len(line) + 1``, or ``([line], nbytes)`` for a single line whose
    physical length is ``nbytes``: the last line when it has no ``\\n``, and
    a line over ``cap`` bytes, which comes truncated to ``cap + 1`` bytes (the
    rest is read and dropped, never held). Lines inside a normal batch may
    exceed ``cap`` too: the caller truncates those.
    """
    pending = prefix
    if b"\n" in prefix:
        # The prefix's lines come before the next read, which may fail (a
        # truncated gzip file): what was read intact is never held back.
        parts = prefix.split(b"\n")
        pending = parts.pop()
        yield parts, None
    long_head: bytes | None = None  # the start of a line over cap, while its end is skipped
    long_len = 0
    eof = False
    while not eof:
        block = read(BLOCK)
        eof = not block
        data = pending + block if pending else block
        pending = b""
        if long_head is not None:
            i = data.find(b"\n")
            if i < 0:
                long_len += len(data)
                if eof:
                    yield [long_head], long_len
                continue
            yield [long_head], long_len + i + 1
            long_head = None
            data = data[i + 1 :]
        parts = data.split(b"\n")
        pending = parts.pop()
        if parts:
            yield parts, None
        if len(pending) > cap:
            long_head, long_len, pending = pending[: cap + 1], len(pending), b""
            if eof:
                yield [long_head], long_len
        elif eof and pending:
            yield [pending], len(pending)


def lines(read: Reader, prefix: bytes, cap: int) -> Iterator[tuple[bytes, int]]:
    """Lines as ``(line, nbytes)``: without the ``\\n``, truncated past ``cap``; physical length."""
    for batch, nbytes in line_batches(read, prefix, cap):
        if nbytes is not None:
            yield batch[0][: cap + 1], nbytes
            continue
        for line in batch:
            n = len(line)
            yield (line[: cap + 1] if n > cap else line), n + 1


def peek_first_line(read: Reader, cap: int) -> bytes:
    """Read until the first non-blank line is complete (or past ``cap`` bytes, or EOF)."""
    buf = b""
    while len(buf) <= cap:
        block = read(BLOCK)
        if not block:
            break
        buf += block
        body = buf[len(BOM) :] if buf.startswith(BOM) else buf
        if b"\n" in body.lstrip(WS):
            break
    return buf
