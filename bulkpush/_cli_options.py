"""The option sets ``bulkpush push`` and ``bulkpush jobs submit`` share, declared once.

Flag names are a contract: a job takes exactly the target and push options
of ``push``. Each decorator adds its flags and hands the command one value
instead of a dozen parameters:

- :func:`stream_options`: ``--stream``, ``--stream-type`` → ``stream_id``,
  ``stream_type``;
- :func:`connection_options`: ``--api-url``, ``--ca-bundle``, ``--insecure``,
  ``--integration`` → ``connection: Connection``;
- :func:`push_options`: ``--report``, ``--rejects``, ``--format``, ``--csv-delimiter``,
  ``--compression``, ``--gzip-level``, ``--rate``, ``--pinpoint-rejects``,
  ``--validation``, ``--flatten``, ``--separator``, ``--max-products``,
  ``--request-mb``, ``--body-format``, ``--lock-deadline``,
  ``--max-attempts`` → ``options: JobOptions`` (the JSON-able form both
  commands turn into :class:`~bulkpush.client.PushOptions`).

Numeric flags are checked by click with the types declared here
(:class:`FiniteFloat`, :data:`POSITIVE`, :data:`NON_NEGATIVE`, :data:`SHARE`),
so a bad value is refused with the flag's own name and exit code 2; the
worker and emulator commands use the same types.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

from bulkpush._click_types import NON_NEGATIVE, POSITIVE, SHARE, FiniteFloat
from bulkpush._compression import CompressionOptions
from bulkpush.errors import ConfigError
from bulkpush.limits import MB, STREAM_API
from bulkpush.targets.productsup_stream import DEFAULT_API_URL
from bulkpush.worker.jobs import JobOptions

__all__ = [
    "NON_NEGATIVE",
    "POSITIVE",
    "SHARE",
    "Connection",
    "FiniteFloat",
    "connection_options",
    "push_options",
    "stream_options",
]

Command = Callable[..., Any]


REQUEST_TIME = FiniteFloat(min=0, min_open=True, max=3600)
REQUEST_MB = FiniteFloat(min=0, min_open=True, max=STREAM_API.max_request_bytes / MB)
"""``--request-mb``: above 0, at most the API's largest request."""


