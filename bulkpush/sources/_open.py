"""Opening a catalog: paths and stdin, gzip/zstd by magic bytes, its format, its reader.

Compression is found by magic bytes (gzip, zstd), not by the name alone, for
files, stdin and file objects alike. A file that cannot be opened, or whose
bytes cannot be read or decompressed at all (corrupt gzip, truncated zstd),
raises ``SourceError`` naming it.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO, Literal, cast

import zstandard

from bulkpush._records import Record, Rejection
from bulkpush.errors import ConfigError, SourceError

# The rejects file's format is defined once, next to its writer.
from bulkpush.report._rejects import is_rejects_line, unwrap_rejects
from bulkpush.sources._blocks import SPAN_BLOCK, Block, ReadInto, read_ndjson_blocks
from bulkpush.sources._csv import read_csv
from bulkpush.sources._framing import BLOCK, BOM, Reader, peek_first_line
from bulkpush.sources._jsonarray import read_json
from bulkpush.sources._ndjson import read_ndjson
from bulkpush.sources._sniff import check_not_binary, check_not_one_document, sniff_delimiter

try:
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a dependency
    import zlib as _zlib  # type: ignore[no-redef]

__all__ = [
    "COMPRESSED_MAGIC",
    "ByteCounter",
    "Format",
    "Truncated",
    "decoded",
    "detect_format",
    "open_error",
    "open_source",
    "read_stream",
    "safe_reader",
]

Format = Literal["ndjson", "json", "csv", "rejects"]

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: The magic bytes of the compressed streams :func:`decoded` recognises.
COMPRESSED_MAGIC = (_GZIP_MAGIC, _ZSTD_MAGIC)


# --- format detection -------------------------------------------------------


def _strip_compression_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in (".gz", ".gzip", ".zst", ".zstd"):
        if lower.endswith(suffix):
            return lower[: -len(suffix)]
    return lower


def _first_line(head: bytes) -> bytes:
    """The first non-blank line of ``head`` (BOM dropped), stripped; b"" if none."""
    if head.startswith(BOM):
        head = head[len(BOM) :]
    for line in head.split(b"\n"):
        stripped = line.strip()
        if stripped:
            return stripped
    return b""


def detect_format(name: str, head: bytes = b"") -> Format:
    """The format of a catalog called ``name`` whose (decompressed) content starts with ``head``.

    A first line that is a bulkpush rejects line → ``"rejects"``. Else by
    extension after dropping ``.gz``/``.zst``: ``.ndjson``/``.jsonl`` →
    ndjson, ``.csv`` → csv, ``.json`` → json unless the content starts with
    ``{`` (NDJSON saved as .json). Else by the first non-blank byte: ``[`` →
    json, ``{`` or nothing → ndjson, anything else → csv.
    """
    first = _first_line(head)
    if is_rejects_line(first):
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


class Truncated(EOFError):
    """Raised by a decompressing reader when its stream ends inside a member or frame.

    ``at``: the stream's length in (compressed) bytes, where it was cut;
    ``kind``: ``"gzip"`` or ``"zstd"``. Everything before the cut was
    delivered first.
    """

    def __init__(self, kind: str, at: int) -> None:
        super().__init__(f"the {kind} stream ends at byte {at:,}, before its end marker")
        self.kind = kind
        self.at = at


class _GzipReader(io.RawIOBase):
    """Decompress a gzip stream of one or more members; a stream cut mid-member is an error.

    Everything that can be decompressed is delivered before :class:`Truncated`
    is raised (``gzip.GzipFile`` and ISA-L's keep back what they hold when
    the stream ends early). Zero bytes between or after members are skipped,
    as ``gzip`` does.
    """

    _INPUT = 1 << 17  # compressed bytes per step; the output is bounded by the caller's buffer

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._obj = _zlib.decompressobj(wbits=31)
        self._pending = b""  # compressed bytes not yet given to the decompressor
        self._in_member = False
        self._consumed = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while True:
            if not self._pending:
                if self._eof:
                    return 0
                data = self._stream.read(self._INPUT)
                if not data:
                    self._eof = True
                    if self._in_member:
                        raise Truncated("gzip", self._consumed)
                    return 0
                self._consumed += len(data)
                self._pending = data
            if not self._in_member:
                data = self._pending.lstrip(b"\0")
                self._pending = data
                if not data:
                    continue
                self._in_member = True
            obj = self._obj
            out = obj.decompress(self._pending, len(view))
            self._pending = obj.unconsumed_tail
            if obj.eof:
                self._pending = obj.unused_data + self._pending
                self._obj = _zlib.decompressobj(wbits=31)
                self._in_member = False
            if out:
                n = len(out)
                view[:n] = out
                return n


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
        self._consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._out and not self._eof:
            data = self._stream.read(self._INPUT)
            if not data:
                self._eof = True
                if self._in_frame:
                    raise Truncated("zstd", self._consumed)
                break
            self._consumed += len(data)
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


def decoded(f: IO[bytes]) -> IO[bytes]:
    """``f`` decompressed when its magic bytes say gzip or zstd, else ``f`` itself."""
    head, f = _magic(f)
    if head.startswith(_GZIP_MAGIC):
        return cast(IO[bytes], io.BufferedReader(_GzipReader(f), BLOCK))
    if head.startswith(_ZSTD_MAGIC):
        return cast(IO[bytes], io.BufferedReader(_ZstdReader(f), BLOCK))
    return f


def open_error(name: str, exc: BaseException) -> SourceError:
    """The ``SourceError`` for a source that cannot be opened or read."""
    if isinstance(exc, Truncated):
        return SourceError(
            f"{name} is truncated at byte {exc.at:,}: its {exc.kind} stream ends before its "
            "end marker (an interrupted download or copy?); the products before the cut "
            "were read, the rest of the file is missing",
            source=name,
        )
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
            raise open_error(name, exc) from exc
    try:
        try:
            stream = decoded(raw)
        except OSError as exc:
            raise open_error(name, exc) from exc
        try:
            yield cast(BinaryIO, stream)
        finally:
            if stream is not raw:
                stream.close()
    finally:
        if owned:
            raw.close()


#: ``on_bytes(n)``: ``n`` more bytes of a source were read (after decompression).
ByteCounter = Callable[[int], None]


def safe_reader(f: IO[bytes], name: str, on_bytes: ByteCounter | None = None) -> Reader:
    """``f``'s ``read1`` (or ``read``), raising ``SourceError`` when the bytes cannot be read.

    ``on_bytes`` is told the size of every block read.
    """
    read = getattr(f, "read1", None) or f.read

    def safe_read(n: int) -> bytes:
        try:
            data: bytes = read(n)
        except Exception as exc:  # corrupt compressed data, I/O errors: the file is unreadable
            raise open_error(name, exc) from exc
        if on_bytes is not None:
            on_bytes(len(data))
        return data

    return safe_read


def reader_into(f: IO[bytes], name: str, on_bytes: ByteCounter | None = None) -> ReadInto:
    """``f``'s ``readinto`` (or ``read1``/``read`` copied in), raising ``SourceError``
    like ``_open.safe_reader`` when the bytes cannot be read; ``on_bytes`` is told each size."""
    native: Any = getattr(f, "readinto", None)
    read: Any = getattr(f, "read1", None) or f.read

    def into(view: memoryview) -> int:
        try:
            if native is not None:
                n = native(view)
                n = 0 if n is None else int(n)
            else:
                data = read(len(view))
                n = len(data)
                view[:n] = data
        except Exception as exc:  # corrupt compressed data, I/O errors: the file is unreadable
            raise open_error(name, exc) from exc
        if on_bytes is not None:
            on_bytes(n)
        return n

    return into


def _is_decompressed(stream: IO[bytes]) -> bool:
    return isinstance(getattr(stream, "raw", None), _GzipReader | _ZstdReader)


def read_stream(
    stream: IO[bytes],
    source: str,
    format: Format | None,
    first_line: int,
    cap: int,
    *,
    csv_delimiter: str | None = None,
    on_bytes: ByteCounter | None = None,
    blocks: bool = False,
    block_size: int = SPAN_BLOCK,
) -> Iterator[Record | Rejection | Block]:
    """A whole decompressed stream, read by its format's reader (detected when ``None``).

    ``blocks``: NDJSON comes as :class:`~bulkpush.sources._blocks.Block` s of
    whole lines (the span fast path), not a record per line.

    A detected format is checked first: a binary stream, or one JSON object
    over several lines where NDJSON was expected, raises ``SourceError``
    (``bulkpush.sources._sniff``). ``csv_delimiter`` None: sniffed from the
    CSV header line.
    """
    read = safe_reader(stream, source, on_bytes)
    prefix = peek_first_line(read, cap)
    fmt = format
    if fmt is None:
        check_not_binary(prefix, source, decompressed=_is_decompressed(stream))
        fmt = detect_format(source, prefix)
        if fmt == "ndjson":
            prefix = check_not_one_document(prefix, read, source)
    if fmt == "ndjson" and blocks:
        into = reader_into(stream, source, on_bytes)
        yield from read_ndjson_blocks(
            into, prefix, source, line_no=first_line, cap=cap, block_size=block_size
        )
    elif fmt == "ndjson":
        yield from read_ndjson(read, prefix, source, line_no=first_line, cap=cap)
    elif fmt == "rejects":
        yield from unwrap_rejects(read_ndjson(read, prefix, source, cap=cap), cap=cap)
    elif fmt == "csv":
        delimiter = csv_delimiter or sniff_delimiter(prefix)
        yield from read_csv(read, prefix, source, cap=cap, delimiter=delimiter)
    elif fmt == "json":
        yield from read_json(read, prefix, source, cap=cap)
    else:
        raise ConfigError(f"unknown catalog format {fmt!r}")
