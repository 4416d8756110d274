"""Byte ranges of a plain NDJSON file: reading one, :class:`FileRange`, :func:`split_ranges`.

A range ``[start, end)`` holds the lines whose first byte lies in it, so
ranges cut anywhere partition a file's lines exactly; records keep their
place in the whole file (line numbers and offsets). Only an uncompressed,
seekable NDJSON file has ranges. This module also reads whole paths (a range
from 0 to the end is the whole file, in any format), so that a
:class:`FileRange` and :func:`~bulkpush.sources.iter_records` read alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from bulkpush._records import Record, Rejection
from bulkpush.errors import ConfigError
from bulkpush.sources._blocks import SPAN_BLOCK, Block, read_ndjson_blocks
from bulkpush.sources._framing import BLOCK, DEFAULT_MAX_RECORD_BYTES, peek_first_line
from bulkpush.sources._ndjson import read_ndjson
from bulkpush.sources._open import (
    COMPRESSED_MAGIC,
    ByteCounter,
    Format,
    detect_format,
    open_error,
    open_source,
    read_stream,
    reader_into,
    safe_reader,
)

__all__ = ["FileRange", "check_read_args", "iter_range", "read_path", "split_ranges"]


def check_read_args(start: int, end: int | None, cap: int) -> None:
    """Raise ``ConfigError`` for an invalid byte range or record size cap."""
    if start < 0 or (end is not None and end < start):
        raise ConfigError(f"invalid byte range [{start}, {end})")
    if cap < 1:
        raise ConfigError(f"max_record_bytes must be at least 1, not {cap}")


def read_path(
    spec: str | os.PathLike[str],
    *,
    source: str,
    format: Format | None,
    start: int,
    end: int | None,
    first_line: int,
    cap: int,
    csv_delimiter: str | None = None,
    on_bytes: ByteCounter | None = None,
    blocks: bool = False,
    block_size: int = SPAN_BLOCK,
) -> Iterator[Record | Rejection | Block]:
    """The records of a path (``"-"``: stdin), or of a byte range of it.

    ``blocks``: NDJSON as blocks of whole lines (``_blocks``), not records.
    """
    check_read_args(start, end, cap)
    if start != 0 or end is not None:
        if spec == "-":
            raise ConfigError("a byte range needs a file, not stdin")
        try:
            f = open(os.fspath(spec), "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise open_error(source, exc) from exc
        with f:
            yield from iter_range(
                f,
                source,
                format,
                start=start,
                end=end,
                first_line=first_line,
                cap=cap,
                on_bytes=on_bytes,
                blocks=blocks,
            )
        return
    with open_source(spec) as stream:
        yield from read_stream(
            stream,
            source,
            format,
            first_line,
            cap,
            csv_delimiter=csv_delimiter,
            on_bytes=on_bytes,
            blocks=blocks,
            block_size=block_size,
        )


def _seek_line_start(f: IO[bytes], start: int, name: str) -> tuple[int, bytes]:
    """Position of the first line starting at or after ``start``, and bytes read past it."""
    if start == 0:
        f.seek(0)
        return 0, b""
    f.seek(start - 1)
    read = safe_reader(f, name)
    pos = start - 1
    while True:
        block = read(BLOCK)
        if not block:
            return pos, b""
        i = block.find(b"\n")
        if i >= 0:
            return pos + i + 1, block[i + 1 :]
        pos += len(block)


def iter_range(
    f: IO[bytes],
    source: str,
    format: Format | None,
    *,
    start: int,
    end: int | None,
    first_line: int,
    cap: int,
    on_bytes: ByteCounter | None = None,
    blocks: bool = False,
) -> Iterator[Record | Rejection | Block]:
    """The records of the lines of ``f`` whose first byte is in ``[start, end)``.

    ``on_bytes`` is told the bytes of those lines once they are all read
    (blocks read ahead past the range are not counted: the ranges of a file
    add up to its size). Raises ``ConfigError`` unless ``f`` is a seekable,
    uncompressed NDJSON file.
    """
    try:
        if not f.seekable():
            raise ConfigError(f"{source}: a byte range needs a seekable file")
        f.seek(0)
        head = f.read(4)
    except OSError as exc:
        raise open_error(source, exc) from exc
    if head.startswith(COMPRESSED_MAGIC):
        raise ConfigError(f"{source}: a byte range needs an uncompressed file")
    if format is None:
        f.seek(0)
        format = detect_format(source, peek_first_line(safe_reader(f, source), cap))
    if format != "ndjson":
        raise ConfigError(f"{source}: byte ranges are for NDJSON files, not {format}")
    try:
        pos, prefix = _seek_line_start(f, start, source)
    except OSError as exc:
        raise open_error(source, exc) from exc
    if blocks:
        stop = yield from read_ndjson_blocks(
            reader_into(f, source), prefix, source, line_no=first_line, offset=pos, end=end, cap=cap
        )
    else:
        stop = yield from read_ndjson(
            safe_reader(f, source), prefix, source, line_no=first_line, offset=pos, end=end, cap=cap
        )
    if on_bytes is not None:
        on_bytes(stop - pos)


@dataclass(frozen=True, slots=True)
class FileRange:
    """A source that is a byte range of a plain NDJSON file: the lines whose first byte is in it.

    ``[start, end)`` in bytes (``end`` None: to the end of the file);
    ``first_line`` is the line number of the first line that starts at or
    after ``start``. Records carry their place in the whole file (offsets
    and line numbers), so ranges from :func:`split_ranges` partition a
    file's records exactly, and a range may start anywhere: at a
    checkpoint ``offset + 1`` after a record, reading resumes at the next
    line. Read with :func:`~bulkpush.sources.iter_records` (see there for
    what is raised).
    """

    path: str
    start: int = 0
    end: int | None = None
    first_line: int = 1

    def records(
        self,
        *,
        format: Format | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        csv_delimiter: str | None = None,
        on_bytes: ByteCounter | None = None,
    ) -> Iterator[Record | Rejection]:
        """The range's records, as :func:`~bulkpush.sources.iter_records` reads them."""
        return self.items(
            format=format,
            max_record_bytes=max_record_bytes,
            csv_delimiter=csv_delimiter,
            on_bytes=on_bytes,
        )  # type: ignore[return-value]  # no blocks were asked for

    def items(
        self,
        *,
        format: Format | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        csv_delimiter: str | None = None,
        on_bytes: ByteCounter | None = None,
        blocks: bool = False,
    ) -> Iterator[Record | Rejection | Block]:
        """:meth:`records`, with NDJSON as blocks of whole lines when ``blocks``."""
        return read_path(
            self.path,
            source="<stdin>" if self.path == "-" else self.path,
            format=format,
            start=self.start,
            end=self.end,
            first_line=self.first_line,
            cap=max_record_bytes,
            csv_delimiter=csv_delimiter,
            on_bytes=on_bytes,
            blocks=blocks,
        )


