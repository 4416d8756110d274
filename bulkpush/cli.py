"""The ``bulkpush`` command line: thin, it parses arguments and builds the same
objects the library uses.

Exit codes (a contract): 0 every product accepted; 1 finished with rejected
products; 2 usage or input error; 3 run stopped by the API or the network;
4 interrupted (Ctrl-C, SIGTERM). A dry run (``push --dry-run``) exits 0 when
no product would be rejected, 1 when some would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, TypeVar

import click
import orjson

from bulkpush._cli_options import Connection, connection_options, push_options, stream_options
from bulkpush._cli_push import Signals, finish, warn_empty
from bulkpush._demo import run_demo
from bulkpush._http import Secret, TransportOptions
from bulkpush._logging import COMMAND_FORMAT, current_format, log_outcome, setup_logging
from bulkpush._procs import default_workers
from bulkpush._progress import make_progress
from bulkpush._records import Outcome
from bulkpush._version import __version__
from bulkpush.client import StreamClient
from bulkpush.emulator.cli import emulator_command
from bulkpush.errors import (
    APIError,
    BulkpushError,
    ConfigError,
    Interrupted,
    RunStopped,
    SourceError,
)
from bulkpush.report import Report
from bulkpush.sources import open_source
from bulkpush.targets.productsup_stream import DeleteResult
from bulkpush.worker.jobs import JobOptions
from bulkpush.worker.rejects import check_outputs

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 4

T = TypeVar("T")
log = logging.getLogger("bulkpush.push")

LOG_FORMAT_OPTION = click.option(
    "--log-format",
    type=click.Choice(["human", "json"]),
    default="human",
    show_default=True,
    help="Log lines on stderr: human, or json (one object per line with time, level, "
    "logger, message and fields; logs every retried request, 429, stop and warning, and "
    "turns the progress display off).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="bulkpush")
def cli() -> None:
    """bulkpush: push product catalogs into product-data platforms, fast, losing nothing."""


cli.add_command(emulator_command, name="emulator")


def _fail(message: str, code: int) -> NoReturn:
    if current_format() == "json":
        log.error(message, extra={"event": "error", "exit_code": code})
    else:
        click.echo(f"bulkpush: error: {message}", err=True)
    sys.exit(code)


def _exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, ConfigError | SourceError):
        return EXIT_USAGE
    if isinstance(exc, Interrupted):
        return EXIT_INTERRUPTED
    return EXIT_STOPPED


def _run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; map bulkpush errors to messages and exit codes."""
    try:
        return asyncio.run(coro_fn())  # type: ignore[arg-type]
    except RunStopped:
        raise
    except BulkpushError as exc:
        _fail(str(exc), _exit_code_for(exc))
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)


@dataclass(frozen=True, slots=True)
class ApiArgs:
    """The options every command that talks to the Stream API takes."""

    token: Secret | None
    api_url: str
    ca_bundle: str | None
    insecure: bool
    integration: str | None

    def client(self) -> StreamClient:
        if not self.token:
            _fail(
                "no token: pass --token-file FILE, set BULKPUSH_TOKEN or pass --token",
                EXIT_USAGE,
            )
        return StreamClient(
            token=self.token.reveal(),
            api_url=self.api_url,
            transport_options=TransportOptions(
                verify_tls=not self.insecure,
                ca_bundle=self.ca_bundle,
                integration=self.integration,
            ),
        )

    def run(self, action: Callable[[StreamClient], Awaitable[T]]) -> T:
        """Open a client, run ``action`` with it, map errors to exit codes."""
        client = self.client()

        async def go() -> T:
            async with client:
                return await action(client)

        return _run(go)


def _read_token_file(path: str) -> str:
    """The token in ``path``: its first line, stripped; exit 2 when unreadable or empty."""
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _fail(f"--token-file {path}: cannot read it: {reason}", EXIT_USAGE)
    if not token:
        _fail(f"--token-file {path}: the file holds no token", EXIT_USAGE)
    return token


