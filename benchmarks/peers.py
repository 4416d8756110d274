"""The peers bulkpush is measured against: what a user would otherwise use.

One peer per process run, over an NDJSON catalog, printing ONE JSON line::

    python -m benchmarks.peers NAME --url URL --catalog PATH --index-or-stream ID \\
        --chunk-size N --compression gzip|none [--token T] [--rate R]

    {"peer": NAME, "products": n, "seconds": s, "products_per_s": x, "mb_per_s": y,
     "requests": r, "status_429": k, "errors": e, "rejected": j, "cpu_s": c,
     "peak_rss_mb": m}

``products`` counts the products the server acknowledged; ``errors`` the
products that were read but not acknowledged (a failed item, or a chunk lost
when the peer gave up; the reason goes to stderr). ``seconds`` is wall time
from the first read of the catalog to the last answer; ``mb_per_s`` is catalog
bytes (uncompressed NDJSON, 10**6 bytes a MB) per second; ``rejected`` the
lines the peer itself refused to send (only ``plain_threaded`` checks them);
``cpu_s`` the process's user + system CPU seconds over the run, from before
the client is made to after it is closed (every thread; start-up and imports
left out); ``peak_rss_mb`` the process's peak RSS (``VmHWM``, the interpreter
included).
The exit status is 0 whenever the line is printed, even when ``errors`` > 0.

Peers (the same chunk size and compression as bulkpush, each with its own
defaults otherwise):

``es_async_streaming_bulk``
    ``elasticsearch.helpers.async_streaming_bulk`` with
    ``AsyncElasticsearch(url, http_compress=...)`` against ``{url}/{ID}/_bulk``
    (the benchmark server's :mod:`benchmarks.bulk_endpoint`). Actions are what
    a user writes for a catalog: each line ``json.loads``-ed, sent as
    ``{"_id": product["id"], "_source": product}`` with ``index=ID``.
``es_parallel_bulk``
    ``elasticsearch.helpers.parallel_bulk`` with the sync ``Elasticsearch``
    client, the same settings, its default ``thread_count``.
``naive``
    The uploader a user writes in 30 lines, against the emulator's Stream API:
    read lines, chunk, ``gzip.compress`` (stdlib, default level 9), ``POST
    {url}/streams/{ID}/products`` with ``urllib.request`` (a new connection per
    request), wait for the answer, next; on a 429 sleep a second and retry.
``plain_threaded``
    The plain threaded uploader of :mod:`benchmarks.plain_client`, standard
    library only, against the emulator's Stream API: the main thread reads and
    checks each line with ``json.loads`` (an object with an ``id``, at most
    1 MB) and groups the lines into bodies; 8 threads each ``gzip.compress``
    (level 1) a body and ``POST`` it with ``http.client`` (a new connection per
    request), paced by one shared, evenly spacing limiter at ``--rate``
    requests/s (none without it). Compression is always gzip.

``requests`` and ``status_429`` come from the server: for the ES peers from
``GET {url}/_bench/bulk_stats`` (the index's counters) before and after the
run, which sees the transport's silent retries too; the naive peer sees every
answer itself, so it counts them (so does ``plain_threaded``).

elasticsearch-py defaults (read in the installed 9.x source,
``elasticsearch/helpers/actions.py``, ``elasticsearch/_async/helpers.py``,
``elastic_transport/_transport.py``, ``elastic_transport/_models.py``):

* both helpers: ``chunk_size=500`` (overridden here: the benchmark's chunk
  size), ``max_chunk_bytes=100 MiB`` (kept; never reached with 10,000 products
  of 1 KB), ``raise_on_error=True``, ``raise_on_exception=True``;
* ``async_streaming_bulk`` (and ``streaming_bulk``): ``max_retries=0``,
  ``initial_backoff=2``, ``max_backoff=600``, ``retry_on_status=(429,)``: the
  helper does not retry anything by default; its retries are for 429 *items*
  of a 200 answer anyway. One chunk at a time: no concurrency;
* ``parallel_bulk``: ``thread_count=4``, ``queue_size=4``; it has no retry
  parameters (its chunks go through ``_process_bulk_chunk`` without them);
* the transport (what answers a whole-request HTTP 429): ``max_retries=3``,
  ``retry_on_status=(429, 502, 503, 504)``, ``retry_on_timeout=False``,
  ``retry_backoff_base=0`` (retries at once, no sleep), then the last 429 is
  raised as ``ApiError`` and, with ``raise_on_exception=True``, ends the helper;
  ``request_timeout=10`` s; ``connections_per_node=10``; a 429 marks the node
  dead, but with one node the pool returns it anyway;
* ``http_compress=True`` compresses each request with ``gzip.compress(body)``:
  stdlib zlib at level 9, the same as the naive peer's ``gzip.compress``;
* the JSON serializer is the stdlib ``json`` (orjson only when asked for).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import resource
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["PEERS", "STREAM_API_PEERS", "PeerResult", "main", "run_peer"]


@dataclass(slots=True)
class PeerResult:
    """One peer's run: the JSON line's fields."""

    peer: str
    products: int
    seconds: float
    catalog_bytes: int
    requests: int
    status_429: int
    errors: int
    cpu_s: float = 0.0
    rejected: int = 0

    def to_json(self) -> dict[str, Any]:
        s = self.seconds or 1e-9
        return {
            "peer": self.peer,
            "products": self.products,
            "seconds": round(self.seconds, 4),
            "products_per_s": round(self.products / s, 1),
            "mb_per_s": round(self.catalog_bytes / s / 1e6, 3),
            "requests": self.requests,
            "status_429": self.status_429,
            "errors": self.errors,
            "rejected": self.rejected,
            "cpu_s": round(self.cpu_s, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: ``VmHWM``, not ``ru_maxrss``, which Linux carries
    across ``exec`` (a child of a large parent would report at least the parent's RSS)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """User + system CPU seconds of this process so far, every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(slots=True)
