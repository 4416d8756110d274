"""One bulkpush run, in a fresh process, printing one JSON line of results.

    python -m benchmarks.bulkpush_run --url URL --catalog PATH --stream ID[,ID...]
        [--chunk-size N] [--compression gzip|none] [--validation full|light]
        [--rate R] [--token T] [--workers N] [--process-min-bytes B]
        [--no-network] [--stages N]

Pushes the catalog with the public library API (:class:`StreamClient`,
:class:`PushOptions`), to each of the streams at once when several are given
(one client, one push per stream, as an application pushing several
catalogs would). The JSON line has ``products`` (accepted, all streams),
``seconds`` (first push started to last push ended), ``products_per_s``,
``mb_per_s`` (catalog bytes read per second), ``requests``, ``status_429``,
``cpu_s``, ``cpu_parent_s``, ``peak_rss_mb``, ``peak_rss_self_mb``,
``processes_seen`` and ``streams`` (the same per stream).

``--workers N`` is ``PushOptions(workers=N)`` (not given: the library's
default, the cores available); ``--process-min-bytes B`` is
``PushOptions(process_min_bytes=B)`` (0 lets a small quick-mode catalog use
reading processes too).

CPU: ``cpu_s`` is the user + system CPU seconds of ALL the processes of the
push: this process (every thread) from ``getrusage(RUSAGE_SELF)`` plus the
reading processes, from the ``RUSAGE_CHILDREN`` delta over the push (they are
reaped when the push ends, so their whole life is in it, start-up included);
``cpu_parent_s`` is this process alone.

Memory: ``peak_rss_mb`` is the sum, over this process and every process
descended from it, of its peak RSS (``VmHWM``): a background thread walks the
process tree from ``/proc/PID/task/*/children`` every ~50 ms while pushing
and keeps each descendant's ``VmHWM`` at its last sighting (a process that
lives less than 50 ms may be missed); this process's own is read at the end.
It is a sum of peaks, so at most what the processes held at once would need.
``peak_rss_self_mb`` is this process alone; ``processes_seen`` how many
descendants the sampler saw, ``peaks_other_mb`` their peaks.

``--no-network`` measures the CPU ceiling: the run is prepared by the client
exactly as a push is (``StreamClient.open_push``: same reader, validation,
chunking, encoding, compression and queues) and then its sender is replaced
by one that answers every chunk at once without sending it (the reading
processes, when used, still read, check, chunk and gzip; the null sender only
counts).

``--stages N`` adds ``stages``: the cost of each stage of the span path (as
the package runs it on NDJSON, in a reading process or the reader thread) on
its own, one thread, over the first whole 4 MB blocks holding at least N
products: read blocks (``read_ndjson_blocks``, each block's bytes copied),
``check_block`` per block, ``SpanChunker.feed`` per block, ``compress`` per
chunk body; and the floor of the same bytes: ``orjson.loads`` of every line
(the lines split beforehand) and gzip (the default, ISA-L level 2) of every
block. Each in seconds and microseconds per product. ``stages_records`` is
the record path's (``iter_records``, ``Validator``, ``Chunker`` +
``encode_body``, ``compress``) over the first N products, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from bulkpush._chunking import Chunker, SpanChunker, encode_body
from bulkpush._compression import CompressionOptions, compress
from bulkpush._records import Chunk, Outcome, Record
from bulkpush._spans import check_block
from bulkpush._validation import ValidationOptions, Validator
from bulkpush.client import PushOptions, StreamClient
from bulkpush.limits import STREAM_API
from bulkpush.report import Report
from bulkpush.sources import iter_records
from bulkpush.sources._blocks import Block, read_ndjson_blocks


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
        workers=args.workers,
        process_min_bytes=args.process_min_bytes,
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


def _vm_hwm_mb(pid: int | str = "self") -> float | None:
    """``VmHWM`` of ``/proc/PID/status`` in MB (2**20 bytes); None when gone or unknown."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak RSS in MB (2**20 bytes), threads included.

    ``VmHWM`` of ``/proc/self/status``, not ``ru_maxrss``: Linux carries
    ``ru_maxrss`` across ``exec``, so a child started by a large parent would
    report at least the parent's RSS at the fork.
    """
    own = _vm_hwm_mb()
    if own is not None:
        return own
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _children(pid: int) -> list[int]:
    """The children of ``pid`` (started by any of its threads), from /proc."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(x) for x in fh.read().split())
        except (OSError, ValueError):
            continue
    return out


