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
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO, Literal, cast

import zstandard

from bulkpush.errors import ConfigError, SourceError
from bulkpush.records import Record, Rejection

# The rejects file's format is defined once, next to its writer.
from bulkpush.report._rejects import is_rejects_line, unwrap_rejects
from bulkpush.sources._csv import read_csv
from bulkpush.sources._framing import BLOCK, BOM, Reader, peek_first_line
from bulkpush.sources._jsonarray import read_json
from bulkpush.sources._ndjson import read_ndjson

try:
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover - isal is a dependency
    import gzip as _gzip  # type: ignore[no-redef]

__all__ = [
    "COMPRESSED_MAGIC",
    "Format",
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


def decoded(f: IO[bytes]) -> IO[bytes]:
    """``f`` decompressed when its magic bytes say gzip or zstd, else ``f`` itself."""
    head, f = _magic(f)
    if head.startswith(_GZIP_MAGIC):
        return cast(IO[bytes], _gzip.GzipFile(fileobj=f, mode="rb"))  # type: ignore[no-untyped-call]
    if head.startswith(_ZSTD_MAGIC):
        return cast(IO[bytes], io.BufferedReader(_ZstdReader(f), BLOCK))
    return f


def open_error(name: str, exc: BaseException) -> SourceError:
    """The ``SourceError`` for a source that cannot be opened or read."""
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


def safe_reader(f: IO[bytes], name: str) -> Reader:
    """``f``'s ``read1`` (or ``read``), raising ``SourceError`` when the bytes cannot be read."""
    read = getattr(f, "read1", None) or f.read

    def safe_read(n: int) -> bytes:
        try:
            data: bytes = read(n)
        except Exception as exc:  # corrupt compressed data, I/O errors: the file is unreadable
            raise open_error(name, exc) from exc
        return data

    return safe_read


def read_stream(
    stream: IO[bytes], source: str, format: Format | None, first_line: int, cap: int
) -> Iterator[Record | Rejection]:
    """A whole decompressed stream, read by its format's reader (detected when ``None``)."""
    read = safe_reader(stream, source)
    prefix = peek_first_line(read, cap)
    fmt = format or detect_format(source, prefix)
    if fmt == "ndjson":
        yield from read_ndjson(read, prefix, source, line_no=first_line, cap=cap)
    elif fmt == "rejects":
        yield from unwrap_rejects(read_ndjson(read, prefix, source, cap=cap), cap=cap)
    elif fmt == "csv":
        yield from read_csv(read, prefix, source, cap=cap)
    elif fmt == "json":
        yield from read_json(read, prefix, source, cap=cap)
    else:
        raise ConfigError(f"unknown catalog format {fmt!r}")