class _Reader:
    """Catalog lines, counted as they are read."""

    path: str
    lines: int = 0
    size: int = 0  # bytes read

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as fh:
            for line in fh:
                if not line.strip():
                    continue
                self.lines += 1
                self.size += len(line)
                yield line if line.endswith(b"\n") else line + b"\n"

    def actions(self) -> Iterator[dict[str, Any]]:
        """What a user feeds an elasticsearch-py helper: one action per product."""
        for line in self:
            product = json.loads(line)
            yield {"_id": product["id"], "_source": product}


def _bulk_stats(url: str, index: str) -> tuple[int, int]:
    """(requests, 429s) of ``index`` on the ``_bulk`` endpoint."""
    with urllib.request.urlopen(f"{url}/_bench/bulk_stats", timeout=30) as resp:
        stats = json.loads(resp.read())
    mine = stats["per_index"].get(index, {})
    return int(mine.get("requests", 0)), int(mine.get("status_429", 0))


def _failure(peer: str, exc: BaseException) -> None:
    print(f"{peer}: gave up: {type(exc).__name__}: {exc}"[:2000], file=sys.stderr)


# --- elasticsearch-py ---------------------------------------------------------------
# Imported where used: elasticsearch is in the bench extra only, and the naive
# peer runs without it.


def _es_async_streaming_bulk(
    url: str, catalog: str, index: str, chunk_size: int, compress: bool
) -> PeerResult:
    from elasticsearch import AsyncElasticsearch  # noqa: PLC0415
    from elasticsearch.helpers import async_streaming_bulk  # noqa: PLC0415

    reader = _Reader(catalog)
    before = _bulk_stats(url, index)

    async def run() -> tuple[int, int, float]:
        ok = failed = 0
        es = AsyncElasticsearch(url, http_compress=compress)
        try:
            t0 = time.perf_counter()
            try:
                async for success, _info in async_streaming_bulk(
                    es, reader.actions(), chunk_size=chunk_size, index=index
                ):
                    if success:
                        ok += 1
                    else:  # pragma: no cover - raise_on_error=True raises instead
                        failed += 1
            except Exception as exc:
                _failure("es_async_streaming_bulk", exc)
            seconds = time.perf_counter() - t0
        finally:
            await es.close()
        return ok, failed, seconds

    ok, failed, seconds = asyncio.run(run())
    after = _bulk_stats(url, index)
    return PeerResult(
        peer="es_async_streaming_bulk",
        products=ok,
        seconds=seconds,
        catalog_bytes=reader.size,
        requests=after[0] - before[0],
        status_429=after[1] - before[1],
        errors=max(failed, reader.lines - ok),
    )


def _es_parallel_bulk(
    url: str, catalog: str, index: str, chunk_size: int, compress: bool
) -> PeerResult:
    from elasticsearch import Elasticsearch  # noqa: PLC0415
    from elasticsearch.helpers import parallel_bulk  # noqa: PLC0415

    reader = _Reader(catalog)
    before = _bulk_stats(url, index)
    ok = failed = 0
    with Elasticsearch(url, http_compress=compress) as es:
        t0 = time.perf_counter()
        try:
            for success, _info in parallel_bulk(
                es, reader.actions(), chunk_size=chunk_size, index=index
            ):
                if success:
                    ok += 1
                else:  # pragma: no cover - raise_on_error=True raises instead
                    failed += 1
        except Exception as exc:
            _failure("es_parallel_bulk", exc)
        seconds = time.perf_counter() - t0
    after = _bulk_stats(url, index)
    return PeerResult(
        peer="es_parallel_bulk",
        products=ok,
        seconds=seconds,
        catalog_bytes=reader.size,
        requests=after[0] - before[0],
        status_429=after[1] - before[1],
        errors=max(failed, reader.lines - ok),
    )


# --- the naive uploader -------------------------------------------------------------