def _check_gzip_level(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """``--gzip-level`` within the range of the gzip backend installed (ISA-L 0-3, zlib 1-9)."""
    if value is not None:
        try:
            CompressionOptions(codec="gzip", level=value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return value


def _check_csv_delimiter(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    if value is None:
        return None
    char = "\t" if value.lower() in ("tab", "\\t") else value
    if len(char) != 1 or char in '"\r\n':
        raise click.BadParameter(
            f"{value!r}: give one character (or 'tab'), not a quote or a line break"
        )
    return char


def _apply(fn: Command, options: list[Callable[[Command], Command]]) -> Command:
    for option in reversed(options):
        fn = option(fn)
    return fn


def stream_options(fn: Command) -> Command:
    """Add ``--stream`` (required) and ``--stream-type``."""
    return _apply(
        fn,
        [
            click.option("--stream", "stream_id", required=True, help="The stream id to push to."),
            click.option(
                "--stream-type",
                type=click.Choice(["chunked", "referenced"]),
                help="Checked against the stream; by default the API says.",
            ),
        ],
    )


@dataclass(frozen=True, slots=True)
class Connection:
    """Where the Stream API is and how to reach it (no token: each command has its own)."""

    api_url: str
    ca_bundle: str | None
    insecure: bool
    integration: str | None


def connection_options(fn: Command) -> Command:
    """Add the connection options; the command receives them as one ``connection``."""

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        api_url: str,
        ca_bundle: str | None,
        insecure: bool,
        integration: str | None,
        **kwargs: Any,
    ) -> Any:
        connection = Connection(api_url, ca_bundle, insecure, integration)
        return fn(*args, connection=connection, **kwargs)

    return _apply(
        wrapper,
        [
            click.option(
                "--api-url",
                envvar="BULKPUSH_API_URL",
                show_envvar=True,
                default=DEFAULT_API_URL,
                show_default=True,
                help="Stream API base URL.",
            ),
            click.option(
                "--ca-bundle",
                type=click.Path(exists=True, dir_okay=False),
                help="Custom CA bundle.",
            ),
            click.option(
                "--insecure",
                is_flag=True,
                help="Do not verify TLS certificates (loud; testing only).",
            ),
            click.option(
                "--integration", help="Your integration's name, sent in the User-Agent header."
            ),
        ],
    )


def _check_flatten(*, flatten: bool, validation: str, separator: str) -> None:
    """Refuse ``--flatten``/``--separator`` combinations that cannot work, in flag words."""
    if flatten and validation == "light":
        raise click.UsageError("--flatten needs --validation full: light validation parses nothing")
    given = click.get_current_context().get_parameter_source("separator")
    if not flatten and given not in (None, ParameterSource.DEFAULT):
        raise click.UsageError(
            "--separator needs --flatten: it joins the keys of flattened objects"
        )
    if not separator:
        raise click.UsageError("--separator must not be empty")


def push_options(fn: Command) -> Command:
    """Add the push options; the command receives them as one ``options: JobOptions``.

    ``options.report`` and ``options.rejects`` are the paths as given.
    """

    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        report_path: str | None,
        rejects_path: str | None,
        fmt: Any,
        csv_delimiter: str | None,
        compression: Any,
        gzip_level: int | None,
        rate: float | None,
        pinpoint_rejects: bool,
        validation: Any,
        flatten: bool,
        separator: str,
        max_products: int,
        request_mb: float | None,
        body_format: Any,
        lock_deadline: float,
        max_attempts: int,
        request_time: float,
        **kwargs: Any,
    ) -> Any:
        _check_flatten(flatten=flatten, validation=validation, separator=separator)
        options = JobOptions(
            format=fmt,
            csv_delimiter=csv_delimiter,
            compression=compression,
            gzip_level=gzip_level,
            rate=rate,
            pinpoint_rejects=pinpoint_rejects,
            validation=validation,
            flatten=flatten,
            separator=separator,
            max_products=max_products,
            request_mb=request_mb,
            body_format=body_format,
            lock_deadline=lock_deadline,
            max_attempts=max_attempts,
            request_time=request_time,
            rejects=rejects_path,
            report=report_path,
        )
        return fn(*args, options=options, **kwargs)

    return _apply(
        wrapper,
        [
            click.option(
                "--report",
                "report_path",
                type=click.Path(dir_okay=False),
                help="Write the JSON report here (a job: the worker that finishes it does).",
            ),
            click.option(
                "--rejects",
                "rejects_path",
                type=click.Path(dir_okay=False),
                help="Write rejected products (NDJSON) here.",
            ),
            click.option(
                "--format",
                "fmt",
                type=click.Choice(["ndjson", "json", "csv", "rejects"]),
                help="Source format (default: from the name and content).",
            ),
            click.option(
                "--csv-delimiter",
                callback=_check_csv_delimiter,
                metavar="CHAR",
                help="The cell separator of CSV sources: one character, or 'tab' (default: "
                "sniffed from the header line, the most frequent of , ; tab |).",
            ),
            click.option(
                "--compression",
                type=click.Choice(["gzip", "none"]),
                help="Request bodies (default: gzip; a referenced stream's 10 MB minimum is met "
                "before compression).",
            ),
            click.option(
                "--gzip-level",
                type=int,
                callback=_check_gzip_level,
                help="gzip level (ISA-L 0-3, zlib 1-9).",
            ),
            click.option(
                "--rate",
                type=POSITIVE,
                help="Requests per second on /products for the stream (default: the "
                "published 30/s less a safety margin; a job's workers share it).",
            ),
            click.option(
                "--pinpoint-rejects",
                is_flag=True,
                help="Find every rejected product the API did not name, by re-sending halves.",
            ),
            click.option(
                "--validation",
                type=click.Choice(["full", "light"]),
                default="full",
                show_default=True,
                help="full: parse and check every product before sending; light: only its "
                'size, shape and an "id" in it, the API checks the rest.',
            ),
            click.option(
                "--flatten",
                is_flag=True,
                help="Flatten nested objects/arrays instead of rejecting them.",
            ),
            click.option(
                "--separator", default=".", show_default=True, help="Key separator for --flatten."
            ),
            click.option(
                "--max-products",
                type=click.IntRange(1, 10_000),
                default=10_000,
                show_default=True,
                help="Products per request (chunked streams).",
            ),
            click.option(
                "--request-mb",
                type=REQUEST_MB,
                help="Request body size to aim for, in MB before compression.",
            ),
            click.option(
                "--body-format",
                type=click.Choice(["ndjson", "json"]),
                help="Referenced streams: NDJSON (default) or a JSON array.",
            ),
            click.option(
                "--lock-deadline",
                type=NON_NEGATIVE,
                default=900.0,
                show_default=True,
                help="Seconds to keep retrying a locked (423) stream.",
            ),
            click.option(
                "--max-attempts",
                type=click.IntRange(1, 100),
                default=8,
                show_default=True,
                help="Attempts per request on 5xx / network errors.",
            ),
            click.option(
                "--request-time",
                type=REQUEST_TIME,
                default=5.0,
                show_default=True,
                metavar="SECONDS",
                help="Seconds a request should take, body and answer (the API ends "
                "requests over 10 s): bytes in flight and request sizes follow the "
                "uplink's measured speed to keep it.",
            ),
        ],
    )
