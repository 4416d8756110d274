"""The engine: one HTTP session, one retry executor, the pacers of its quotas, and pushes.

:class:`Engine` drives any :class:`~bulkpush._target.Target`: it prepares the
push (the target's preflight and plan), builds the pipeline (reader,
chunker, compressor, :class:`~bulkpush._sender.ChunkSender`), and keeps one
pacer per quota key for its life, so two pushes whose requests the API
counts together share one budget. A façade such as
:class:`~bulkpush.client.StreamClient` adds an API's management calls.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from bulkpush._compression import Compressor
from bulkpush._concurrency import AdaptiveLimit
from bulkpush._dryrun import DryRunSender
from bulkpush._http import HttpTransport
from bulkpush._link import Link
from bulkpush._options import PushOptions
from bulkpush._pipeline import Event, Pipeline, PipelineSettings, RecordHook, Source
from bulkpush._procs import default_workers
from bulkpush._progress import Progress
from bulkpush._quota import Pacer, Quota
from bulkpush._resource import AsyncResource
from bulkpush._retry import Executor, RetryPolicy
from bulkpush._sender import ChunkSender
from bulkpush._target import Plan, Target
from bulkpush._validation import Validator
from bulkpush.report import Report
from bulkpush.sources import FileRange

__all__ = ["Engine", "PacerFactory", "local_pacer", "normalize_sources", "total_bytes"]


class PacerFactory(Protocol):
    """Makes the pacer of a quota key: ``rate`` is the requests per second to keep."""

    def __call__(self, quota: Quota, rate: float) -> Pacer: ...


def local_pacer(quota: Quota, rate: float) -> Pacer:
    """An in-process pacer: ``rate``, and the quota's windows unless ``rate`` is above the
    quota's published rate (the caller's word that the limit does not apply, e.g. an
    emulator with limits lifted)."""
    return Pacer(rate, windows=quota.windows if rate <= quota.published_rate else ())


def _is_path(src: object) -> bool:
    if isinstance(src, os.PathLike):
        return True
    # A string starting with "{" or "[" is a product (an NDJSON line), not a path.
    return isinstance(src, str) and not src.lstrip().startswith(("{", "["))


def normalize_sources(sources: Source | Sequence[Source]) -> list[Source]:
    """The list of sources a push reads, from what a caller passed.

    A path, ``"-"``, a binary file object or a :class:`FileRange` is one
    source; a list or tuple of those is several; anything else (an iterable
    of dicts or NDJSON lines, also a list of JSON strings) is one source.
    """
    if _is_path(sources) or isinstance(sources, FileRange) or hasattr(sources, "read"):
        return [sources]  # type: ignore[list-item]
    if (
        isinstance(sources, list | tuple)
        and sources
        and all(_is_path(s) or isinstance(s, FileRange) or hasattr(s, "read") for s in sources)
    ):
        return list(sources)
    return [sources]  # type: ignore[list-item]


def total_bytes(sources: Sequence[Source]) -> int | None:
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


class Engine(AsyncResource):
    """Pushes catalogs to targets over one :class:`HttpTransport` (one API, one credential).

    ``retry`` is the policy of management calls (a push has its own in its
    options); ``pacer_factory`` makes the pacer of each quota key (default:
    :func:`local_pacer`; the worker passes one shared between processes).
    """

    def __init__(
        self,
        transport: HttpTransport,
        *,
        retry: RetryPolicy | None = None,
        pacer_factory: PacerFactory | None = None,
        link: Link | None = None,
    ) -> None:
        self.transport = transport
        # Every upload of this engine shares one uplink, whatever its stream.
        self.link = link or Link()
        self.executor = Executor(transport, policy=retry)
        self._pacer_factory = pacer_factory or local_pacer
        self._pacers: dict[tuple[str, float], Pacer] = {}

    def __repr__(self) -> str:
        return f"Engine({self.transport!r}, pacers={len(self._pacers)})"

    async def __aenter__(self) -> Engine:
        await self.transport.__aenter__()
        return self

    async def aclose(self) -> None:
        await self.transport.aclose()

    def pacer(self, quota: Quota, rate: float | None = None) -> Pacer:
        """The pacer of ``quota.key`` at ``rate`` (default: the quota's), made once and
        kept: a later push at the same rate gets the same pacer (and any slow-down it
        learned from 429s)."""
        want = rate if rate is not None else quota.rate
        pacer = self._pacers.get((quota.key, want))
        if pacer is None:
            pacer = self._pacers[quota.key, want] = self._pacer_factory(quota, want)
        return pacer

    def executor_for(self, options: PushOptions) -> Executor:
        """The executor of a push: this engine's session with the push's retry policy."""
        if options.retry == self.executor.policy:
            return self.executor
        return Executor(self.transport, policy=options.retry)

    async def open_push(
        self,
        target: Target,
        sources: Source | Sequence[Source],
        *,
        options: PushOptions | None = None,
        progress: Progress | None = None,
        on_record: RecordHook | None = None,
        dry_run: bool = False,
    ) -> Pipeline:
        """The prepared run (the target's preflight done), for callers that drive it.

        Raises what the target's :meth:`~bulkpush._target.Target.prepare`
        raises, before anything is read. Iterate :meth:`Pipeline.events` (or
        await :meth:`Pipeline.run`) to run it. ``dry_run``: the preflight
        still runs, then the catalog is read, validated, cut and compressed
        but no upload is sent (a :class:`~bulkpush._dryrun.DryRunSender`):
        the report counts what would have been sent in ``would_send``.
        """
        opts = options or PushOptions()
        srcs = normalize_sources(sources)
        total = total_bytes(srcs)
        executor = self.executor_for(opts)
        plan = await target.prepare(executor, options=opts, total_bytes=total)
        return self._pipeline(
            target,
            plan,
            srcs,
            executor=executor,
            opts=opts,
            progress=progress,
            on_record=on_record,
            total=total,
            dry_run=dry_run,
        )

    def _pipeline(
        self,
        target: Target,
        plan: Plan,
        srcs: list[Source],
        *,
        executor: Executor,
        opts: PushOptions,
        progress: Progress | None,
        on_record: RecordHook | None,
        total: int | None,
        dry_run: bool = False,
    ) -> Pipeline:
        settings = PipelineSettings(
            max_count=plan.max_count,
            max_bytes=plan.max_bytes,
            # Twice the largest product: one just over the limit is held whole
            # (its id and bytes reach the rejects file), a runaway line never is.
            read_cap=2 * plan.max_record_bytes,
            min_bytes=plan.min_bytes,
            target_bytes=plan.target_bytes,
            body_format=plan.body_format,
            format=opts.format,
            csv_delimiter=opts.csv_delimiter,
            inflight_bytes=max(opts.concurrency.inflight_bytes, plan.inflight_bytes or 0),
            workers=opts.workers if opts.workers is not None else default_workers(),
            process_min_bytes=opts.process_min_bytes,
            compression=plan.compression,
        )
        rate = opts.rate if opts.rate is not None else plan.quota.rate
        compressor = Compressor(plan.compression)
        report = Report(
            max_examples=opts.max_examples,
            stream=plan.destination,
            target=self.transport.base_url,
            dry_run=dry_run,
            link=None if dry_run else self.link,
        )
        sender: ChunkSender | DryRunSender
        if dry_run:
            sender = DryRunSender(target, plan, report)
        else:
            sender = ChunkSender(
                executor,
                target,
                plan,
                pacer=self.pacer(plan.quota, rate),
                limit=AdaptiveLimit(opts.concurrency, rate=rate),
                compressor=compressor,
                pinpoint=opts.pinpoint_rejects,
                link=self.link,
                request_time_s=opts.request_time_s,
            )
        validation = opts.validation
        if validation.max_product_bytes > plan.max_record_bytes:
            validation = replace(validation, max_product_bytes=plan.max_record_bytes)
        settings = replace(settings, validation=validation)
        return Pipeline(
            srcs,
            sender=sender,
            compressor=compressor,
            validator=Validator(validation),
            settings=settings,
            report=report,
            rejects_path=opts.rejects_path,
            progress=progress,
            total_bytes=total,
            on_record=on_record,
        )

    async def push(
        self,
        target: Target,
        sources: Source | Sequence[Source],
        *,
        options: PushOptions | None = None,
        progress: Progress | None = None,
        dry_run: bool = False,
    ) -> Report:
        """Push a catalog to ``target``; return the final report.

        Raises :class:`~bulkpush.errors.RunStopped` (report attached) when the
        run stopped before every product was sent. ``dry_run``: send nothing
        (see :meth:`open_push`).
        """
        pipeline = await self.open_push(
            target, sources, options=options, progress=progress, dry_run=dry_run
        )
        return await pipeline.run()

    async def stream_push(
        self,
        target: Target,
        sources: Source | Sequence[Source],
        *,
        options: PushOptions | None = None,
        progress: Progress | None = None,
    ) -> AsyncIterator[Event]:
        """Like :meth:`push`, yielding each outcome and client rejection as it comes."""
        pipeline = await self.open_push(target, sources, options=options, progress=progress)
        async for event in pipeline.events():
            yield event