def _api_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--token`` and the connection options; the command receives one ``api: ApiArgs``."""

    @connection_options
    @click.option(
        "--token",
        envvar="BULKPUSH_TOKEN",
        show_envvar=True,
        help="Stream API token (default: $BULKPUSH_TOKEN). Never printed. A flag's value "
        "shows in `ps`: prefer --token-file or the variable.",
    )
    @click.option(
        "--token-file",
        type=click.Path(dir_okay=False),
        help="Read the Stream API token from this file (its first line); wins over --token.",
    )
    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        token: str | None,
        token_file: str | None,
        connection: Connection,
        **kwargs: Any,
    ) -> Any:
        if token_file is not None:
            token = _read_token_file(token_file)
        api = ApiArgs(
            Secret(token) if token else None,
            connection.api_url,
            connection.ca_bundle,
            connection.insecure,
            connection.integration,
        )
        return fn(*args, api=api, **kwargs)

    return wrapper


@cli.command()
@click.argument("sources", nargs=-1, required=True)
@stream_options
@_api_options
@push_options
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="No progress display and no summary (errors are still printed).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Read, validate and cut the catalog and report what would be sent and rejected; "
    "send no upload. The preflight (GET /streams/ID: the token, the stream and its type) "
    "still runs, so a token is needed.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Processes that check, cut and gzip NDJSON: plain files of 32 MiB or more (each "
    "reads its own parts), .gz/.zst files and stdin (decompressed here). "
    "1: none, this process does it all (a reader thread and gzip threads) "
    f"[default: the cores available when 3 or more, else 1; here {default_workers()}].",
)
@LOG_FORMAT_OPTION
def push(
    sources: tuple[str, ...],
    stream_id: str,
    stream_type: str | None,
    api: ApiArgs,
    options: JobOptions,
    quiet: bool,
    dry_run: bool,
    workers: int | None,
    log_format: Literal["human", "json"],
) -> None:
    """Push catalogs (NDJSON, JSON array, CSV; .gz/.zst; - for stdin) to a stream."""
    setup_logging(log_format, human=COMMAND_FORMAT)
    if dry_run and not api.token:
        _fail(
            "no token: pass --token or set BULKPUSH_TOKEN (--dry-run sends no upload, "
            "but its preflight, GET /streams/ID, checks the token and the stream)",
            EXIT_USAGE,
        )
    for src in sources:
        if src != "-" and not os.path.exists(src):
            _fail(f"cannot read {src}: no such file", EXIT_USAGE)
    # Found before anything is read or sent, not after the whole catalog went out.
    problem = check_outputs(rejects=options.rejects, report=options.report)
    if problem is not None:
        _fail(problem, EXIT_USAGE)
    try:
        push_options = options.push_options(stream_type=stream_type, rejects_path=options.rejects)
    except ConfigError as exc:
        _fail(str(exc), EXIT_USAGE)
    push_options = dataclasses.replace(push_options, workers=workers)
    # Nothing is answered in a dry run: its bar follows the products read. JSON logs
    # are for a machine: no display redrawing between their lines.
    progress = make_progress(
        enabled=not quiet and log_format == "human",
        basis="read" if dry_run else "acknowledged",
    )

    async def run(client: StreamClient) -> Report:
        with Signals(quiet=quiet) as signals:
            try:
                signals.pipeline = await client.engine.open_push(
                    client.target(stream_id),
                    list(sources),
                    options=push_options,
                    progress=progress,
                    dry_run=dry_run,
                )
            except asyncio.CancelledError:
                if signals.hits:
                    raise Interrupted("interrupted before anything was read") from None
                raise
            async for event in signals.pipeline.events():
                if isinstance(event, Outcome):
                    log_outcome(log, event)
            return signals.pipeline.report

    try:
        report = api.run(run)
    except RunStopped as exc:
        report = exc.report
        finish(report, options.report, quiet)
        _fail(str(exc.cause or exc), _exit_code_for(exc.cause or exc))
    finish(report, options.report, quiet)
    warn_empty(sources, report)
    sys.exit(EXIT_REJECTED if report.rejected else EXIT_OK)


def _read_ids(path: str) -> Iterator[str]:
    """Product ids from a file: one per line, plain or NDJSON objects with an "id"."""
    with open_source(path) as fh:
        for n, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line:
                continue
            if line.startswith(b"{"):
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise SourceError(f"{path}:{n}: not valid JSON", source=path) from exc
                pid = obj.get("id") if isinstance(obj, dict) else None
                if pid is None or isinstance(pid, bool):
                    raise SourceError(f'{path}:{n}: no "id" in the object', source=path)
                yield str(pid)
            else:
                yield line.decode("utf-8", "replace")


@cli.command()
@click.option("--stream", "stream_id", required=True, help="The stream id to delete from.")
@click.option(
    "--ids",
    "ids_file",
    type=click.Path(dir_okay=False),
    help="File of ids (one per line, or NDJSON with id).",
)
@click.option("--all", "delete_all", is_flag=True, help="Delete every product of the stream.")
@click.option("--yes", is_flag=True, help="Confirm --all.")
@click.argument("ids", nargs=-1)
@_api_options
def delete(
    stream_id: str,
    ids_file: str | None,
    delete_all: bool,
    yes: bool,
    ids: tuple[str, ...],
    api: ApiArgs,
) -> None:
    """Delete products: by id (arguments or --ids FILE), or all of them (--all --yes)."""
    modes = sum([bool(ids_file), delete_all, bool(ids)])
    if modes != 1:
        _fail("give exactly one of: --ids FILE, --all --yes, or ids as arguments", EXIT_USAGE)
    if delete_all and not yes:
        _fail("--all deletes every product of the stream: add --yes to confirm", EXIT_USAGE)
    if ids_file and not os.path.exists(ids_file):
        _fail(f"cannot read {ids_file}: no such file", EXIT_USAGE)

    async def go(client: StreamClient) -> str:
        if delete_all:
            result = await client.delete_all_products(stream_id)
        elif len(ids) == 1:
            result = await client.delete_product(stream_id, ids[0])
        else:
            source = _read_ids(ids_file) if ids_file else iter(ids)
            result = await client.delete_products(stream_id, source)
        return _deleted_line(result, stream_id, every=delete_all)

    click.echo(api.run(go))


def _deleted_line(result: DeleteResult, stream_id: str, *, every: bool) -> str:
    """What a delete did, in the API's own count (``meta.deleted``), not the ids sent."""
    where = f"of stream {stream_id}"
    if every:
        if result.deleted is None:
            return f"deleted all products {where} (the API did not say how many)"
        return f"the API deleted {_plural(result.deleted, 'product')} {where}"
    asked = _plural(result.requested, "product id")
    sent = f"in {_plural(result.requests, 'request')}"
    if result.deleted is None:
        return f"sent {asked} {where} for deletion {sent} (the API did not say how many it deleted)"
    return f"the API deleted {result.deleted:,} of {asked} {where} {sent}"


