"""The CSV reader: a header row, then one flat product per row.

``line`` is the physical line where the row starts (the header is line 1),
``offset`` that line's byte offset. Cells are separated by ``delimiter``
(given, or sniffed from the header line by the caller: the most frequent of
``,`` ``;`` tab ``|`` outside quotes). The first non-blank row is the header;
its names must be non-empty and distinct (else ``SourceError``). Values are
strings; empty cells are omitted, and so are missing cells of a short row; a
row with more cells than the header is a rejection. Rows whose every cell is
empty or whitespace are blank and skipped. UTF-8, a BOM tolerated; a row that
is not valid UTF-8 is a rejection, and so is a row over the record size cap.

A quoted cell may hold line breaks, so a quote that is never closed would
make one row of the rest of the file. Where that shows (the file ends inside
the quoted cell, or the row runs past the cap inside it), the row's first
line alone is rejected (:data:`MSG_CSV_UNCLOSED_QUOTE`) and the lines after
it are read again as rows: at most ``cap`` bytes are held for that. A stray
quote that a later one closes makes a legal multi-line cell, which no CSV
reader can tell from an intended one. In the header, an unclosed quote is a
``SourceError``.
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Iterator

import orjson

from bulkpush._records import STAGE_CLIENT, Record, Rejection
from bulkpush._validation import MSG_BAD_ENCODING
from bulkpush.errors import SourceError
from bulkpush.sources._framing import BOM, DEFAULT_MAX_RECORD_BYTES, Reader, lines

__all__ = [
    "MSG_CSV_EXTRA_CELLS",
    "MSG_CSV_MALFORMED",
    "MSG_CSV_ROW_TOO_LARGE",
    "MSG_CSV_UNCLOSED_QUOTE",
    "read_csv",
]


def _row_too_large(cap: int) -> str:
    return f"Product payload is too large: CSV row over {cap:,} bytes"


MSG_CSV_EXTRA_CELLS = "CSV row has more cells than the header"
MSG_CSV_MALFORMED = "Malformed CSV row (e.g. a stray quote or line break)"
MSG_CSV_UNCLOSED_QUOTE = (
    "Malformed CSV row: a quoted cell opened here is never closed; this line alone is "
    "rejected and the lines after it are read as rows"
)
#: The message under the default cap; another cap names its own number.
MSG_CSV_ROW_TOO_LARGE = _row_too_large(DEFAULT_MAX_RECORD_BYTES)


class _QuoteStillOpen(Exception):
    """A row ran past the cap inside a quoted cell (raised through ``csv.reader``)."""


class _CsvLines:
    """Decoded lines for ``csv.reader``, remembering what the current row consumed.

    ``exhausted``: the stream ended; a row that still comes out after that
    ended inside a quoted cell. :meth:`reread_after_first_line` puts the
    current row's lines but its first back, to be read again.
    """

    def __init__(self, read: Reader, prefix: bytes, cap: int) -> None:
        self._it = lines(read, prefix, cap)
        self._cap = cap
        self._again: deque[tuple[bytes, int]] = deque()  # lines to read again, first first
        self.lines_read = 0
        self.offset = 0  # offset of the next line
        self.row_raw: list[bytes] = []
        self._row_lines: list[tuple[bytes, int]] = []
        self._row_bytes = 0
        self.row_too_long = False
        self.bad_encoding = False
        self.exhausted = False

    def start_row(self) -> None:
        self.row_raw = []
        self._row_lines = []
        self._row_bytes = 0
        self.row_too_long = False
        self.bad_encoding = False

    def reread_after_first_line(self) -> None:
        """Read the current row's lines again, all but the first, as new rows."""
        rest = self._row_lines[1:]
        self._again.extendleft(reversed(rest))
        self.lines_read -= len(rest)
        self.offset -= sum(nbytes for _, nbytes in rest)
        self.row_raw = self.row_raw[:1]
        self.exhausted = False

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        if self._again:
            line, nbytes = self._again.popleft()
        else:
            try:
                line, nbytes = next(self._it)
            except StopIteration:
                self.exhausted = True
                raise
        if self._row_lines and self._row_bytes + nbytes > self._cap:
            # csv asks for another line of a row only inside a quoted cell, and
            # this one runs past the cap: the quote is (almost surely) never closed.
            self._again.appendleft((line, nbytes))
            raise _QuoteStillOpen
        self._row_lines.append((line, nbytes))
        self._row_bytes += nbytes
        if self.lines_read == 0 and line.startswith(BOM):
            line = line[len(BOM) :]
        self.lines_read += 1
        self.offset += nbytes
        if len(line) > self._cap:
            self.row_too_long = True
            line = line[: self._cap]
        self.row_raw.append(line)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self.bad_encoding = True
            text = line.decode("utf-8", "replace")
        return text + "\n"


def read_csv(
    read: Reader, prefix: bytes, source: str, *, cap: int, delimiter: str = ","
) -> Iterator[Record | Rejection]:
    """Records of the rows, or ``Rejection``s for rows that cannot make a product.

    Raises ``SourceError`` when the header is unusable.
    """
    if csv.field_size_limit() < cap:
        # process-wide, but only ever raised: the default (128 KiB) is under one product
        csv.field_size_limit(cap)
    too_large = MSG_CSV_ROW_TOO_LARGE if cap == DEFAULT_MAX_RECORD_BYTES else _row_too_large(cap)
    rows = _CsvLines(read, prefix, cap)
    reader = csv.reader(rows, strict=False, delimiter=delimiter)
    header: list[str] | None = None
    while True:
        rows.start_row()
        line_no, offset = rows.lines_read + 1, rows.offset
        try:
            row = next(reader)
            unclosed = rows.exhausted
        except StopIteration:
            return
        except _QuoteStillOpen:
            unclosed = True
        except csv.Error as exc:
            if header is None:
                msg = f"{source}: the CSV header cannot be parsed: {exc}"
                raise SourceError(msg, source=source) from exc
            yield _rejection(source, line_no, offset, rows, MSG_CSV_MALFORMED)
            continue
        if unclosed:
            if header is None:
                msg = f"{source}: the CSV header cannot be parsed: a quoted cell is never closed"
                raise SourceError(msg, source=source)
            # What is read again is under ``cap`` bytes, and one more line is
            # rejected for good each time: reading always moves on.
            rows.reread_after_first_line()
            yield _rejection(source, line_no, offset, rows, MSG_CSV_UNCLOSED_QUOTE)
            continue
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = _header(row, source)
            continue
        if rows.row_too_long:
            yield _rejection(source, line_no, offset, rows, too_large)
        elif rows.bad_encoding:
            yield _rejection(source, line_no, offset, rows, MSG_BAD_ENCODING)
        elif len(row) > len(header):
            yield _rejection(source, line_no, offset, rows, MSG_CSV_EXTRA_CELLS)
        else:
            obj = {key: value for key, value in zip(header, row, strict=False) if value}
            yield Record(source, line_no, offset, orjson.dumps(obj))


def _header(row: list[str], source: str) -> list[str]:
    seen: set[str] = set()
    for i, name in enumerate(row, 1):
        if not name.strip():
            raise SourceError(f"{source}: CSV header column {i} has no name", source=source)
        if name in seen:
            raise SourceError(f"{source}: CSV header names {name!r} twice", source=source)
        seen.add(name)
    return row


def _rejection(source: str, line_no: int, offset: int, rows: _CsvLines, message: str) -> Rejection:
    raw = b"\n".join(rows.row_raw).rstrip(b"\r\n")
    return Rejection(Record(source, line_no, offset, raw), STAGE_CLIENT, message)