def _start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/PID/stat`` (start time): tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class TreeMemory:
    """Peak RSS of this process's descendants, sampled from /proc by a thread.

    Every ``interval`` seconds: walk the process tree below this process and
    keep each descendant's ``VmHWM`` as last seen (keyed by pid and start
    time). :meth:`stop` takes a last sample; :attr:`descendants_mb` is the sum.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peaks: dict[tuple[int, str], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-rss", daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        todo = _children(os.getpid())
        seen: set[int] = set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            start = _start_time(pid)
            hwm = _vm_hwm_mb(pid)
            if start is not None and hwm is not None:  # a zombie has no VmHWM: keep the last
                key = (pid, start)
                self.peaks[key] = max(hwm, self.peaks.get(key, 0.0))
            todo.extend(_children(pid))

    @property
    def descendants_mb(self) -> float:
        return sum(self.peaks.values())


def _cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    streams = args.stream.split(",")
    cpu0 = _cpu_s()
    children0 = _cpu_s(resource.RUSAGE_CHILDREN)
    with TreeMemory() as tree:
        async with StreamClient(token=args.token, api_url=args.url) as client:
            results = await asyncio.gather(*(_push_one(client, args, s) for s in streams))
    cpu_parent_s = _cpu_s() - cpu0
    cpu_children_s = _cpu_s(resource.RUSAGE_CHILDREN) - children0
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
    own_peak = peak_rss_mb()
    return {
        "client": "bulkpush",
        "workers": args.workers,
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
        "cpu_s": cpu_parent_s + cpu_children_s,
        "cpu_parent_s": cpu_parent_s,
        "peak_rss_mb": own_peak + tree.descendants_mb,
        "peak_rss_self_mb": own_peak,
        "processes_seen": len(tree.peaks),
        "peaks_other_mb": sorted((round(v, 1) for v in tree.peaks.values()), reverse=True),
        "streams": per_stream,
    }


TARGET_BYTES = 16 * 1024 * 1024  # the Stream API target's request size (chunked streams)


def _per_product(seconds: dict[str, float], n: int) -> dict[str, float]:
    return {k: (v / n * 1e6 if n else 0.0) for k, v in seconds.items()}


def span_stage_costs(
    path: str, limit: int, *, validation: str, compression: str, chunk_size: int
) -> dict[str, Any]:
    """The span path's stages, each alone on one thread, and the parse + gzip floor.

    Over the first whole blocks holding at least ``limit`` products (so a
    little more than ``limit``): ``products`` says how many.
    """
    cap = 2 * STREAM_API.max_product_bytes  # as the engine sets the read cap
    blocks: list[Block] = []
    n_lines = 0
    t = time.perf_counter()
    with open(path, "rb") as fh:
        for item in read_ndjson_blocks(fh.readinto, b"", path, cap=cap):
            if not isinstance(item, Block):
                continue  # a line over the cap (none in the benchmark catalogs)
            data = bytes(item.data)  # the buffer is reused: keep a copy
            item.nlines = data.count(b"\n")
            blocks.append(Block(item.source, memoryview(data), item.line, item.offset))
            n_lines += item.nlines
            if n_lines >= limit:
                break
    read_s = time.perf_counter() - t

    validator = Validator(ValidationOptions(level=validation))  # type: ignore[arg-type]
    t = time.perf_counter()
    results = [
        check_block(
            b.data,
            validator,
            source=b.source,
            first_line=b.line,
            base_offset=b.offset,
            bom=b.offset == 0,
            cap=cap,
        )
        for b in blocks
    ]
    check_s = time.perf_counter() - t
    products = sum(r.read for r in results)

    chunker = SpanChunker(
        max_count=chunk_size, max_bytes=STREAM_API.max_request_bytes, target_bytes=TARGET_BYTES
    )
    t = time.perf_counter()
    chunks: list[Chunk] = []
    for b, res in zip(blocks, results, strict=True):
        if len(res.lines):
            lines = res.lines + b.line
            offsets = res.line_starts[res.lines] + b.offset
            chunks.extend(chunker.feed(b.source, res.body, res.starts, lines, offsets))
    chunks.extend(chunker.flush())
    chunk_s = time.perf_counter() - t

    options = CompressionOptions(codec=compression)  # type: ignore[arg-type]
    t = time.perf_counter()
    for chunk in chunks:
        assert chunk.span is not None
        compress(chunk.span.data(), options)
    compress_s = time.perf_counter() - t

    # The floor: parse every product (lines split beforehand) and gzip the same bytes.
    lines_all: list[bytes] = []
    for b in blocks:
        raw = b.data.tobytes()
        lines_all.extend(line for line in raw.split(b"\n") if line)
    t = time.perf_counter()
    for line in lines_all:
        orjson.loads(line)
    parse_s = time.perf_counter() - t
    floor_gzip = CompressionOptions()  # the default: ISA-L level 2 (zlib 1 without isal)
    t = time.perf_counter()
    for b in blocks:
        compress(b.data.tobytes(), floor_gzip)
    gzip_s = time.perf_counter() - t

    stages = {"read": read_s, "check": check_s, "chunk": chunk_s, "compress": compress_s}
    floor = {"parse": parse_s, "gzip": gzip_s}
    n = products
    total = sum(stages.values())
    floor_total = sum(floor.values())
    return {
        "path": "spans",
        "products": n,
        "bytes": sum(b.data.nbytes for b in blocks),
        "blocks": len(blocks),
        "chunks": len(chunks),
        "seconds": stages,
        "us_per_product": _per_product(stages, n),
        "products_per_s": {k: (n / v if v > 0 else 0.0) for k, v in stages.items()},
        "serial_us_per_product": total / n * 1e6 if n else None,
        "serial_products_per_s": n / total if total > 0 else None,
        "floor_seconds": floor,
        "floor_us_per_product": _per_product(floor, n),
        "floor_serial_us_per_product": floor_total / n * 1e6 if n else None,
        "over_floor": total / floor_total if floor_total > 0 else None,
        "lines_in_floor": len(lines_all),
        "compression": f"{compression} (floor: default gzip)",
        "validation": validation,
        "kept": sum(len(r.lines) for r in results),
    }


def stage_costs(
    path: str, limit: int, *, validation: str, compression: str, chunk_size: int
) -> dict[str, Any]:
    """The record path's stages over the first ``limit`` products, each alone, one thread."""
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
        "path": "records",
        "products": n,
        "seconds": stages,
        "us_per_product": _per_product(stages, n),
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
    parser.add_argument(
        "--workers", type=int, default=None, help="reading processes; default: the library's"
    )
    parser.add_argument(
        "--process-min-bytes", type=int, default=PushOptions().process_min_bytes, metavar="B"
    )
    parser.add_argument("--no-network", action="store_true")
    parser.add_argument("--stages", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    if not Path(args.catalog).exists():
        parser.error(f"no catalog at {args.catalog}")
    result = asyncio.run(_run(args))
    if args.stages:
        kwargs: dict[str, Any] = {
            "validation": args.validation,
            "compression": args.compression,
            "chunk_size": args.chunk_size,
        }
        result["stages"] = span_stage_costs(args.catalog, args.stages, **kwargs)
        result["stages_records"] = stage_costs(args.catalog, args.stages, **kwargs)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
