"""The library's front door for the Productsup Stream API: :class:`StreamClient`.

A façade over the generic :class:`~bulkpush._engine.Engine`: pushes go to a
:class:`~bulkpush.targets.productsup_stream.StreamTarget`, management calls
to a :class:`~bulkpush.targets.productsup_stream.StreamManager`, both
through the engine's one session and retry executor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence

from bulkpush._engine import Engine, PacerFactory
from bulkpush._http import HttpTransport, Secret, TransportOptions
from bulkpush._options import PushOptions, StreamType
from bulkpush._pipeline import Event, Pipeline, RecordHook, Source
from bulkpush._progress import Progress
from bulkpush._resource import AsyncResource
from bulkpush._retry import RetryPolicy
from bulkpush.errors import ConfigError
from bulkpush.report import Report
from bulkpush.targets.productsup_stream import (
    DEFAULT_API_URL,
    Batch,
    DeleteResult,
    Stream,
    StreamManager,
    StreamTarget,
)

__all__ = ["DEFAULT_API_URL", "PushOptions", "StreamClient"]


class StreamClient(AsyncResource):
    """An async client for one Stream API account (one token).

    ``api_url`` defaults to the real Stream API. Use as ``async with``; it owns
    one HTTP session. The token is kept as a :class:`~bulkpush.Secret`: it is
    never in a ``repr``, a log line, an exception message or a report.

    ``pacer_factory`` makes the pacer of a quota (a stream's uploads); it is
    called once per quota key (again when a push asks for another rate), and
    its pacer is shared by every push to that stream through this client.
    The default is an in-process :class:`~bulkpush.Pacer`; the worker passes
    one whose schedule is shared by every worker of a queue.
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
        self.engine = Engine(
            HttpTransport(
                self.api_url,
                auth_headers={"Authorization": Secret(f"Bearer {token}")},
                options=transport_options,
            ),
            retry=retry,
            pacer_factory=pacer_factory,
        )
        self.streams = StreamManager(self.engine.executor)

    def __repr__(self) -> str:
        return f"StreamClient(api_url={self.api_url!r}, {self.engine.transport!r})"

    async def __aenter__(self) -> StreamClient:
        await self.engine.__aenter__()
        return self

    async def aclose(self) -> None:
        await self.engine.aclose()

    # --- management ---------------------------------------------------------------

    async def get_stream(self, stream_id: str) -> Stream:
        return await self.streams.get_stream(stream_id)

    async def list_streams(self) -> list[Stream]:
        """Every stream of the account, all pages."""
        return await self.streams.list_streams()

    def iter_streams(self) -> AsyncIterator[Stream]:
        return self.streams.iter_streams()

    async def create_stream(self, name: str, type: StreamType = "chunked") -> Stream:
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

    def target(self, stream: str) -> StreamTarget:
        """The push target of ``stream`` (its preflight paced with this client's calls)."""
        return StreamTarget(stream, manager=self.streams)

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
        file object, a :class:`~bulkpush.FileRange` (lines of a byte range of a
        plain NDJSON file), an iterable of dicts or NDJSON lines (``str`` or
        ``bytes``), or a list of these.
        Raises :class:`AuthError` before reading when the token is refused,
        :class:`NotFound` when the stream does not exist,
        :class:`CatalogTooSmall` for a referenced stream and a catalog under
        10 MB, :class:`RunStopped` (report attached) when the run stopped early.
        """
        return await self.engine.push(
            self.target(stream), sources, options=options, progress=progress
        )

    async def stream_push(
        self,
        sources: Source | Sequence[Source],
        *,
        stream: str,
        options: PushOptions | None = None,
        progress: Progress | None = None,
    ) -> AsyncIterator[Event]:
        """Like :meth:`push`, yielding each outcome and client rejection as it comes."""
        async for event in self.engine.stream_push(
            self.target(stream), sources, options=options, progress=progress
        ):
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
        :class:`~bulkpush.Pipeline` (called with every record read, in the
        reader thread). Iterate :meth:`Pipeline.events` to run it;
        :meth:`Pipeline.stop_reading` ends it early, cleanly.
        """
        return await self.engine.open_push(
            self.target(stream),
            sources,
            options=options,
            progress=progress,
            on_record=on_record,
        )
