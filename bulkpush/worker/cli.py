"""``bulkpush worker`` and ``bulkpush jobs submit|list|show|cancel``.

Thin: the commands build the same :class:`~bulkpush.worker.jobs.JobSpec`
and queue objects the library uses. ``jobs submit`` takes the target and
push options of ``bulkpush push``, plus ``--token-env`` (the token is read
by the worker from that environment variable; it is never queued), and
warns when a worker started with the default allowances would refuse the
job. ``bulkpush worker --allow-*`` sets what its jobs may use
(:class:`~bulkpush.worker.allow.Allowances`): the worker's check is the
boundary.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import click
import orjson

from bulkpush._cli_options import (
    POSITIVE,
    Connection,
    connection_options,
    push_options,
    stream_options,
)
from bulkpush._logging import setup_logging
from bulkpush.errors import BulkpushError, ConfigError
from bulkpush.report import render_summary
from bulkpush.worker.allow import Allowances, TokenGrant
from bulkpush.worker.jobs import DEFAULT_TOKEN_ENV, JobOptions, JobSpec, JobView, Target
from bulkpush.worker.queue import DEFAULT_LEASE_TTL, JobQueue, default_queue_url, open_queue
from bulkpush.worker.runner import DEFAULT_TOKEN_WAIT_S, Worker

__all__ = ["jobs_group", "worker_command"]

T = TypeVar("T")
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"bulkpush: error: {message}", err=True)
    sys.exit(code)


def _with_queue(
    url: str | None, fn: Callable[[JobQueue], Awaitable[T]], *, create: bool = True
) -> T:
    """Open the queue at ``url``, run ``fn`` on it, map errors to messages and exit codes.

    ``create=False`` (commands that only look at jobs): a SQLite queue whose
    directory does not exist is refused rather than created.
    """
    if not create:
        _require_existing_sqlite_dir(url or default_queue_url())

    async def go() -> T:
        queue = open_queue(url)
        try:
            return await fn(queue)
        finally:
            await queue.aclose()

    try:
        return asyncio.run(go())
    except BulkpushError as exc:
        _fail(str(exc), EXIT_USAGE if isinstance(exc, ConfigError) else 3)


def _require_existing_sqlite_dir(url: str) -> None:
    """Refuse a SQLite queue whose directory does not exist (opening it would create it)."""
    if not url.startswith("sqlite:///"):
        return  # redis, or a malformed URL open_queue explains
    # As the SQLite queue reads it: sqlite:///relative/jobs.db, sqlite:////absolute/jobs.db.
    path = Path(url[len("sqlite:///") :]).expanduser()
    folder = path.absolute().parent
    if not folder.is_dir():
        _fail(f"no queue at {path}: the directory {folder} does not exist")


_queue_option = click.option(
    "--queue",
    "queue_url",
    envvar="BULKPUSH_QUEUE",
    show_envvar=True,
    help="sqlite:///path/jobs.db or redis://host:port/db (default: a SQLite file in "
    "$XDG_DATA_HOME/bulkpush).",
)


@click.command("worker")
@_queue_option
@click.option(
    "--http",
    "http_addr",
    help="Serve the control API on HOST:PORT (127.0.0.1 unless told otherwise).",
)
@click.option(
    "--http-token-env",
    default="BULKPUSH_WORKER_TOKEN",
    show_default=True,
    help="Environment variable holding the control API's bearer token.",
)
@click.option(
    "--lease-ttl",
    type=POSITIVE,
    default=DEFAULT_LEASE_TTL,
    show_default=True,
    help="Seconds before a dead worker's part is taken over by another worker.",
)
@click.option(
    "--poll", type=POSITIVE, default=0.5, show_default=True, help="Idle poll interval (s)."
)
@click.option(
    "--token-wait",
    type=POSITIVE,
    default=DEFAULT_TOKEN_WAIT_S,
    show_default=True,
    help="Seconds a job whose token variable is not set here waits for a worker that has "
    "it before it fails.",
)
@click.option(
    "--allow-api-url",
    "allow_api_urls",
    multiple=True,
    metavar="URL",
    envvar="BULKPUSH_WORKER_ALLOW_API_URL",
    show_envvar=True,
    help="Jobs may push to this API (by origin; repeatable; the variable: space-separated), "
    "besides the default URL of their kind.",
)
@click.option(
    "--allow-token-env",
    "allow_token_envs",
    multiple=True,
    metavar="NAME[=URL]",
    envvar="BULKPUSH_WORKER_ALLOW_TOKEN_ENV",
    show_envvar=True,
    help="Jobs may name this token variable, for every allowed API URL, or with =URL for "
    "that URL only (repeatable). BULKPUSH_TOKEN is always allowed.",
)
@click.option(
    "--allow-dir",
    "allow_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    envvar="BULKPUSH_WORKER_ALLOW_DIR",
    show_envvar=True,
    help="Jobs may read sources and write reports and rejects files under this directory "
    "(repeatable; the variable: like PATH). A SQLite queue's directory is always allowed.",
)
@click.option(
    "--allow-read-dir",
    "allow_read_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    envvar="BULKPUSH_WORKER_ALLOW_READ_DIR",
    show_envvar=True,
    help="Jobs may read sources (and CA bundles) under this directory (repeatable).",
)
@click.option(
    "--allow-insecure",
    is_flag=True,
    help="Jobs may turn TLS certificate verification off (insecure).",
)
@click.option("--verbose", "-v", is_flag=True, help="Log each part.")
@click.option(
    "--log-format",
    type=click.Choice(["human", "json"]),
    default="human",
    show_default=True,
    help="Log lines on stderr: human, or json (one object per line with time, level, "
    "logger, message and fields; INFO and above).",
)
def worker_command(  # noqa: PLR0917 - click passes options positionally
    queue_url: str | None,
    http_addr: str | None,
    http_token_env: str,
    lease_ttl: float,
    poll: float,
    token_wait: float,
    allow_api_urls: tuple[str, ...],
    allow_token_envs: tuple[str, ...],
    allow_dirs: tuple[str, ...],
    allow_read_dirs: tuple[str, ...],
    allow_insecure: bool,
    verbose: bool,
    log_format: Literal["human", "json"],
) -> None:
    """Run load jobs from the queue until stopped (SIGTERM/SIGINT: drain; twice: exit now).

    Jobs may use only what the --allow-* options allow (and the defaults: the
    API URL of their kind, $BULKPUSH_TOKEN, a SQLite queue's directory); a
    job asking for more fails with the reason, and nothing is sent.
    """
    setup_logging(log_format, verbose=verbose)
    try:
        allow = Allowances(
            api_urls=allow_api_urls,
            token_envs=tuple(TokenGrant.parse(t) for t in allow_token_envs),
            dirs=allow_dirs,
            read_dirs=allow_read_dirs,
            insecure=allow_insecure,
        )
    except ConfigError as exc:
        _fail(str(exc))
    http_token = None
    if http_addr:
        http_token = os.environ.get(http_token_env)
        if not http_token:
            _fail(f"--http needs a bearer token in ${http_token_env}")

    async def go() -> None:
        queue = open_queue(queue_url, lease_ttl=lease_ttl)
        worker = Worker(queue, poll_s=poll, token_wait_s=token_wait, allow=allow)
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals > 1:
                os._exit(130)  # the second signal: exit at once
            worker.stop()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        server = None
        try:
            if http_addr and http_token:
                from bulkpush.worker.control import start_control  # noqa: PLC0415 - aiohttp app

                server = await start_control(http_addr, worker=worker, token=http_token)
            await worker.run()
        finally:
            if server is not None:
                await server.cleanup()
            await queue.aclose()

    try:
        asyncio.run(go())
    except BulkpushError as exc:
        _fail(str(exc))


@click.group("jobs")
def jobs_group() -> None:
    """Submit, list, show and cancel load jobs."""


@jobs_group.command("submit")
@click.argument("sources", nargs=-1, required=True)
@stream_options
@connection_options
@click.option(
    "--token-env",
    default=DEFAULT_TOKEN_ENV,
    show_default=True,
    help="The environment variable the worker reads the token from (never queued).",
)
@push_options
@click.option(
    "--max-in-flight",
    type=click.IntRange(1, 256),
    help="Requests in flight per worker (the window a reclaimed part may resend).",
)
@click.option(
    "--parts",
    type=click.IntRange(1, 10_000),
    help="Parts per plain NDJSON source (default: one per 64 MB).",
)
@_queue_option
def jobs_submit(  # noqa: PLR0917 - click passes options positionally
    sources: tuple[str, ...],
    stream_id: str,
    stream_type: str | None,
    connection: Connection,
    token_env: str,
    options: JobOptions,
    max_in_flight: int | None,
    parts: int | None,
    queue_url: str | None,
) -> None:
    """Queue a load job; prints its id."""
    for src in sources:
        if src != "-" and not os.path.isfile(src):
            what = "it is a directory" if os.path.isdir(src) else "no such file"
            _fail(f"cannot read {src}: {what}")
    try:
        spec = JobSpec(
            sources=sources,
            target=Target(
                kind="productsup-stream",
                stream=stream_id,
                stream_type=stream_type,  # type: ignore[arg-type]
                api_url=connection.api_url,
                token_env=token_env,
                ca_bundle=_absolute(connection.ca_bundle),
                insecure=connection.insecure,
                integration=connection.integration,
            ),
            options=replace(
                options,
                max_in_flight=max_in_flight,
                rejects=_absolute(options.rejects),
                report=_absolute(options.report),
            ),
            parts=parts,
        ).with_absolute_sources()
    except ConfigError as exc:
        _fail(str(exc))
    # Early word only: each worker checks the job against its own allowances.
    refusal = Allowances().for_queue(queue_url or default_queue_url()).refusal(spec)
    if refusal:
        click.echo(
            "bulkpush: warning: a worker started without --allow-* options refuses this job: "
            f"{refusal}",
            err=True,
        )
    click.echo(_with_queue(queue_url, lambda q: q.submit(spec)))


def _absolute(path: str | None) -> str | None:
    """Workers may run elsewhere: paths are queued absolute."""
    return os.path.abspath(path) if path else None


def _line(view: JobView) -> str:
    progress = view.progress()
    report = view.report()
    return (
        f"{view.id}\t{view.status}\t{progress['fraction'] * 100:.1f}%\t"
        f"{report['accepted']:,} accepted\t{report['rejected']:,} rejected\t"
        f"stream {view.spec.target.stream}\t{' '.join(view.spec.sources)}"
    )


@jobs_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="The most jobs to list, newest first.",
)
@_queue_option
def jobs_list(as_json: bool, limit: int, queue_url: str | None) -> None:
    """List the newest jobs."""
    views = _with_queue(queue_url, lambda q: q.list_jobs(limit), create=False)
    if as_json:
        _print_json([v.to_json(with_parts=False) for v in views])
        return
    for view in views:
        click.echo(_line(view))


def _print_json(obj: Any) -> None:
    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())


@jobs_group.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print status, progress and report as JSON.")
@_queue_option
def jobs_show(job_id: str, as_json: bool, queue_url: str | None) -> None:
    """Print a job's status, progress and report so far."""
    view = _with_queue(queue_url, lambda q: q.get(job_id), create=False)
    if view is None:
        _fail(f"no job {job_id}")
    if as_json:
        _print_json(view.to_json())
        return
    progress = view.progress()
    click.echo(f"job {view.id}: {view.status}")
    if view.error:
        click.echo(f"error: {view.error}")
    click.echo(
        f"parts: {progress['parts_done']}/{progress['parts']} done, "
        f"{progress['parts_running']} running ({progress['fraction'] * 100:.1f}%)"
    )
    click.echo(render_summary(view.report()))


@jobs_group.command("cancel")
@click.argument("job_id")
@_queue_option
def jobs_cancel(job_id: str, queue_url: str | None) -> None:
    """Cancel a job: its parts are no longer taken; running ones stop."""

    async def cancel(q: JobQueue) -> tuple[bool, str | None]:
        """(cancelled now, the status of a job that had already ended or None)."""
        view = await q.get(job_id)
        if view is None:
            return False, None
        if view.status in ("done", "failed", "cancelled"):
            return False, view.status  # ended: nothing to stop; its record stays as it is
        return await q.cancel(job_id), None

    cancelled, ended = _with_queue(queue_url, cancel, create=False)
    if ended is not None:
        _fail(f"job {job_id} is {ended}: an ended job cannot be cancelled")
    if not cancelled:
        _fail(f"no job {job_id}")
    click.echo(f"cancelled {job_id}")