def split_ranges(path: str | os.PathLike[str], parts: int) -> list[tuple[int, int, int]]:
    """Cut a plain NDJSON file into at most ``parts`` line-aligned byte ranges.

    Returns ``(start, end, first_line)`` tuples, contiguous, covering the
    whole file, each for :func:`~bulkpush.sources.iter_records`'s
    ``start_offset``, ``end_offset`` and ``first_line``. Reads the file once
    to count lines. An empty file gives one empty range.
    """
    if parts < 1:
        raise ConfigError(f"parts must be at least 1, not {parts}")
    name = os.fspath(path)
    try:
        size = os.path.getsize(name)
        f = open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise open_error(name, exc) from exc
    targets = [size * i // parts for i in range(1, parts)]
    starts: list[tuple[int, int]] = [(0, 1)]
    with f:
        if f.read(4).startswith(COMPRESSED_MAGIC):
            raise ConfigError(f"{name}: only an uncompressed file can be split into ranges")
        f.seek(0)
        read = safe_reader(f, name)
        pos = 0  # offset of block[0]
        newlines = 0  # before pos
        t = 0
        while t < len(targets):
            block = read(BLOCK)
            if not block:
                break
            while t < len(targets):
                lo = max(targets[t] - 1, starts[-1][0], pos) - pos
                i = block.find(b"\n", lo)
                if i < 0:
                    break
                boundary = pos + i + 1
                if boundary < size and boundary > starts[-1][0]:
                    starts.append((boundary, newlines + block.count(b"\n", 0, i + 1) + 1))
                t += 1
            newlines += block.count(b"\n")
            pos += len(block)
    return [
        (start, starts[k + 1][0] if k + 1 < len(starts) else size, line)
        for k, (start, line) in enumerate(starts)
    ]
