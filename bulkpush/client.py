"""The async client for the Productsup Stream API.

::

    async with StreamClient(token="...") as client:
        report = await client.push("catalog.ndjson.gz", stream="124773")
        print(report.accepted, report.rejected)

``push`` returns the final :class:`~bulkpush.report.Report`;
``stream_push`` yields each chunk's :class:`~bulkpush.records.Outcome` (and
each client-side :class:`~bulkpush.records.Rejection`) as it happens. Both
raise :class:`~bulkpush.errors.RunStopped`, with the report attached, when the
run stopped before every product was sent; :class:`~bulkpush.errors.AuthError`
before anything is read when the token is refused.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol

from bulkpush.chunking import BodyFormat, encode_body
from bulkpush.compression import CompressionOptions, Compressor
from bulkpush.errors import CatalogTooSmall, ConfigError, NotFound
from bulkpush.limits import STREAM_API
from bulkpush.pipeline import Event, Pipeline, PipelineSettings, RecordHook, Source
from bulkpush.progress import Progress
from bulkpush.records import Chunk
from bulkpush.report import Report
from bulkpush.sources import FileRange, Format
from bulkpush.targets.productsup_stream import (
    DEFAULT_API_URL,
    RATE_SAFETY,
    Batch,
    DeleteResult,
    Stream,
    StreamManager,
    StreamType,
    StreamUploader,
)
from bulkpush.transport import (
    AdaptiveLimit,
    ConcurrencyOptions,
    HttpTransport,
    Pacer,
    RetryPolicy,
    Secret,
    TransportOptions,
)
from bulkpush.validation import ValidationOptions, Validator

__all__ = ["DEFAULT_API_URL", "PacerFactory", "PushOptions", "StreamClient"]

# Chunked streams: products per request are capped at 10,000 by the API; the
# byte target keeps a request well under the server's 10 s timeout on a slow
# uplink (16 MB before compression is about 3 MB gzipped).
DEFAULT_CHUNKED_REQUEST_BYTES = 16 * 1024 * 1024
# Referenced streams: 10-200 MB per request; aim in the middle.
DEFAULT_REFERENCED_REQUEST_BYTES = 50_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class PushOptions:
    """Everything a push can be told; the CLI and the worker build this same object.

    ``stream_type`` None asks the API (the preflight reads the stream).
    ``rate`` is requests per second on ``/products`` for this stream; None
    means 97.5 % of the published 30/s (slower for a while after a 429).
    ``request_bytes`` is the body size (before compression) a chunk is cut
    at; None picks 16 MB for chunked and 50 MB for referenced streams.
    ``referenced_min_bytes`` exists so tests can use small referenced
    catalogs against an emulator configured the same way.
    ``compression`` None means gzip (ISA-L level 2)
    for chunked streams and none for referenced streams: the reference does
    not say whether a referenced request's 10 MB minimum counts the body
    before or after gzip, and an uncompressed body meets it either way.
    """

    stream_type: StreamType | None = None
    format: Format | None = None
    body_format: BodyFormat | None = None
    validation: ValidationOptions = field(default_factory=ValidationOptions)
    compression: CompressionOptions | None = None
    max_products_per_request: int = STREAM_API.max_products_per_request
    request_bytes: int | None = None
    rate: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: ConcurrencyOptions = field(default_factory=ConcurrencyOptions)
    rejects_path: str | None = None
    pinpoint_rejects: bool = False
    max_examples: int = 5
    referenced_min_bytes: int = STREAM_API.referenced_min_request_bytes
    referenced_max_bytes: int = STREAM_API.referenced_max_request_bytes

    def __post_init__(self) -> None:
        if not 1 <= self.max_products_per_request <= STREAM_API.max_products_per_request:
            raise ConfigError(
                f"max_products_per_request must be 1..{STREAM_API.max_products_per_request}"
            )
        if self.rate is not None and self.rate <= 0:
            raise ConfigError("rate must be positive")


class PacerFactory(Protocol):
    """Makes the pacer of a stream's uploads: ``rate`` is requests per second on ``/products``."""

    def __call__(self, stream: str, rate: float) -> Pacer: ...


def _total_bytes(sources: Sequence[Source]) -> int | None:
    """The catalog's size on disk when every source is a plain file, else None."""
    total = 0
    for src in sources:
        if not isinstance(src, str | os.PathLike) or str(src) == "-":
            return None
        path = Path(src)
        if path.suffix in (".gz", ".zst"):
            return None
        try:
            total += path.stat().st_size
        except OSError:
            return None
    return total


