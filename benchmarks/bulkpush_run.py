"""One bulkpush run, in a fresh process, printing one JSON line of results.

    python -m benchmarks.bulkpush_run --url URL --catalog PATH --stream ID[,ID...]
        [--chunk-size N] [--compression gzip|none] [--validation full|light]
        [--rate R] [--token T] [--no-network] [--stages N]

Pushes the catalog with the public library API (:class:`StreamClient`,
:class:`PushOptions`), to each of the streams at once when several are given
(one client, one push per stream, as an application pushing several
catalogs would). The JSON line has ``products`` (accepted, all streams),
``seconds`` (first push started to last push ended), ``products_per_s``,
``mb_per_s`` (catalog bytes read per second), ``requests``, ``status_429``,
``peak_rss_mb``, ``cpu_s`` (user + system CPU seconds of the process while it
pushed: all its threads) and ``streams`` (the same per stream).

``--no-network`` measures the CPU ceiling: the run is prepared by the client
exactly as a push is (``StreamClient.open_push``: same reader, validation,
chunking, encoding, compression and queues) and then its sender is replaced
by one that answers every chunk at once without sending it. ``--stages N``
adds ``stages``: the cost of each stage on its own, one thread, over the
first N products (read, validate, chunk+encode, compress).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from bulkpush._chunking import Chunker, encode_body
from bulkpush._compression import CompressionOptions, compress
from bulkpush._records import Chunk, Outcome, Record
from bulkpush._validation import ValidationOptions, Validator
from bulkpush.client import PushOptions, StreamClient
from bulkpush.limits import STREAM_API
from bulkpush.report import Report
from bulkpush.sources import iter_records


class NullSender:
    """Answers every chunk as accepted without sending it (the CPU ceiling)."""

    def __init__(self) -> None:
        self.requests = 0

    def halt(self) -> None:
        pass

    async def send(self, chunk: Chunk, payload: bytes) -> list[Outcome]:
        self.requests += 1
        return [
            Outcome(
                chunk=chunk,
                status=200,
                accepted=len(chunk),
                attempts=1,
                bytes_sent=len(payload),
            )
        ]


def _options(args: argparse.Namespace) -> PushOptions:
    return PushOptions(
        stream_type="chunked",
        validation=ValidationOptions(level=args.validation),
        compression=CompressionOptions(codec=args.compression),
        max_products_per_request=args.chunk_size,
        rate=args.rate,
    )


def _row(report: Report, seconds: float) -> dict[str, Any]:
    return {
        "products": report.accepted,
        "read": report.read,
        "rejected": report.rejected,
        "not_sent": report.not_sent,
        "seconds": seconds,
        "requests": report.requests,
        "status_429": report.throttled,
        "bytes_read": report.bytes_read,
        "bytes_sent": report.bytes_sent,
    }


async def _push_one(
    client: StreamClient, args: argparse.Namespace, stream: str
) -> tuple[Report, float, float, int | None]:
    options = _options(args)
    if args.no_network:
        pipeline = await client.open_push(args.catalog, stream=stream, options=options)
        sender = NullSender()
        pipeline.sender = sender
        started = time.perf_counter()
        report = await pipeline.run()
        return report, started, time.perf_counter(), sender.requests
    started = time.perf_counter()
    report = await client.push(args.catalog, stream=stream, options=options)
    return report, started, time.perf_counter(), None


def peak_rss_mb() -> float:
    """This process's peak RSS in MB (2**20 bytes), threads included.

    ``VmHWM`` of ``/proc/self/status``, not ``ru_maxrss``: Linux carries
    ``ru_maxrss`` across ``exec``, so a child started by a large parent would
    report at least the parent's RSS at the fork.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    streams = args.stream.split(",")
    cpu0 = _cpu_s()
    async with StreamClient(token=args.token, api_url=args.url) as client:
        results = await asyncio.gather(*(_push_one(client, args, s) for s in streams))
    cpu_s = _cpu_s() - cpu0
    started = min(r[1] for r in results)
    ended = max(r[2] for r in results)
    per_stream = []
    for stream, (report, t0, t1, null_requests) in zip(streams, results, strict=True):
        row = _row(report, t1 - t0)
        if null_requests is not None:
            row["requests"] = null_requests
        row["stream"] = stream
        per_stream.append(row)
    seconds = ended - started
    products = sum(r["products"] for r in per_stream)
    bytes_read = sum(r["bytes_read"] for r in per_stream)
    return {
        "client": "bulkpush",
        "products": products,
        "read": sum(r["read"] for r in per_stream),
        "rejected": sum(r["rejected"] for r in per_stream),
        "not_sent": sum(r["not_sent"] for r in per_stream),
        "seconds": seconds,
        "products_per_s": products / seconds if seconds > 0 else 0.0,
        "mb_per_s": bytes_read / 1e6 / seconds if seconds > 0 else 0.0,
        "requests": sum(r["requests"] for r in per_stream),
        "status_429": sum(r["status_429"] for r in per_stream),
        "bytes_sent": sum(r["bytes_sent"] for r in per_stream),
        "cpu_s": cpu_s,
        "streams": per_stream,
    }


