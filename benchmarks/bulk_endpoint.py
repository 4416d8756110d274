"""A minimal Elasticsearch-compatible ``_bulk`` endpoint for the peer benchmarks.

The benchmark server hosts it next to the bulkpush emulator, so the standard
Python bulk helpers (elasticsearch-py's ``async_streaming_bulk`` and
``parallel_bulk``) can be measured against the same limits as bulkpush. It
answers what elasticsearch-py 9.x needs and nothing more:

========== ======================= ==============================================
GET, HEAD  ``/``                   cluster info (the client's product check)
POST, PUT  ``/_bulk``              NDJSON action/source pairs
POST, PUT  ``/{index}/_bulk``      the same, default index from the path
GET        ``/_bench/bulk_stats``  ``{requests, docs, status_429, ..., per_index}``
DELETE     ``/_bench/bulk_stats``  reset the counters
========== ======================= ==============================================

Every answer carries ``X-Elastic-Product: Elasticsearch`` (elasticsearch-py
refuses a 2xx answer without it). The client sends ``PUT`` for ``bulk()``.

Behaviour of a bulk request, in order:

1. Rate limit, before the body is read, with the emulator's
   :class:`~bulkpush.emulator.ratelimit.FixedWindowLimiter` (the same
   fixed-window semantics as the Stream API's 30 requests/s per stream): ``rate``
   requests per second per index (from the path; ``/_bulk`` is one key of its
   own) per client IP. Over it: 429 with an Elasticsearch-style error body
   (``es_rejected_execution_exception``). ``rate=None`` lifts the limit.
2. The added latency (``latency_s``), slept before the body is read, as the
   emulator does for ``/products``.
3. The body, streamed: ``Content-Encoding: gzip`` is decoded (elasticsearch-py
   sends it with ``http_compress=True``; a body that does not start with the gzip
   magic is taken as already decoded, so it also works under a runner that
   auto-decompresses). Over ``max_request_bytes`` on the wire or decoded: 413.
   The app's ``client_max_size`` does not apply (the body is not read with
   ``request.read()``).
4. Documents are counted, not parsed or stored: non-empty lines / 2 (only
   ``index`` and ``create`` actions, which always have a source line, are
   supported). Over ``max_actions`` documents: 400.
5. The answer is Elasticsearch's bulk response: ``took``, ``errors: false`` and
   one item per document, ``index`` or ``create`` as the action line says, each
   ``"result": "created", "status": 201``. ``_id`` is the action's id when it is
   a plain string in a compact action line (``{"index":{"_id":"p1"}}``, what the
   client's serializer writes), otherwise a generated one. The answer is not
   compressed (the server should not take CPU from the client it measures).

Standalone, for testing the peers without the benchmark server::

    python -m benchmarks.bulk_endpoint --port 0 [--rate R] [--latency S]

prints ``LISTENING http://127.0.0.1:PORT`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from bulkpush.emulator.ratelimit import FixedWindowLimiter
from bulkpush.emulator.validation import BodyError, GzipDecoder
from bulkpush.limits import STREAM_API

__all__ = ["BulkStats", "add_bulk_routes", "main"]

PRODUCT_HEADER = {"X-Elastic-Product": "Elasticsearch"}
_JSON = "application/json"
_GZIP_MAGIC = b"\x1f\x8b"
_NO_INDEX = "_bulk"  # the rate-limit and stats key of ``/_bulk`` without an index in the path
# ``{"index":{"_id":"p1", ...`` as the client's compact serializer writes it.
_ACTION_ID = re.compile(rb'^\{"(?:index|create)":\{(?:[^{}]*?,)?"_id":"([^"\\]*)"')
_ACTION_INDEX = re.compile(rb'"_index":"([^"\\]*)"')

_CLUSTER_INFO = {
    "name": "bulkpush-bench",
    "cluster_name": "bulkpush-bench",
    "cluster_uuid": "bUlKpUsHbEnChAAAAAAAAA",
    "version": {
        "number": "9.0.0",
        "build_flavor": "default",
        "build_type": "docker",
        "build_hash": "0000000000000000000000000000000000000000",
        "build_date": "2025-04-01T00:00:00.000000000Z",
        "build_snapshot": False,
        "lucene_version": "10.1.0",
        "minimum_wire_compatibility_version": "8.18.0",
        "minimum_index_compatibility_version": "8.0.0",
    },
    "tagline": "You Know, for Search",
}


@dataclass(slots=True)
class _Counts:
    requests: int = 0
    docs: int = 0
    bytes: int = 0  # body bytes on the wire, of answered (2xx) requests
    status_429: int = 0
    status_413: int = 0
    status_400: int = 0

    def to_json(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "docs": self.docs,
            "bytes": self.bytes,
            "status_429": self.status_429,
            "status_413": self.status_413,
            "status_400": self.status_400,
        }


@dataclass(slots=True)
class BulkStats:
    """Counters of the ``_bulk`` endpoint, in total and per index."""

    total: _Counts = field(default_factory=_Counts)
    per_index: defaultdict[str, _Counts] = field(default_factory=lambda: defaultdict(_Counts))

    def count(self, index: str, *, status: int, docs: int = 0, wire: int = 0) -> None:
        for c in (self.total, self.per_index[index]):
            c.requests += 1
            c.docs += docs
            c.bytes += wire
            if status == 429:
                c.status_429 += 1
            elif status == 413:
                c.status_413 += 1
            elif status == 400:
                c.status_400 += 1

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.total.to_json()
        doc["per_index"] = {k: v.to_json() for k, v in self.per_index.items()}
        return doc


def _es_error(status: int, kind: str, reason: str) -> web.Response:
    """An Elasticsearch-style error answer."""
    cause = {"type": kind, "reason": reason}
    body = {"error": {"root_cause": [cause], **cause}, "status": status}
    return web.Response(
        body=orjson.dumps(body), status=status, content_type=_JSON, headers=PRODUCT_HEADER
    )


class _TooLarge(Exception):
    pass


class _BulkEndpoint:
    def __init__(
        self, *, rate: float | None, latency_s: float, max_request_bytes: int, max_actions: int
    ) -> None:
        self.limiter = None if rate is None else FixedWindowLimiter(rate)
        self.latency_s = latency_s
        self.max_request_bytes = max_request_bytes
        self.max_actions = max_actions
        self.stats = BulkStats()
        self._seq = 0

    async def info(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=orjson.dumps(_CLUSTER_INFO), content_type=_JSON, headers=PRODUCT_HEADER
        )

    async def get_stats(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=orjson.dumps(self.stats.to_json()), content_type=_JSON, headers=PRODUCT_HEADER
        )

    async def reset_stats(self, _request: web.Request) -> web.Response:
        self.stats = BulkStats()
        return await self.get_stats(_request)

    async def _read(self, request: web.Request) -> tuple[bytes, int]:
        """The decoded body and its size on the wire; :class:`_TooLarge` over the limit."""
        limit = self.max_request_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise _TooLarge
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        decoder: GzipDecoder | None = None
        first = True
        wire = decoded = 0
        pieces: list[bytes] = []
        async for chunk in request.content.iter_any():
            if first:
                first = False
                if encoding in ("gzip", "x-gzip") and chunk.startswith(_GZIP_MAGIC):
                    decoder = GzipDecoder()
            wire += len(chunk)
            if wire > limit:
                raise _TooLarge
            for piece in decoder.feed(chunk) if decoder is not None else (chunk,):
                decoded += len(piece)
                if decoded > limit:
                    raise _TooLarge
                pieces.append(piece)
        if decoder is not None:
            decoder.finish()
        return b"".join(pieces), wire

    async def bulk(self, request: web.Request) -> web.Response:
        t0 = time.perf_counter()
        path_index = request.match_info.get("index")
        key = path_index or _NO_INDEX
        if self.limiter is not None and not self.limiter.hit((request.remote, key)).allowed:
            self.stats.count(key, status=429)
            return _es_error(
                429,
                "es_rejected_execution_exception",
                f"rejected execution: more than {self.limiter.limit} bulk requests "
                f"per {self.limiter.window_s:g}s for [{key}]",
            )
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        try:
            body, wire = await self._read(request)
        except _TooLarge:
            self.stats.count(key, status=413)
            return _es_error(
                413,
                "content_too_long_exception",
                f"the request body exceeds {self.max_request_bytes} bytes",
            )
        except BodyError as exc:
            self.stats.count(key, status=400)
            return _es_error(400, "parse_exception", exc.title)
        lines = [line for line in body.split(b"\n") if line.strip()]
        docs = len(lines) // 2
        if docs > self.max_actions:
            self.stats.count(key, status=400)
            return _es_error(
                400,
                "illegal_argument_exception",
                f"a bulk request holds at most {self.max_actions} documents, got {docs}",
            )
        actions = lines[0 : docs * 2 : 2]
        index = path_index
        if index is None:
            found = _ACTION_INDEX.search(actions[0]) if actions else None
            index = found.group(1).decode() if found else _NO_INDEX
        answer = self._answer(actions, index, t0)
        self.stats.count(key if path_index else index, status=200, docs=docs, wire=wire)
        return web.Response(body=answer, content_type=_JSON, headers=PRODUCT_HEADER)

    def _answer(self, actions: list[bytes], index: str, t0: float) -> bytes:
        """Elasticsearch's bulk answer: one ``created`` item (status 201) per action."""
        shards = b'"_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0}'
        index_json = orjson.dumps(index)
        items: list[bytes] = []
        seq = self._seq
        for action in actions:
            op = b"create" if action.lstrip().startswith(b'{"create"') else b"index"
            found = _ACTION_ID.match(action)
            doc_id = found.group(1) if found else b"bench-%d" % seq
            items.append(
                b'{"%s":{"_index":%s,"_id":"%s",%s,"_seq_no":%d,"_primary_term":1,"status":201}}'
                % (op, index_json, doc_id, shards, seq)
            )
            seq += 1
        self._seq = seq
        took = int((time.perf_counter() - t0) * 1000)
        return b'{"took":%d,"errors":false,"items":[%s]}' % (took, b",".join(items))