def _naive(
    url: str, catalog: str, stream: str, chunk_size: int, compress: bool, token: str
) -> PeerResult:
    # The uploader itself is the body of post() and the loop below; the rest counts.
    reader = _Reader(catalog)
    endpoint = f"{url}/streams/{stream}/products"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    if compress:
        headers["Content-Encoding"] = "gzip"
    counts = {"requests": 0, "status_429": 0, "products": 0}

    def post(lines: list[bytes]) -> None:
        body = b"".join(lines)
        if compress:
            body = gzip.compress(body)
        while True:
            request = urllib.request.Request(endpoint, data=body, headers=headers, method="POST")
            counts["requests"] += 1
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    response.read()
                    break
            except urllib.error.HTTPError as exc:
                if exc.code != 429:
                    raise
                counts["status_429"] += 1
                time.sleep(1)
        counts["products"] += len(lines)

    t0 = time.perf_counter()
    try:
        chunk: list[bytes] = []
        for line in reader:
            chunk.append(line)
            if len(chunk) == chunk_size:
                post(chunk)
                chunk = []
        if chunk:
            post(chunk)
    except Exception as exc:
        _failure("naive", exc)
    seconds = time.perf_counter() - t0
    return PeerResult(
        peer="naive",
        products=counts["products"],
        seconds=seconds,
        catalog_bytes=reader.size,
        requests=counts["requests"],
        status_429=counts["status_429"],
        errors=reader.lines - counts["products"],
    )


# --- the plain threaded uploader ----------------------------------------------------


def _plain_threaded(
    url: str,
    catalog: str,
    stream: str,
    chunk_size: int,
    compress: bool,
    token: str,
    rate: float | None,
) -> PeerResult:
    from benchmarks.plain_client import push  # noqa: PLC0415

    if not compress:
        raise ValueError("plain_threaded always compresses (gzip level 1)")
    counts = push(url, catalog, stream, token=token, chunk_size=chunk_size, rate=rate)
    return PeerResult(
        peer="plain_threaded",
        products=counts["products"],
        seconds=counts["seconds"],
        catalog_bytes=counts["bytes_read"],
        requests=counts["requests"],
        status_429=counts["status_429"],
        errors=counts["read"] - counts["rejected"] - counts["products"],
        rejected=counts["rejected"],
    )


PEERS: dict[str, Callable[..., PeerResult]] = {
    "es_async_streaming_bulk": _es_async_streaming_bulk,
    "es_parallel_bulk": _es_parallel_bulk,
    "naive": _naive,
    "plain_threaded": _plain_threaded,
}
STREAM_API_PEERS = ("naive", "plain_threaded")  # they take a stream id and a token


def run_peer(
    name: str,
    *,
    url: str,
    catalog: str,
    index_or_stream: str,
    chunk_size: int,
    compression: str,
    token: str = "bench-token",
    rate: float | None = None,
) -> PeerResult:
    """Run one peer in this process (the CLI runs one per process, for its peak RSS).

    ``rate`` (requests/s) paces ``plain_threaded`` only; the others do not pace.
    """
    if compression not in ("gzip", "none"):
        raise ValueError(f"compression must be gzip or none, got {compression!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk size must be positive, got {chunk_size}")
    url = url.rstrip("/")
    compress = compression == "gzip"
    cpu0 = cpu_s()
    if name == "naive":
        result = _naive(url, catalog, index_or_stream, chunk_size, compress, token)
    elif name == "plain_threaded":
        result = _plain_threaded(url, catalog, index_or_stream, chunk_size, compress, token, rate)
    else:
        try:
            peer = PEERS[name]
        except KeyError:
            raise ValueError(f"unknown peer {name!r}; one of {sorted(PEERS)}") from None
        result = peer(url, catalog, index_or_stream, chunk_size, compress)
    result.cpu_s = cpu_s() - cpu0
    return result


def main(argv: list[str] | None = None) -> int:
    """Run one peer and print its JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("name", choices=sorted(PEERS))
    parser.add_argument("--url", required=True, help="the benchmark server's base URL")
    parser.add_argument("--catalog", required=True, help="an NDJSON catalog")
    parser.add_argument(
        "--index-or-stream",
        required=True,
        help="the ES index, or the stream id (naive, plain_threaded)",
    )
    parser.add_argument("--chunk-size", type=int, required=True, help="products per request")
    parser.add_argument("--compression", choices=("gzip", "none"), required=True)
    parser.add_argument("--token", default="bench-token", help="bearer token (Stream API peers)")
    parser.add_argument(
        "--rate", type=float, default=None, help="requests/s (plain_threaded; default: none)"
    )
    args = parser.parse_args(argv)
    result = run_peer(
        args.name,
        url=args.url,
        catalog=args.catalog,
        index_or_stream=args.index_or_stream,
        chunk_size=args.chunk_size,
        compression=args.compression,
        token=args.token,
        rate=args.rate,
    )
    print(json.dumps(result.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
