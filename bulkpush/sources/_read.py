""":func:`iter_records`, the one entry point that reads any catalog into records."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO, cast

from bulkpush._records import Record, Rejection
from bulkpush.sources._blocks import SPAN_BLOCK, Block
from bulkpush.sources._framing import DEFAULT_MAX_RECORD_BYTES
from bulkpush.sources._open import ByteCounter, Format, decoded, open_error, read_stream
from bulkpush.sources._ranges import check_read_args, iter_range, read_path

__all__ = ["iter_items", "iter_records"]


def iter_records(
    spec: str | os.PathLike[str] | BinaryIO,
    *,
    format: Format | None = None,
    name: str | None = None,
    start_offset: int = 0,
    end_offset: int | None = None,
    first_line: int = 1,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    csv_delimiter: str | None = None,
    on_bytes: ByteCounter | None = None,
) -> Iterator[Record | Rejection]:
    """Read a catalog: a ``Record`` per product, or a ``Rejection`` when the source can't make one.

    ``spec``: a path, ``"-"`` for stdin, or a binary file object (not closed
    here). ``format``: detected with :func:`detect_format` when ``None``.
    ``name``: the ``source`` of the records (default: the path, ``<stdin>``,
    or the file object's name).

    ``start_offset``/``end_offset`` read a byte range of a plain (not
    compressed), seekable NDJSON file: the lines whose first byte lies in
    ``[start_offset, end_offset)``, so ranges split anywhere partition a
    file's lines exactly. ``first_line`` is the line number of the first line
    that starts in the range (see :func:`split_ranges`).

    ``max_record_bytes`` caps one line (or CSV row, or top-level JSON object)
    in bytes: a longer one is not held whole; its first ``max_record_bytes +
    1`` bytes become the record's ``raw`` (so validation rejects it as too
    large, at the right line) and the rest is skipped; a CSV row over it is
    a rejection. Pass the target's own limit; the default, 2,097,152, is the
    Productsup Stream API's line limit.

    When the format is detected (``format`` None), a source that looks
    binary, or holds one JSON object over several lines rather than an
    array or NDJSON, raises ``SourceError`` saying so. A gzip or zstd stream
    cut short yields every product before the cut, then raises
    ``SourceError`` ("… is truncated at byte N …").

    Raises ``SourceError`` when the source cannot be read at all,
    ``ConfigError`` for a byte range of a file that cannot have one (or an
    invalid range or cap).
    """
    items = iter_items(
        spec,
        format=format,
        name=name,
        start_offset=start_offset,
        end_offset=end_offset,
        first_line=first_line,
        max_record_bytes=max_record_bytes,
        csv_delimiter=csv_delimiter,
        on_bytes=on_bytes,
    )
    return cast(Iterator[Record | Rejection], items)  # no blocks were asked for


def iter_items(
    spec: str | os.PathLike[str] | BinaryIO,
    *,
    format: Format | None = None,
    name: str | None = None,
    start_offset: int = 0,
    end_offset: int | None = None,
    first_line: int = 1,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    csv_delimiter: str | None = None,
    on_bytes: ByteCounter | None = None,
    blocks: bool = False,
    block_size: int = SPAN_BLOCK,
) -> Iterator[Record | Rejection | Block]:
    """:func:`iter_records`, with NDJSON as blocks of whole lines when ``blocks``
    (``_blocks``; the span fast path reads them)."""
    if isinstance(spec, str | os.PathLike):
        source = name or ("<stdin>" if spec == "-" else os.fspath(spec))
        yield from read_path(
            spec,
            source=source,
            format=format,
            start=start_offset,
            end=end_offset,
            first_line=first_line,
            cap=max_record_bytes,
            csv_delimiter=csv_delimiter,
            on_bytes=on_bytes,
            blocks=blocks,
            block_size=block_size,
        )
        return
    check_read_args(start_offset, end_offset, max_record_bytes)
    source = name or str(getattr(spec, "name", "") or "<stream>")
    if start_offset != 0 or end_offset is not None:
        yield from iter_range(
            spec,
            source,
            format,
            start=start_offset,
            end=end_offset,
            first_line=first_line,
            cap=max_record_bytes,
            on_bytes=on_bytes,
            blocks=blocks,
        )
        return
    try:
        stream = decoded(spec)
    except OSError as exc:
        raise open_error(source, exc) from exc
    yield from read_stream(
        stream,
        source,
        format,
        first_line,
        max_record_bytes,
        csv_delimiter=csv_delimiter,
        on_bytes=on_bytes,
        blocks=blocks,
        block_size=block_size,
    )