def stage_costs(
    path: str, limit: int, *, validation: str, compression: str, chunk_size: int
) -> dict[str, Any]:
    """Seconds per stage over the first ``limit`` products, each stage alone, one thread."""
    t = time.perf_counter()
    records: list[Record] = []
    for item in iter_records(path):
        if isinstance(item, Record):
            records.append(item)
        if len(records) >= limit:
            break
    read_s = time.perf_counter() - t

    validator = Validator(ValidationOptions(level=validation))  # type: ignore[arg-type]
    t = time.perf_counter()
    valid = [r for r in records if validator(r) is None]
    validate_s = time.perf_counter() - t

    chunker = Chunker(
        max_count=chunk_size,
        max_bytes=STREAM_API.max_request_bytes,
        target_bytes=16 * 1024 * 1024,
        body_format="ndjson",
    )
    t = time.perf_counter()
    bodies = []
    for record in valid:
        for chunk in chunker.feed(record) or ():
            bodies.append(encode_body(chunk, "ndjson"))
    bodies.extend(encode_body(chunk, "ndjson") for chunk in chunker.flush())
    encode_s = time.perf_counter() - t

    options = CompressionOptions(codec=compression)  # type: ignore[arg-type]
    t = time.perf_counter()
    for body in bodies:
        compress(body, options)
    compress_s = time.perf_counter() - t

    n = len(records)
    stages = {"read": read_s, "validate": validate_s, "chunk_encode": encode_s}
    stages["compress"] = compress_s
    return {
        "products": n,
        "seconds": stages,
        "products_per_s": {k: (n / v if v > 0 else 0.0) for k, v in stages.items()},
        "serial_products_per_s": n / sum(stages.values()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--stream", required=True, help="stream id, or several, comma-separated")
    parser.add_argument("--chunk-size", type=int, default=STREAM_API.max_products_per_request)
    parser.add_argument("--compression", choices=["gzip", "none"], default="gzip")
    parser.add_argument("--validation", choices=["full", "light"], default="full")
    parser.add_argument("--rate", type=float, default=None, help="req/s; default: the client's")
    parser.add_argument("--token", default="bench-token")
    parser.add_argument("--no-network", action="store_true")
    parser.add_argument("--stages", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    if not Path(args.catalog).exists():
        parser.error(f"no catalog at {args.catalog}")
    result = asyncio.run(_run(args))
    result["peak_rss_mb"] = peak_rss_mb()
    if args.stages:
        result["stages"] = stage_costs(
            args.catalog,
            args.stages,
            validation=args.validation,
            compression=args.compression,
            chunk_size=args.chunk_size,
        )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