def _plural(count: int, noun: str) -> str:
    """``1 request``, ``2 requests``."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


@cli.group()
def streams() -> None:
    """Manage streams: list, create, rename, delete."""


def _print_json(obj: Any) -> None:
    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())


@streams.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_api_options
def streams_list(as_json: bool, api: ApiArgs) -> None:
    """List every stream of the account (all pages)."""

    async def go(client: StreamClient) -> list[dict[str, Any]]:
        return [s.to_dict() for s in await client.list_streams()]

    rows = api.run(go)
    if as_json:
        _print_json(rows)
        return
    for row in rows:
        click.echo(f"{row['id']}\t{row['type']}\t{row['name']}")


@streams.command("create")
@click.argument("name")
@click.option(
    "--type",
    "stream_type",
    type=click.Choice(["chunked", "referenced"]),
    default="chunked",
    show_default=True,
    help="The stream's type (it cannot be changed later).",
)
@_api_options
def streams_create(name: str, stream_type: Literal["chunked", "referenced"], api: ApiArgs) -> None:
    """Create a stream; prints its id."""

    async def go(client: StreamClient) -> str:
        return (await client.create_stream(name, stream_type)).id

    click.echo(api.run(go))


@streams.command("rename")
@click.argument("stream_id")
@click.argument("name")
@_api_options
def streams_rename(stream_id: str, name: str, api: ApiArgs) -> None:
    """Rename a stream (its type cannot change)."""

    async def go(client: StreamClient) -> str:
        s = await client.rename_stream(stream_id, name)
        return f"{s.id}\t{s.type}\t{s.name}"

    click.echo(api.run(go))


@streams.command("delete")
@click.argument("stream_id")
@click.option("--yes", is_flag=True, help="Confirm: the stream and all its products are deleted.")
@_api_options
def streams_delete(stream_id: str, yes: bool, api: ApiArgs) -> None:
    """Delete a stream and all its data."""
    if not yes:
        _fail("deleting a stream deletes all its products: add --yes to confirm", EXIT_USAGE)

    async def go(client: StreamClient) -> str:
        await client.delete_stream(stream_id)
        return f"deleted stream {stream_id}"

    click.echo(api.run(go))


@cli.command()
@click.argument("stream_id")
@click.argument("batch_id")
@_api_options
def batch(stream_id: str, batch_id: str, api: ApiArgs) -> None:
    """Print the status of an upload (batch) as JSON."""

    async def go(client: StreamClient) -> dict[str, Any]:
        b = await client.batch(stream_id, batch_id)
        return {"id": b.id, "status": b.status, "errorCount": b.error_count, "stages": b.stages}

    _print_json(api.run(go))


@cli.command()
@click.option(
    "--products",
    type=click.IntRange(1000, 50_000_000),
    default=200_000,
    show_default=True,
    help="Products in the generated catalog.",
)
@click.option(
    "--dir",
    "out_dir",
    type=click.Path(file_okay=False),
    default="demo-output",
    show_default=True,
    help="Where the catalog, report and rejects file are written.",
)
@click.option(
    "--quiet", "-q", is_flag=True, help="Print nothing; the exit code says how the demo went."
)
def demo(products: int, out_dir: str, quiet: bool) -> None:
    """Generate a catalog with a few broken products and push it to the embedded emulator."""
    try:
        code = asyncio.run(run_demo(products=products, out_dir=out_dir, quiet=quiet))
    except BulkpushError as exc:
        _fail(str(exc), _exit_code_for(exc))
    sys.exit(code)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="bulkpush")
    except APIError as exc:  # pragma: no cover - _run maps these; a last guard
        _fail(str(exc), EXIT_STOPPED)


from bulkpush.worker.cli import jobs_group, worker_command  # noqa: E402 - registered last

cli.add_command(worker_command, name="worker")
cli.add_command(jobs_group, name="jobs")
