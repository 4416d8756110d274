"""Request-body compression: gzip through ISA-L when available, off the event loop.

:func:`compress` is the synchronous one-shot call; :class:`Compressor` runs it
on a thread pool so the event loop keeps sending while bodies are compressed.

Backend: ``isal.isal_zlib`` (Intel ISA-L, levels 0-3) when installed, else the
standard library's ``zlib`` (levels 1-9). Both write a plain gzip member
(``wbits=31``) that ``zlib.decompressobj(16 + zlib.MAX_WBITS)`` reads.

Threads give real parallelism on both backends: they release the GIL while
they compress. Evidence for isal 1.9.1: its ``isal_zlib`` extension imports
``PyEval_SaveThread``/``PyEval_RestoreThread`` (what ``Py_BEGIN_ALLOW_THREADS``
expands to; ``nm -D isal_zlib.*.so``), and measured here (2 cores, shared):
two threads each compressing a 40 MB body at level 1 took 1.6-1.7x the work
of one thread in about the same wall time (0.061 s alone, 0.077 s for two at
once), and a pure-Python thread kept ~55% of its speed while the other
compressed (it gets 0% while a call holds the GIL). stdlib ``zlib`` likewise
(1.7-2.0x).

Default level, measured by the benchmark suite (``benchmarks/RESULTS.md``,
section 5) on a 10 MB NDJSON body of 10,000 sample products of about 1 KB
(20 attributes; descriptions from a 3,000-word Zipf vocabulary, so the
ratio is that of real catalogs), one thread, MB/s of input and ratio =
input / output:

==========  ========  =====
level       MB/s      ratio
==========  ========  =====
isal 0      676       3.54
isal 1      641       3.84
isal 2      623       3.94
isal 3      384       4.04
zlib 1      117       3.78
zlib 6      46        4.69
==========  ========  =====

The default is isal level 2 (ISA-L's own default): within 3 % of level 1's
speed (the timings' noise on a shared machine) for 2.5 % fewer bytes on the
wire, which matters too at the API's ceiling (300,000 products/s is about
80 MB/s compressed per stream); level 3 costs 40 % of the speed for 2.5 %
more. At that ceiling level 2 needs under half of one core, leaving the rest
for reading and validation. Without isal the default is zlib level 1 (2.5x
faster than level 6 for a 20 % larger body: a sender held to 30 requests/s
is bound by CPU long before it is bound by bandwidth).
"""

from __future__ import annotations

import asyncio
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from bulkpush._resource import AsyncResource
from bulkpush.errors import ConfigError

_isal_zlib: ModuleType | None
try:
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - isal is a dependency; the fallback is for odd platforms
    _isal_zlib = None

__all__ = [
    "BACKEND",
    "DEFAULT_LEVEL",
    "Codec",
    "CompressionOptions",
    "Compressor",
    "StreamCompressor",
    "compress",
]

Codec = Literal["gzip", "none"]

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ISAL_DEFAULT_LEVEL = 2
_ZLIB_DEFAULT_LEVEL = 1

BACKEND: str = "isal" if _isal_zlib is not None else "zlib"
"""The gzip backend in use: ``"isal"`` or ``"zlib"``."""

DEFAULT_LEVEL: int = _ISAL_DEFAULT_LEVEL if _isal_zlib is not None else _ZLIB_DEFAULT_LEVEL
"""The backend's gzip level when none is given (see the module docstring)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CompressionOptions:
    """How request bodies are compressed.

    ``codec``: ``"gzip"`` or ``"none"``. ``level``: the backend's level
    (isal 0-3, zlib 1-9); ``None`` picks the measured default (module
    docstring).
    """

    codec: Codec = "gzip"
    level: int | None = None

    def __post_init__(self) -> None:
        if self.codec not in ("gzip", "none"):
            raise ConfigError(f"unknown compression codec {self.codec!r}: use 'gzip' or 'none'")
        if self.level is not None and self.codec == "gzip":
            low, high = (0, 3) if _isal_zlib is not None else (1, 9)
            if not low <= self.level <= high:
                raise ConfigError(
                    f"gzip level {self.level} is out of range for the {BACKEND} backend "
                    f"({low}-{high})"
                )

    @property
    def content_encoding(self) -> str | None:
        """The ``Content-Encoding`` header value for bodies compressed this way."""
        return "gzip" if self.codec == "gzip" else None


def _backend() -> tuple[ModuleType, int]:
    if _isal_zlib is not None:
        return _isal_zlib, _ISAL_DEFAULT_LEVEL
    return zlib, _ZLIB_DEFAULT_LEVEL


def compress(data: bytes, options: CompressionOptions) -> bytes:
    """``data`` compressed as ``options`` say: one gzip member, or ``data`` itself for "none"."""
    if options.codec == "none":
        return data
    module, default = _backend()
    level = default if options.level is None else options.level
    result: bytes = module.compress(data, level, _GZIP_WBITS)
    return result


class StreamCompressor:
    """One body compressed as it comes, piece by piece (what :func:`compress` gives in one
    call): no uncompressed copy of the whole body is ever held."""

    __slots__ = ("_obj", "_parts")

    def __init__(self, options: CompressionOptions) -> None:
        self._parts: list[bytes] = []
        self._obj: Any = None
        if options.codec != "none":
            module, default = _backend()
            level = default if options.level is None else options.level
            self._obj = module.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)

    def __repr__(self) -> str:
        return f"<StreamCompressor parts={len(self._parts)}>"

    def add(self, piece: bytes | memoryview) -> None:
        if self._obj is None:
            self._parts.append(bytes(piece))
        else:
            out = self._obj.compress(piece)
            if out:
                self._parts.append(out)

    def finish(self) -> bytes:
        """The whole compressed body; the compressor is spent."""
        if self._obj is not None:
            self._parts.append(self._obj.flush())
        body = b"".join(self._parts)
        self._parts = []
        return body


class Compressor(AsyncResource):
    """Compress request bodies on a thread pool, one per CPU by default.

    Use as ``async with Compressor(options) as c: body = await c.compress(data)``.
    With ``codec="none"`` no pool is started and ``compress`` returns the data.
    """

    def __init__(
        self, options: CompressionOptions = CompressionOptions(), *, workers: int | None = None
    ) -> None:
        self.options = options
        self.content_encoding: str | None = options.content_encoding
        self._workers = workers or os.cpu_count() or 1
        self._executor: ThreadPoolExecutor | None = None
        if options.codec != "none":
            self._executor = ThreadPoolExecutor(
                max_workers=self._workers, thread_name_prefix="bulkpush-gzip"
            )
        self._in_flight = 0
        self._closed = False
        self.bytes_in = 0
        self.bytes_out = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"in_flight={self._in_flight}"
        return (
            f"<Compressor {self.options.codec} level={self.options.level} "
            f"workers={self._workers} {state} bytes_in={self.bytes_in} bytes_out={self.bytes_out}>"
        )

    async def compress(self, data: bytes) -> bytes:
        """``data`` compressed, computed on the pool; raises ``RuntimeError`` once closed."""
        if self._closed:
            raise RuntimeError("the compressor is closed")
        if self._executor is None:
            out = data
        else:
            self._in_flight += 1
            try:
                loop = asyncio.get_running_loop()
                out = await loop.run_in_executor(self._executor, compress, data, self.options)
            finally:
                self._in_flight -= 1
        self.bytes_in += len(data)
        self.bytes_out += len(out)
        return out

    async def aclose(self) -> None:
        """Wait for compressions in progress, then stop the pool. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True)
