"""Catalog readers: NDJSON, JSON arrays, CSV and bulkpush rejects files → records.

Every reader streams: memory holds one block (1 MiB) and the product being
read, never the file. Compression is found by magic bytes (gzip, zstd), not
by the name alone, for files, stdin and file objects alike.

Positions (``Record.line``, ``Record.offset``):

- NDJSON and rejects files: ``line`` is the physical line (1-based, lines end
  at ``\\n``; a ``\\r`` before it is stripped; a lone ``\\r`` does not end a
  line); ``offset`` is the byte offset of the line's first byte in the
  decompressed stream. ``raw`` is the line with surrounding whitespace
  stripped, never re-serialised. A UTF-8 BOM at the start of the stream is
  dropped. Blank (whitespace-only) lines are not products: they are skipped
  and yield nothing, but still count for line numbers. (The API would refuse
  them as "Empty Payload line"; they carry no product to report.)
- CSV: ``line`` is the physical line where the row starts (the header is
  line 1), ``offset`` that line's byte offset. The first non-blank row is the
  header; its names must be non-empty and distinct (else ``SourceError``).
  Values are strings; empty cells are omitted, and so are missing cells of a
  short row; a row with more cells than the header is a rejection. Rows
  whose every cell is empty or whitespace are blank and skipped. UTF-8, a
  BOM tolerated; a row that is not valid UTF-8 is a rejection.
- JSON array: streamed with ijson (the ``yajl2_c`` backend when installed),
  each element re-encoded compactly with orjson. ``line`` is the element
  number (1-based) — ijson gives no byte positions, so ``offset`` is -1. A
  syntax error yields one rejection at the element where reading broke and
  ends the file (the rest cannot be read). A top-level object (rather than
  an array) is read as one product. Any other top-level value is a
  ``SourceError``. Each element is built in memory, one at a time. Known
  limit of ``yajl2_c``: an integer beyond 64 bits is a syntax error there.
- rejects (the NDJSON file bulkpush writes, one ``{"product", "reason",
  "stage", "source", "line"}`` object a line): each line yields its
  ``product`` — re-encoded when it is an object, the string's bytes when the
  original line was not JSON — at the position of the rejects file itself, so
  a fixed rejects file can be pushed again. A line a user replaced with the
  bare product is read as that product.

Bounded lines: a line longer than ``STREAM_API.max_line_bytes`` (2,097,152,
the API's own limit) is not held whole. Its first ``max_line_bytes + 1``
bytes become the record's ``raw`` and the rest is skipped; a ``raw`` that
long can never pass validation (whose limit is at most ``max_line_bytes``),
so the product is rejected as too large, at the right line, without the file
ever being in memory. (CSV rows over the limit are rejected directly.)

Speed (same machine as validation's figures): NDJSON of ~1 KB lines is read
at ~700,000 records/s (~700 MB/s) from the page cache, one thread.

Errors: a file that cannot be opened, or whose bytes cannot be read or
decompressed at all (corrupt gzip, truncated zstd), raises ``SourceError``
naming it. Nothing else is raised for any content: a bad product becomes a
``Record`` that validation rejects, or a ``Rejection`` (stage ``"client"``)
when the source itself cannot make a product of it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Literal, cast

import ijson
import orjson
import zstandard

from bulkpush.errors import ConfigError, SourceError
from bulkpush.limits import STREAM_API
from bulkpush.records import STAGE_CLIENT, Record, Rejection
from bulkpush.validation import MSG_BAD_ENCODING

try:
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - isal is a dependency
    import gzip as _gzip  # type: ignore[no-redef]

__all__ = [
    "MSG_CSV_EXTRA_CELLS",
    "MSG_CSV_MALFORMED",
    "MSG_CSV_ROW_TOO_LARGE",
    "MSG_JSON_BROKEN",
    "MSG_UNENCODABLE",
    "FileRange",
    "Format",
    "detect_format",
    "iter_objects",
    "iter_records",
    "open_source",
    "split_ranges",
]

Format = Literal["ndjson", "json", "csv", "rejects"]

MSG_CSV_EXTRA_CELLS = "CSV row has more cells than the header"
MSG_CSV_MALFORMED = "Malformed CSV row (e.g. a stray quote or line break)"
MSG_CSV_ROW_TOO_LARGE = "Product payload is too large: CSV row over 2,097,152 bytes"
MSG_JSON_BROKEN = "Syntax error: the JSON array breaks off here; the rest of the file was not read"
MSG_UNENCODABLE = (
    "Cannot be encoded as JSON (an integer over 64 bits, a non-string key, an unpaired "
    "surrogate or an unsupported type)"
)

_BLOCK = 1 << 20
_MAX_LINE = STREAM_API.max_line_bytes
_BOM = b"\xef\xbb\xbf"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_REJECTS_KEYS = frozenset({"product", "reason", "stage", "source", "line"})
_WS = b" \t\r\n\x0b\x0c"

Reader = Callable[[int], bytes]


# --- format detection -------------------------------------------------------


def _strip_compression_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in (".gz", ".gzip", ".zst", ".zstd"):
        if lower.endswith(suffix):
            return lower[: -len(suffix)]
    return lower


def _first_line(head: bytes) -> bytes:
    """The first non-blank line of ``head`` (BOM dropped), stripped; b"" if none."""
    if head.startswith(_BOM):
        head = head[len(_BOM) :]
    for line in head.split(b"\n"):
        stripped = line.strip()
        if stripped:
            return stripped
    return b""


def _is_rejects_line(line: bytes) -> bool:
    if not line.startswith(b"{"):
        return False
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.keys() == _REJECTS_KEYS


def detect_format(name: str, head: bytes = b"") -> Format:
    """The format of a catalog called ``name`` whose (decompressed) content starts with ``head``.

    A first line that is a bulkpush rejects line → ``"rejects"``. Else by
    extension after dropping ``.gz``/``.zst``: ``.ndjson``/``.jsonl`` →
    ndjson, ``.csv`` → csv, ``.json`` → json unless the content starts with
    ``{`` (NDJSON saved as .json). Else by the first non-blank byte: ``[`` →
    json, ``{`` or nothing → ndjson, anything else → csv.
    """
    first = _first_line(head)
    if _is_rejects_line(first):
        return "rejects"
    base = _strip_compression_suffix(name)
    if base.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    if base.endswith(".csv"):
        return "csv"
    lead = first[:1]
    if base.endswith(".json"):
        return "ndjson" if lead == b"{" else "json"
    if lead == b"[":
        return "json"
    if lead in (b"{", b""):
        return "ndjson"
    return "csv"


# --- opening ----------------------------------------------------------------


class _Prefixed(io.RawIOBase):
    """A non-seekable stream with some bytes already read from it put back in front."""

    def __init__(self, prefix: bytes, stream: IO[bytes]) -> None:
        self._prefix = prefix
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._prefix:
            n = min(len(view), len(self._prefix))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        read1 = getattr(self._stream, "read1", None)
        data = read1(len(view)) if read1 is not None else self._stream.read(len(view))
        view[: len(data)] = data
        return len(data)


class _ZstdReader(io.RawIOBase):
    """Decompress a zstd stream of one or more frames; a stream cut mid-frame is an error.

    (``zstandard``'s own ``stream_reader`` ends quietly on a truncated frame.)
    """

    _INPUT = 1 << 16  # compressed bytes per step, to bound what one step expands to

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._in_frame = False
        self._out = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._out and not self._eof:
            data = self._stream.read(self._INPUT)
            if not data:
                self._eof = True
                if self._in_frame:
                    raise EOFError("the zstd stream ended in the middle of a frame")
                break
            while data:
                self._out += self._obj.decompress(data)
                self._in_frame = True
                if not self._obj.eof:
                    break
                data = self._obj.unused_data
                self._obj = self._dctx.decompressobj()
                self._in_frame = False
        n = min(len(view), len(self._out))
        view[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


def _magic(f: IO[bytes]) -> tuple[bytes, IO[bytes]]:
    """The first 4 bytes of ``f`` and a stream that still yields them."""
    try:
        seekable = f.seekable()
    except (OSError, ValueError):
        seekable = False
    if seekable:
        pos = f.tell()
        head = f.read(4)
        f.seek(pos)
        return head, f
    head = f.read(4)
    return head, cast(IO[bytes], io.BufferedReader(_Prefixed(head, f)))


def _decoded(f: IO[bytes]) -> IO[bytes]:
    head, f = _magic(f)
    if head.startswith(_GZIP_MAGIC):
        return cast(IO[bytes], _gzip.GzipFile(fileobj=f, mode="rb"))  # type: ignore[no-untyped-call]
    if head.startswith(_ZSTD_MAGIC):
        return cast(IO[bytes], io.BufferedReader(_ZstdReader(f), _BLOCK))
    return f


def _open_error(name: str, exc: BaseException) -> SourceError:
    detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return SourceError(f"cannot read {name}: {detail}", source=name)


@contextmanager
def open_source(spec: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a catalog for reading, decompressed: a path, or ``"-"`` for stdin.

    gzip (ISA-L when available) and zstd are recognised by their magic bytes.
    Raises ``SourceError`` naming the file when it cannot be opened.
    """
    if spec == "-":
        name, raw, owned = "<stdin>", cast(IO[bytes], sys.stdin.buffer), False
    else:
        name = os.fspath(spec)
        try:
            raw, owned = open(name, "rb"), True  # noqa: SIM115 - closed in finally
        except OSError as exc:
            raise _open_error(name, exc) from exc
    try:
        try:
            stream = _decoded(raw)
        except OSError as exc:
            raise _open_error(name, exc) from exc
        try:
            yield cast(BinaryIO, stream)
        finally:
            if stream is not raw:
                stream.close()
    finally:
        if owned:
            raw.close()


def _safe_reader(f: IO[bytes], name: str) -> Reader:
    read = getattr(f, "read1", None) or f.read

    def safe_read(n: int) -> bytes:
        try:
            data: bytes = read(n)
        except Exception as exc:  # corrupt compressed data, I/O errors: the file is unreadable
            raise _open_error(name, exc) from exc
        return data

    return safe_read


# --- lines ------------------------------------------------------------------


def _line_batches(
    read: Reader, prefix: bytes, cap: int
) -> Iterator[tuple[list[bytes], int | None]]:
    """Split a stream into lines (without their ``\\n``), a block's worth at a time.

    Yields ``(lines, None)`` where each line's physical length is
    ``len(line) + 1``, or ``([line], nbytes)`` for a single line whose
    physical length is ``nbytes``: the last line when it has no ``\\n``, and
    a line over ``cap`` bytes, which comes truncated to ``cap + 1`` bytes (the
    rest is read and dropped, never held). Lines inside a normal batch may
    exceed ``cap`` too: the caller truncates those.
    """
    pending = prefix
    long_head: bytes | None = None  # the start of a line over cap, while its end is skipped
    long_len = 0
    eof = False
    while not eof:
        block = read(_BLOCK)
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


def _lines(read: Reader, prefix: bytes, cap: int) -> Iterator[tuple[bytes, int]]:
    """Lines as ``(line, nbytes)``: without the ``\\n``, truncated past ``cap``; physical length."""
    for lines, nbytes in _line_batches(read, prefix, cap):
        if nbytes is not None:
            yield lines[0][: cap + 1], nbytes
            continue
        for line in lines:
            n = len(line)
            yield (line[: cap + 1] if n > cap else line), n + 1


def _peek_first_line(read: Reader, cap: int) -> bytes:
    """Read until the first non-blank line is complete (or past ``cap`` bytes, or EOF)."""
    buf = b""
    while len(buf) <= cap:
        block = read(_BLOCK)
        if not block:
            break
        buf += block
        body = buf[len(_BOM) :] if buf.startswith(_BOM) else buf
        if b"\n" in body.lstrip(_WS):
            break
    return buf


# --- readers ----------------------------------------------------------------


def _ndjson(
    read: Reader,
    prefix: bytes,
    source: str,
    *,
    line_no: int = 1,
    offset: int = 0,
    end: int | None = None,
    cap: int = _MAX_LINE,
) -> Iterator[Record]:
    # The hot path of the whole tool: no generator layers per line, no copy when
    # a line needs no stripping.
    bom = offset == 0
    stop = sys.maxsize if end is None else end
    for lines, special in _line_batches(read, prefix, cap):
        for line in lines:
            if offset >= stop:
                return
            n = len(line)
            if n > cap:
                raw = line[: cap + 1]
            elif line and line[0] not in _WS and line[-1] not in _WS:
                raw = line
            else:
                raw = line.strip()
            if raw:
                if bom and offset == 0 and raw.startswith(_BOM):
                    raw = raw[len(_BOM) :].strip()
                if raw:
                    yield Record(source, line_no, offset, raw)
            line_no += 1
            offset += n + 1 if special is None else special


def _rejects(read: Reader, prefix: bytes, source: str, cap: int) -> Iterator[Record]:
    for rec in _ndjson(read, prefix, source, cap=cap):
        raw = rec.raw
        if len(raw) > cap:
            yield rec
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            yield rec
            continue
        if isinstance(obj, dict) and "product" in obj and "reason" in obj:
            product = obj["product"]
            if isinstance(product, str):
                rec.raw = product.encode("utf-8", "surrogateescape").strip()
            else:
                rec.raw = orjson.dumps(product)
        yield rec


class _CsvLines:
    """Decoded lines for ``csv.reader``, remembering what the current row consumed."""

    def __init__(self, read: Reader, prefix: bytes, cap: int) -> None:
        self._it = _lines(read, prefix, cap)
        self._cap = cap
        self.lines_read = 0
        self.offset = 0  # offset of the next line
        self.row_raw: list[bytes] = []
        self.row_too_long = False
        self.bad_encoding = False

    def start_row(self) -> None:
        self.row_raw = []
        self.row_too_long = False
        self.bad_encoding = False

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        line, nbytes = next(self._it)
        if self.lines_read == 0 and line.startswith(_BOM):
            line = line[len(_BOM) :]
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


def _csv(read: Reader, prefix: bytes, source: str, cap: int) -> Iterator[Record | Rejection]:
    if csv.field_size_limit() < cap:
        # process-wide, but only ever raised: the default (128 KiB) is under one product
        csv.field_size_limit(cap)
    lines = _CsvLines(read, prefix, cap)
    reader = csv.reader(lines, strict=False)
    header: list[str] | None = None
    while True:
        lines.start_row()
        line_no, offset = lines.lines_read + 1, lines.offset
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if header is None:
                msg = f"{source}: the CSV header cannot be parsed: {exc}"
                raise SourceError(msg, source=source) from exc
            yield _csv_rejection(source, line_no, offset, lines, MSG_CSV_MALFORMED)
            continue
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = _csv_header(row, source)
            continue
        if lines.row_too_long:
            yield _csv_rejection(source, line_no, offset, lines, MSG_CSV_ROW_TOO_LARGE)
        elif lines.bad_encoding:
            yield _csv_rejection(source, line_no, offset, lines, MSG_BAD_ENCODING)
        elif len(row) > len(header):
            yield _csv_rejection(source, line_no, offset, lines, MSG_CSV_EXTRA_CELLS)
        else:
            obj = {key: value for key, value in zip(header, row, strict=False) if value}
            yield Record(source, line_no, offset, orjson.dumps(obj))


def _csv_header(row: list[str], source: str) -> list[str]:
    seen: set[str] = set()
    for i, name in enumerate(row, 1):
        if not name.strip():
            raise SourceError(f"{source}: CSV header column {i} has no name", source=source)
        if name in seen:
            raise SourceError(f"{source}: CSV header names {name!r} twice", source=source)
        seen.add(name)
    return row


def _csv_rejection(
    source: str, line_no: int, offset: int, lines: _CsvLines, message: str
) -> Rejection:
    raw = b"\n".join(lines.row_raw).rstrip(b"\r\n")
    return Rejection(Record(source, line_no, offset, raw), STAGE_CLIENT, message)


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
        return self._read(_BLOCK if n < 0 else n)


def _ijson_backend() -> Any:
    try:
        return ijson.get_backend("yajl2_c")
    except Exception:  # pragma: no cover - the C backend is optional
        return ijson


def _json(read: Reader, prefix: bytes, source: str, cap: int) -> Iterator[Record | Rejection]:
    lead = prefix[len(_BOM) :] if prefix.startswith(_BOM) else prefix
    lead = lead.lstrip(_WS)
    if not lead:
        return
    if lead[:1] == b"{":
        yield _json_single_object(read, lead, source, cap)
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


def _json_single_object(read: Reader, lead: bytes, source: str, cap: int) -> Record:
    buf = lead
    while len(buf) <= cap:
        block = read(_BLOCK)
        if not block:
            break
        buf += block
    if len(buf) > cap:
        while read(_BLOCK):  # drain: the product is too large whatever it holds
            pass
        return Record(source, 1, -1, buf[: cap + 1])
    raw = buf.strip()
    with contextlib.suppress(orjson.JSONDecodeError, orjson.JSONEncodeError):
        raw = orjson.dumps(orjson.loads(raw))  # when it fails, validation names the problem
    return Record(source, 1, -1, raw)


# --- entry points -----------------------------------------------------------


def _seek_line_start(f: IO[bytes], start: int, name: str) -> tuple[int, bytes]:
    """Position of the first line starting at or after ``start``, and bytes read past it."""
    if start == 0:
        f.seek(0)
        return 0, b""
    f.seek(start - 1)
    read = _safe_reader(f, name)
    pos = start - 1
    while True:
        block = read(_BLOCK)
        if not block:
            return pos, b""
        i = block.find(b"\n")
        if i >= 0:
            return pos + i + 1, block[i + 1 :]
        pos += len(block)


def iter_records(
    spec: str | os.PathLike[str] | BinaryIO,
    *,
    format: Format | None = None,
    name: str | None = None,
    start_offset: int = 0,
    end_offset: int | None = None,
    first_line: int = 1,
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

    Raises ``SourceError`` when the source cannot be read at all,
    ``ConfigError`` for a byte range of a file that cannot have one.
    """
    ranged = start_offset != 0 or end_offset is not None
    if start_offset < 0 or (end_offset is not None and end_offset < start_offset):
        raise ConfigError(f"invalid byte range [{start_offset}, {end_offset})")
    if isinstance(spec, str | os.PathLike):
        source = name or ("<stdin>" if spec == "-" else os.fspath(spec))
        if ranged:
            if spec == "-":
                raise ConfigError("a byte range needs a file, not stdin")
            try:
                f = open(os.fspath(spec), "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise _open_error(source, exc) from exc
            with f:
                yield from _iter_range(
                    f, source, format, start=start_offset, end=end_offset, first_line=first_line
                )
            return
        with open_source(spec) as stream:
            yield from _iter_stream(stream, source, format, first_line)
        return
    source = name or str(getattr(spec, "name", "") or "<stream>")
    if ranged:
        yield from _iter_range(
            spec, source, format, start=start_offset, end=end_offset, first_line=first_line
        )
        return
    try:
        decoded = _decoded(spec)
    except OSError as exc:
        raise _open_error(source, exc) from exc
    yield from _iter_stream(decoded, source, format, first_line)


def _iter_stream(
    stream: IO[bytes], source: str, format: Format | None, first_line: int
) -> Iterator[Record | Rejection]:
    read = _safe_reader(stream, source)
    cap = _MAX_LINE
    prefix = _peek_first_line(read, cap)
    fmt = format or detect_format(source, prefix)
    if fmt == "ndjson":
        yield from _ndjson(read, prefix, source, line_no=first_line, cap=cap)
    elif fmt == "rejects":
        yield from _rejects(read, prefix, source, cap)
    elif fmt == "csv":
        yield from _csv(read, prefix, source, cap)
    elif fmt == "json":
        yield from _json(read, prefix, source, cap)
    else:
        raise ConfigError(f"unknown catalog format {fmt!r}")


def _iter_range(
    f: IO[bytes],
    source: str,
    format: Format | None,
    *,
    start: int,
    end: int | None,
    first_line: int,
) -> Iterator[Record | Rejection]:
    try:
        if not f.seekable():
            raise ConfigError(f"{source}: a byte range needs a seekable file")
        f.seek(0)
        head = f.read(4)
    except OSError as exc:
        raise _open_error(source, exc) from exc
    if head.startswith((_GZIP_MAGIC, _ZSTD_MAGIC)):
        raise ConfigError(f"{source}: a byte range needs an uncompressed file")
    if format is None:
        f.seek(0)
        format = detect_format(source, _peek_first_line(_safe_reader(f, source), _MAX_LINE))
    if format != "ndjson":
        raise ConfigError(f"{source}: byte ranges are for NDJSON files, not {format}")
    try:
        pos, prefix = _seek_line_start(f, start, source)
    except OSError as exc:
        raise _open_error(source, exc) from exc
    yield from _ndjson(
        _safe_reader(f, source), prefix, source, line_no=first_line, offset=pos, end=end
    )


@dataclass(frozen=True, slots=True)
class FileRange:
    """A source that is a byte range of a plain NDJSON file: the lines whose first byte is in it.

    ``[start, end)`` in bytes (``end`` None: to the end of the file);
    ``first_line`` is the line number of the first line that starts at or
    after ``start``. Records carry their place in the whole file (offsets
    and line numbers), so ranges from :func:`split_ranges` partition a
    file's records exactly, and a range may start anywhere: at a
    checkpoint ``offset + 1`` after a record, reading resumes at the next
    line. Read with :func:`iter_records` (see there for what is raised).
    """

    path: str
    start: int = 0
    end: int | None = None
    first_line: int = 1

    def records(self, *, format: Format | None = None) -> Iterator[Record | Rejection]:
        """The range's records, as :func:`iter_records` reads them."""
        return iter_records(
            self.path,
            format=format,
            start_offset=self.start,
            end_offset=self.end,
            first_line=self.first_line,
        )


def split_ranges(path: str | os.PathLike[str], parts: int) -> list[tuple[int, int, int]]:
    """Cut a plain NDJSON file into at most ``parts`` line-aligned byte ranges.

    Returns ``(start, end, first_line)`` tuples, contiguous, covering the
    whole file, each for :func:`iter_records`'s ``start_offset``,
    ``end_offset`` and ``first_line``. Reads the file once to count lines. An
    empty file gives one empty range.
    """
    if parts < 1:
        raise ConfigError(f"parts must be at least 1, not {parts}")
    name = os.fspath(path)
    try:
        size = os.path.getsize(name)
        f = open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise _open_error(name, exc) from exc
    targets = [size * i // parts for i in range(1, parts)]
    starts: list[tuple[int, int]] = [(0, 1)]
    with f:
        if f.read(4).startswith((_GZIP_MAGIC, _ZSTD_MAGIC)):
            raise ConfigError(f"{name}: only an uncompressed file can be split into ranges")
        f.seek(0)
        read = _safe_reader(f, name)
        pos = 0  # offset of block[0]
        newlines = 0  # before pos
        t = 0
        while t < len(targets):
            block = read(_BLOCK)
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


def iter_objects(
    items: Iterable[Mapping[str, Any] | bytes | str], *, name: str = "<iterable>"
) -> Iterator[Record | Rejection]:
    """Records from Python objects: mappings (encoded with orjson) or raw NDJSON lines.

    ``line`` is the item number (1-based), ``offset`` -1. Blank ``bytes``/
    ``str`` items are skipped like blank NDJSON lines. An item orjson cannot
    encode is a ``Rejection``; a ``str`` with unpaired surrogates becomes
    bytes that are not UTF-8 (and validation rejects them).
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
                detail = repr(item)[:_MAX_LINE].encode("utf-8", "replace")
                yield Rejection(Record(name, n, -1, detail), STAGE_CLIENT, MSG_UNENCODABLE)
                continue
        if raw:
            yield Record(name, n, -1, raw)
