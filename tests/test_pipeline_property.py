"""Property: any bytes, as any format, through the whole pipeline: nothing
crashes but a SourceError, and every record read ends in exactly one bucket.

The sender here is a fake (it decides per record from the product's bytes,
rejects some by name, leaves some unnamed, sometimes stops the run), so the
property runs hundreds of examples in seconds; the same pipeline is tested
against the emulator over HTTP in test_push.py.
"""

from __future__ import annotations

import asyncio
import io
import zlib

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bulkpush._compression import CompressionOptions, Compressor
from bulkpush._pipeline import Pipeline, PipelineSettings
from bulkpush._records import STAGE_UPLOAD, Chunk, Outcome, Rejection, Unattributed
from bulkpush._validation import ValidationOptions, Validator
from bulkpush.errors import ChunkFailed, ServerError, SourceError
from bulkpush.report import Report


class FakeSender:
    """Accepts, rejects or leaves unnamed each record by a hash of its bytes;
    fails the whole run when a product contains ``STOP``."""

    def halt(self) -> None:
        pass

    async def send(self, chunk: Chunk, payload: bytes) -> list[Outcome]:
        await asyncio.sleep(0)
        out = Outcome(chunk=chunk, status=202, attempts=1, bytes_sent=len(payload))
        if any(b"STOP" in r.raw for r in chunk.records):
            out.status, out.not_sent = 503, len(chunk)
            raise ChunkFailed(
                "down", outcome=out, cause=ServerError("down", status=503, method="POST")
            )
        unnamed = 0
        for r in chunk.records:
            h = zlib.crc32(r.raw) % 7
            if h == 0:
                out.rejections.append(Rejection(r, STAGE_UPLOAD, "Syntax error"))
            elif h == 1:
                unnamed += 1
            else:
                out.accepted += 1
        if unnamed:
            out.unattributed.append(
                Unattributed("Syntax error", unnamed, chunk.first.source, 1, chunk.last.line)
            )
        return [out]


def run(data: bytes, fmt: str, level: str, max_count: int) -> Report | SourceError:
    async def go() -> Report:
        report = Report()
        pipeline = Pipeline(
            [io.BytesIO(data)],
            sender=FakeSender(),
            compressor=Compressor(CompressionOptions(codec="none")),
            validator=Validator(ValidationOptions(level=level)),  # type: ignore[arg-type]
            settings=PipelineSettings(
                max_count=max_count, max_bytes=10**6, format=fmt, compress_workers=2
            ),  # type: ignore[arg-type]
            report=report,
        )
        try:
            await pipeline.run()
        except Exception as exc:  # RunStopped carries the same report
            if getattr(exc, "report", None) is not report:
                raise
        return report

    try:
        return asyncio.run(go())
    except SourceError as exc:
        return exc


lines = st.lists(
    st.one_of(
        st.binary(max_size=60),
        st.sampled_from(
            [
                b'{"id":"a","t":"x"}',
                b'{"id":1,"t":"STOP"}',
                b'{"t":"no id"}',
                b"",
                b"   ",
                b'{"id":"n","x":{"y":1}}',
                b"[1,2]",
                b'{"id":"c","t":"\xff\xfe"}',
            ]
        ),
        st.builds(lambda i: b'{"id":"p%d","t":"v"}' % i, st.integers(0, 10**6)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(body=[b"\x1f\x8b"], sep=b"\n", fmt="ndjson", level="full", max_count=1)
@given(
    body=lines,
    sep=st.sampled_from([b"\n", b"\r\n"]),
    fmt=st.sampled_from(["ndjson", "csv", "json"]),
    level=st.sampled_from(["full", "light"]),
    max_count=st.integers(1, 7),
)
def test_every_record_read_ends_in_one_bucket(
    body: list[bytes], sep: bytes, fmt: str, level: str, max_count: int
) -> None:
    data = sep.join(body)
    if fmt == "json":
        data = b"[" + b",".join(body) + b"]"
    if fmt == "csv":
        data = b"id,t\n" + data
    result = run(data, fmt, level, max_count)
    if isinstance(result, SourceError):
        return  # a whole file that cannot be read is a clear error, not a crash
    assert result.read == result.accepted + result.rejected + result.not_sent
    if fmt == "ndjson" and not result.stopped:
        # A run that went to the end read every non-blank line (a leading
        # UTF-8 byte order mark is not part of the first line).
        lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
        assert result.read == sum(1 for ln in lines if ln.strip())
    if result.stopped and result.read:
        # (A source that fails before its first record, e.g. a bare gzip
        # header, stops the run with nothing read and so nothing not sent.)
        assert result.not_sent > 0