class StreamClient:
    """An async client for one Stream API account (one token).

    ``api_url`` defaults to the real Stream API. Use as ``async with``; it owns
    one HTTP session. The token is kept as a :class:`Secret`: it is never in
    a ``repr``, a log line, an exception message or a report.

    ``pacer_factory`` makes the pacer that spaces a stream's uploads; it is
    called once per stream (again when a push asks for another rate), and
    its pacer is shared by every push to that stream through this client.
    The default is an in-process :class:`~bulkpush.transport.Pacer`; the
    worker passes one whose schedule is shared by every worker of a queue.
    """

    def __init__(
        self,
        *,
        token: str,
        api_url: str = DEFAULT_API_URL,
        transport_options: TransportOptions | None = None,
        retry: RetryPolicy | None = None,
        pacer_factory: PacerFactory | None = None,
    ) -> None:
        if not token:
            raise ConfigError("a Stream API token is required (--token or BULKPUSH_TOKEN)")
        self.api_url = api_url.rstrip("/")
        self._transport = HttpTransport(
            self.api_url,
            auth_headers={"Authorization": Secret(f"Bearer {token}")},
            options=transport_options,
        )
        self.streams = StreamManager(self._transport, policy=retry)
        # One pacer per stream for the life of the client: two pushes to the
        # same stream share its 30/s.
        self._pacers: dict[str, Pacer] = {}
        self._pacer_factory = pacer_factory or _local_pacer

    def __repr__(self) -> str:
        return f"StreamClient(api_url={self.api_url!r}, {self._transport!r})"

    async def __aenter__(self) -> StreamClient:
        await self._transport.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    # --- management ---------------------------------------------------------------

    async def get_stream(self, stream_id: str) -> Stream:
        return await self.streams.get_stream(stream_id)

    async def list_streams(self) -> list[Stream]:
        """Every stream of the account, all pages."""
        return await self.streams.list_streams()

    def iter_streams(self) -> AsyncIterator[Stream]:
        return self.streams.iter_streams()

    async def create_stream(self, name: str, type: StreamType = "chunked") -> Stream:
        if not STREAM_API.stream_name_min_chars <= len(name) <= STREAM_API.stream_name_max_chars:
            raise ConfigError(
                f"a stream name has {STREAM_API.stream_name_min_chars} to "
                f"{STREAM_API.stream_name_max_chars} characters, got {len(name)}"
            )
        return await self.streams.create_stream(name, type)

    async def rename_stream(self, stream_id: str, name: str) -> Stream:
        return await self.streams.rename_stream(stream_id, name)

    async def delete_stream(self, stream_id: str) -> None:
        await self.streams.delete_stream(stream_id)

    async def delete_products(self, stream_id: str, ids: Iterable[str | int]) -> DeleteResult:
        return await self.streams.delete_products(stream_id, ids)

    async def delete_all_products(self, stream_id: str) -> DeleteResult:
        return await self.streams.delete_all_products(stream_id)

    async def delete_product(self, stream_id: str, product_id: str) -> DeleteResult:
        return await self.streams.delete_product(stream_id, product_id)

    async def batch(self, stream_id: str, batch_id: str) -> Batch:
        return await self.streams.batch(stream_id, batch_id)

    # --- push ---------------------------------------------------------------------

    async def push(
        self,
        sources: Source | Sequence[Source],
        *,
        stream: str,
        options: PushOptions | None = None,
        progress: Progress | None = None,
    ) -> Report:
        """Push a catalog to ``stream``; return the final report.

        ``sources``: a path (``.gz``/``.zst`` too, ``"-"`` for stdin), a binary
        file object, a :class:`~bulkpush.sources.FileRange` (lines of a byte
        range of a plain NDJSON file), an iterable of dicts or NDJSON lines,
        or a list of these.
        Raises :class:`AuthError` before reading when the token is refused,
        :class:`NotFound` when the stream does not exist,
        :class:`CatalogTooSmall` for a referenced stream and a catalog under
        10 MB, :class:`RunStopped` (report attached) when the run stopped early.
        """
        pipeline = await self._pipeline(sources, stream=stream, options=options, progress=progress)
        return await pipeline.run()

    async def stream_push(
        self,
        sources: Source | Sequence[Source],
        *,
        stream: str,
        options: PushOptions | None = None,
        progress: Progress | None = None,
    ) -> AsyncIterator[Event]:
        """Like :meth:`push`, yielding each outcome and client rejection as it comes."""
        pipeline = await self._pipeline(sources, stream=stream, options=options, progress=progress)
        async for event in pipeline.events():
            yield event

    async def open_push(
        self,
        sources: Source | Sequence[Source],
        *,
        stream: str,
        options: PushOptions | None = None,
        progress: Progress | None = None,
        on_record: RecordHook | None = None,
    ) -> Pipeline:
        """The prepared run (preflight done), for callers that drive it themselves.

        Raises what :meth:`push` raises before reading. ``on_record``: see
        :class:`~bulkpush.pipeline.Pipeline` (called with every record read,
        in the reader thread). Iterate :meth:`Pipeline.events` to run it;
        :meth:`Pipeline.stop_reading` ends it early, cleanly.
        """
        return await self._pipeline(
            sources, stream=stream, options=options, progress=progress, on_record=on_record
        )

    async def _pipeline(
        self,
        sources: Source | Sequence[Source],
        *,
        stream: str,
        options: PushOptions | None,
        progress: Progress | None,
        on_record: RecordHook | None = None,
    ) -> Pipeline:
        opts = options or PushOptions()
        srcs: list[Source]
        if isinstance(sources, str | os.PathLike | FileRange) or hasattr(sources, "read"):
            srcs = [sources]  # type: ignore[list-item]
        elif isinstance(sources, list | tuple) and all(
            isinstance(s, str | os.PathLike | FileRange) or hasattr(s, "read") for s in sources
        ):
            srcs = list(sources)
        else:
            srcs = [sources]  # type: ignore[list-item]
        # Preflight: a bad token or a missing stream fails here, before the
        # catalog is read; the stream's type comes from the API.
        try:
            info = await self.streams.get_stream(stream)
        except NotFound as exc:
            raise NotFound(
                f"stream {stream} does not exist (or this token cannot see it)",
                status=404,
                method="GET",
                url=exc.url,
            ) from exc
        stream_type: StreamType = opts.stream_type or (
            "referenced" if info.type == "referenced" else "chunked"
        )
        if opts.stream_type and info.type and opts.stream_type != info.type:
            raise ConfigError(
                f"stream {stream} is a {info.type} stream, not {opts.stream_type}: "
                "drop --stream-type or use a matching stream"
            )
        total = _total_bytes(srcs)
        body_format: BodyFormat = opts.body_format or "ndjson"
        if stream_type == "referenced":
            if total is not None and total < opts.referenced_min_bytes:
                raise CatalogTooSmall(
                    f"the catalog is {total:,} bytes; a referenced stream needs at least "
                    f"{opts.referenced_min_bytes:,} bytes per request: push it to a chunked "
                    "stream instead",
                    nbytes=total,
                    min_bytes=opts.referenced_min_bytes,
                )
            target = opts.request_bytes or DEFAULT_REFERENCED_REQUEST_BYTES
            target = max(min(target, opts.referenced_max_bytes), opts.referenced_min_bytes)
            settings = PipelineSettings(
                max_count=10**9,
                max_bytes=opts.referenced_max_bytes,
                min_bytes=opts.referenced_min_bytes,
                target_bytes=target,
                body_format=body_format,
                format=opts.format,
                inflight_bytes=max(opts.concurrency.inflight_bytes, 2 * opts.referenced_max_bytes),
            )
        else:
            if body_format != "ndjson":
                raise ConfigError("chunked streams take NDJSON only (application/x-ndjson)")
            settings = PipelineSettings(
                max_count=opts.max_products_per_request,
                max_bytes=STREAM_API.max_request_bytes,
                target_bytes=opts.request_bytes or DEFAULT_CHUNKED_REQUEST_BYTES,
                body_format="ndjson",
                format=opts.format,
                inflight_bytes=opts.concurrency.inflight_bytes,
            )
        pacer = self._pacers.get(stream)
        rate = opts.rate if opts.rate is not None else STREAM_API.products_rate_per_s * RATE_SAFETY
        if pacer is None or pacer.target_rate != rate:
            pacer = self._pacers[stream] = self._pacer_factory(stream, rate)
        compression = opts.compression or CompressionOptions(
            codec="none" if stream_type == "referenced" else "gzip"
        )
        compressor = Compressor(compression)
        content_type = "application/json" if body_format == "json" else "application/x-ndjson"

        async def build(chunk: Chunk) -> bytes:
            return await compressor.compress(encode_body(chunk, body_format))

        uploader = StreamUploader(
            self._transport,
            stream,
            content_type=content_type,
            content_encoding=compressor.content_encoding,
            build=build,
            pacer=pacer,
            limit=AdaptiveLimit(opts.concurrency, rate=rate),
            policy=opts.retry,
            pinpoint=opts.pinpoint_rejects,
        )
        report = Report(max_examples=opts.max_examples, stream=stream, target=self.api_url)
        return Pipeline(
            srcs,
            sender=uploader,
            compressor=compressor,
            validator=Validator(opts.validation),
            settings=settings,
            report=report,
            rejects_path=opts.rejects_path,
            progress=progress,
            total_bytes=total,
            on_record=on_record,
        )


def _local_pacer(stream: str, rate: float) -> Pacer:
    # Below the published limit, also never more than it in any second (the
    # API counts fixed one-second windows); a rate above it is the user's
    # word that the limit does not apply (an emulator with limits lifted).
    limit = STREAM_API.products_rate_per_s
    return Pacer(rate, window_limit=int(limit) if rate <= limit else None)
