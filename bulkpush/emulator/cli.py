"""``bulkpush emulator``: serve the local API emulator until interrupted.

It prints one line with its base URL when it is ready (``bulkpush emulator
listening on http://127.0.0.1:8080``), so a script can start it with
``--port 0`` and read the port it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys

import click

from bulkpush._click_types import NON_NEGATIVE, POSITIVE, SHARE
from bulkpush.emulator.config import EmulatorConfig, Faults
from bulkpush.emulator.server import Emulator

__all__ = ["emulator_command"]

# One megabit per second in bytes per second (decimal, as links are sold).
_MBIT_BYTES = 1_000_000 / 8


async def _serve(config: EmulatorConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # pragma: no cover - not on Windows
            loop.add_signal_handler(sig, stop.set)
    async with Emulator(config) as emu:
        click.echo(f"bulkpush emulator listening on {emu.url}")
        if not config.tokens:
            click.echo("no --token given: any non-empty bearer token is accepted")
        if config.uplink_bytes_per_s is not None:
            rate = config.uplink_bytes_per_s
            click.echo(
                f"uplink: {rate / _MBIT_BYTES:g} Mbit/s ({rate:,.0f} bytes/s), "
                "shared by every request body"
            )
        if config.request_timeout_s is None:
            click.echo("no request timeout: requests may take as long as they take")
        sys.stdout.flush()
        await stop.wait()
    click.echo("bulkpush emulator stopped")


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0 picks a free port.",
)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    help="Accepted bearer token (repeatable). None given: any non-empty token is accepted.",
)
@click.option(
    "--rate-products",
    type=POSITIVE,
    default=30.0,
    show_default=True,
    help="Requests/s allowed per stream on /products.",
)
@click.option(
    "--rate-batches",
    type=POSITIVE,
    default=100.0,
    show_default=True,
    help="Requests/s allowed per stream on /batches.",
)
@click.option(
    "--rate-other",
    type=POSITIVE,
    default=5.0,
    show_default=True,
    help="Requests/s allowed per endpoint elsewhere.",
)
@click.option("--no-rate-limit", is_flag=True, help="Disable every rate limit.")
@click.option(
    "--latency",
    type=NON_NEGATIVE,
    default=0.0,
    show_default=True,
    help="Seconds added to /products.",
)
@click.option("--throughput-mode", is_flag=True, help="Count lines only: no parsing, no store.")
@click.option(
    "--referenced-min-bytes",
    type=click.IntRange(min=0),
    default=10_000_000,
    show_default=True,
    help="Smallest upload a referenced stream accepts, in bytes as sent.",
)
@click.option(
    "--referenced-max-bytes",
    type=click.IntRange(min=0),
    default=200_000_000,
    show_default=True,
    help="Largest upload a referenced stream accepts, in bytes.",
)
@click.option(
    "--max-streams",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="The most streams the account may have.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault draws.")
@click.option(
    "--error-rate",
    type=SHARE,
    default=0.0,
    show_default=True,
    help="Share of /products requests answered with --error-status.",
)
@click.option(
    "--error-status",
    type=click.Choice(["500", "502", "503", "504"]),
    default="503",
    show_default=True,
    help="The 5xx status of the --error-rate answers.",
)
@click.option(
    "--drop-rate",
    type=SHARE,
    default=0.0,
    show_default=True,
    help="Share of /products requests whose connection is closed without an answer.",
)
@click.option(
    "--fault-latency",
    type=NON_NEGATIVE,
    default=0.0,
    show_default=True,
    help="Seconds added to /products (a fault, on top of --latency).",
)
@click.option(
    "--throttle-storm",
    type=NON_NEGATIVE,
    default=0.0,
    show_default=True,
    help="Answer every stream request 429 for this many seconds after it starts.",
)
@click.option(
    "--lock",
    "lock_s",
    type=NON_NEGATIVE,
    default=0.0,
    show_default=True,
    help="Answer every /products write 423 for this many seconds after it starts.",
)
@click.option(
    "--process-duration",
    type=NON_NEGATIVE,
    default=0.2,
    show_default=True,
    help="Seconds a simulated Platform API process runs.",
)
@click.option(
    "--uplink-mbps",
    type=POSITIVE,
    default=None,
    help="Bandwidth of the client's uplink in megabits per second (1 Mbit/s = 125,000 "
    "bytes/s; fractions allowed), shared by every request body. Default: unlimited.",
)
@click.option(
    "--request-timeout",
    type=POSITIVE,
    default=10.0,
    show_default=True,
    help="Answer 504 (storing nothing) to a request not answered this many seconds "
    "after its headers arrived, body transfer included (the API's 10 s rule).",
)
@click.option("--no-request-timeout", is_flag=True, help="Never end a request for taking too long.")
@click.option(
    "--request-log-size",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Requests kept in the inspection log (the oldest go first).",
)
def emulator_command(
    *,
    host: str,
    port: int,
    tokens: tuple[str, ...],
    rate_products: float,
    rate_batches: float,
    rate_other: float,
    no_rate_limit: bool,
    latency: float,
    throughput_mode: bool,
    referenced_min_bytes: int,
    referenced_max_bytes: int,
    max_streams: int,
    seed: int,
    error_rate: float,
    error_status: str,
    drop_rate: float,
    fault_latency: float,
    throttle_storm: float,
    lock_s: float,
    process_duration: float,
    uplink_mbps: float | None,
    request_timeout: float,
    no_request_timeout: bool,
    request_log_size: int,
) -> None:
    """Run the local Productsup Stream + Platform API emulator until interrupted."""
    if referenced_min_bytes > referenced_max_bytes:
        raise click.UsageError(
            f"--referenced-min-bytes ({referenced_min_bytes}) must not exceed "
            f"--referenced-max-bytes ({referenced_max_bytes})"
        )
    try:
        config = EmulatorConfig(
            host=host,
            port=port,
            tokens=frozenset(tokens),
            products_rate=None if no_rate_limit else rate_products,
            batches_rate=None if no_rate_limit else rate_batches,
            other_rate=None if no_rate_limit else rate_other,
            referenced_min_bytes=referenced_min_bytes,
            referenced_max_bytes=referenced_max_bytes,
            throughput_mode=throughput_mode,
            latency_s=latency,
            faults=Faults(
                error_rate=error_rate,
                error_status=int(error_status),
                drop_rate=drop_rate,
                latency_s=fault_latency,
                throttle_storm_s=throttle_storm,
                lock_s=lock_s,
            ),
            seed=seed,
            max_streams=max_streams,
            process_duration_s=process_duration,
            request_log_size=request_log_size,
            request_timeout_s=None if no_request_timeout else request_timeout,
            uplink_bytes_per_s=None if uplink_mbps is None else uplink_mbps * _MBIT_BYTES,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(config))
    except OSError as exc:  # the address is taken, or the host is not this machine's
        click.echo(
            f"bulkpush: error: cannot listen on {_where(host, port)}: {_reason(exc)}", err=True
        )
        sys.exit(2)


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(exc: OSError) -> str:
    """The cause in a few words: "address already in use", not asyncio's long sentence."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    if exc.errno:
        return os.strerror(exc.errno).lower()
    return str(exc)
