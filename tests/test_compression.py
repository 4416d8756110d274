from __future__ import annotations

import asyncio
import zlib

import pytest

from bulkpush import _compression as compression
from bulkpush._compression import CompressionOptions, Compressor, compress
from bulkpush.errors import ConfigError

BODY = b"".join(
    b'{"id":"%d","title":"soft cotton shirt","price":"9.99 EUR"}\n' % i for i in range(2000)
)


def gunzip(data: bytes) -> bytes:
    """Decompress as the server does."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(data) + d.flush()
    assert d.eof and not d.unused_data
    return out


@pytest.mark.parametrize("level", [None, 0, 1, 2, 3])
def test_gzip_output_is_valid_gzip(level: int | None) -> None:
    out = compress(BODY, CompressionOptions(level=level))
    assert out[:2] == b"\x1f\x8b"
    assert gunzip(out) == BODY
    assert len(out) < len(BODY) / 3


def test_empty_body() -> None:
    assert gunzip(compress(b"", CompressionOptions())) == b""


def test_none_returns_the_data_itself() -> None:
    assert compress(BODY, CompressionOptions(codec="none")) is BODY
    assert CompressionOptions(codec="none").content_encoding is None
    assert CompressionOptions().content_encoding == "gzip"


def test_backend_is_isal() -> None:
    assert compression.BACKEND == "isal"


@pytest.mark.parametrize("kwargs", [{"codec": "brotli"}, {"level": 9}, {"level": -1}])
def test_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        CompressionOptions(**kwargs)  # type: ignore[arg-type]


def test_zlib_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "_isal_zlib", None)
    assert gunzip(compress(BODY, CompressionOptions())) == BODY
    assert gunzip(compress(BODY, CompressionOptions(level=9))) == BODY


async def test_compressor_runs_off_the_loop_and_closes() -> None:
    async with Compressor(CompressionOptions(), workers=2) as c:
        assert c.content_encoding == "gzip"
        outs = await asyncio.gather(*(c.compress(BODY + b"%d" % i) for i in range(8)))
        assert [gunzip(o) for o in outs] == [BODY + b"%d" % i for i in range(8)]
        assert c.bytes_in == sum(len(BODY + b"%d" % i) for i in range(8))
        assert "in_flight=0" in repr(c)
    assert "closed" in repr(c)
    with pytest.raises(RuntimeError):
        await c.compress(BODY)
    await c.aclose()  # idempotent


async def test_compressor_without_compression() -> None:
    async with Compressor(CompressionOptions(codec="none")) as c:
        assert c.content_encoding is None
        assert await c.compress(BODY) is BODY