def add_bulk_routes(
    app: web.Application,
    *,
    rate: float | None,
    latency_s: float,
    max_request_bytes: int,
    max_actions: int,
) -> None:
    """Add the ``_bulk`` endpoint's routes (see the module docstring) to ``app``.

    The routes must not pass through a middleware that wants a bearer token or
    rate-limits by route (the emulator's gate does both): elasticsearch-py sends
    neither. The endpoint's counters live with the routes; ``GET
    /_bench/bulk_stats`` reads them.
    """
    endpoint = _BulkEndpoint(
        rate=rate,
        latency_s=latency_s,
        max_request_bytes=max_request_bytes,
        max_actions=max_actions,
    )
    r = app.router
    r.add_get("/", endpoint.info)  # HEAD too (aiohttp's allow_head)
    for path in ("/_bulk", "/{index}/_bulk"):
        r.add_post(path, endpoint.bulk)
        r.add_put(path, endpoint.bulk)
    r.add_get("/_bench/bulk_stats", endpoint.get_stats)
    r.add_delete("/_bench/bulk_stats", endpoint.reset_stats)


async def _serve(args: argparse.Namespace) -> None:
    app = web.Application()
    add_bulk_routes(
        app,
        rate=args.rate,
        latency_s=args.latency,
        max_request_bytes=args.max_request_bytes,
        max_actions=args.max_actions,
    )
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, read_bufsize=1 << 20, auto_decompress=False
    )
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"LISTENING http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # pragma: no cover - not on Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Serve the ``_bulk`` endpoint alone until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bulk_endpoint", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200, help="0 picks a free port")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="requests/s per index per client IP (default: none)",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--max-request-bytes", type=int, default=STREAM_API.max_request_bytes)
    parser.add_argument(
        "--max-actions", type=int, default=STREAM_API.max_products_per_request, help="docs/request"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
