"""A plain threaded uploader in the standard library: the baseline bulkpush must beat.

What a competent engineer writes in an afternoon to push a catalog to the
Stream API with every core busy, and nothing more: the main thread reads the
NDJSON catalog, ``json.loads`` each line to check it is an object with an
``id`` and at most 1 MB (1,000,000 bytes; a line that is not is skipped and
counted as rejected), and groups ``chunk_size`` lines (10,000 by default)
into one NDJSON body; a pool of ``threads`` (8) threads takes the bodies from
a bounded queue, each compresses one with ``gzip.compress(level=1)`` and
sends it with ``http.client`` on a new connection, ``POST
/streams/{id}/products`` with ``Content-Type: application/x-ndjson``,
``Content-Encoding: gzip`` and ``Authorization: Bearer <token>``. One
:class:`Limiter` shared by the threads spaces the requests evenly at
``rate`` per second (none when ``rate`` is None). A 429 is retried after the
window the server names in ``ratelimit-reset`` (1 s without it), a refused
connection after 0.5 s, each at most ``MAX_ATTEMPTS`` times; any other answer
ends the chunk (its products count as errors, the reason goes to stderr).

The suite runs it as the ``plain_threaded`` peer (``python -m
benchmarks.peers plain_threaded ...``); :func:`push` is the whole client.
"""

from __future__ import annotations

import gzip
import http.client
import json
import queue
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

MAX_PRODUCT_BYTES = 1_000_000
MAX_ATTEMPTS = 10
THREADS = 8
CHUNK = 10_000
TIMEOUT_S = 60.0


class Limiter:
    """Even spacing for any number of threads: each :meth:`wait` gets the next slot.

    Slots are ``1 / rate`` seconds apart and handed out in order under a
    lock; a caller sleeps until its slot (outside the lock). An idle limiter
    never saves up slots, so no burst follows a pause.
    """

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until this caller's slot; return the slot's time on the clock."""
        with self._lock:
            now = self._clock()
            if not self.interval:
                return now
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)
        return slot


def push(
    url: str,
    catalog: str,
    stream: str,
    *,
    token: str,
    chunk_size: int = CHUNK,
    threads: int = THREADS,
    rate: float | None = None,
    level: int = 1,
) -> dict[str, Any]:
    """Push ``catalog`` to ``stream``; return the counts and the wall time."""
    parts = urllib.parse.urlsplit(url)
    conn_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    path = f"{parts.path.rstrip('/')}/streams/{urllib.parse.quote(stream)}/products"
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-ndjson",
        "Content-Encoding": "gzip",
    }
    limiter = Limiter(rate)
    bodies: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=2 * threads)
    lock = threading.Lock()
    counts = {"products": 0, "requests": 0, "status_429": 0, "errors": 0}

    def count(**deltas: int) -> None:
        with lock:
            for key, value in deltas.items():
                counts[key] += value

    def send(body: bytes) -> tuple[int, str | None]:
        conn = conn_class(parts.hostname or "localhost", parts.port, timeout=TIMEOUT_S)
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status, response.getheader("ratelimit-reset")
        finally:
            conn.close()

    def upload(n: int, body: bytes) -> None:
        payload = gzip.compress(body, compresslevel=level)
        reason = "no attempt"
        for _attempt in range(MAX_ATTEMPTS):
            limiter.wait()
            try:
                status, reset = send(payload)
            except OSError as exc:  # refused, reset, timed out: try again shortly
                count(requests=1)
                reason = f"{type(exc).__name__}: {exc}"
                time.sleep(0.5)
                continue
            count(requests=1)
            if 200 <= status < 300:
                count(products=n)
                return
            if status != 429:
                reason = f"HTTP {status}"
                break
            count(status_429=1)
            reason = "HTTP 429"
            wait = float(reset) - time.time() if reset and reset.isdigit() else 1.0
            time.sleep(min(max(wait, 0.01), 5.0))
        count(errors=n)
        print(f"plain_threaded: a chunk of {n} products lost: {reason}", file=sys.stderr)

    def worker() -> None:
        while (item := bodies.get()) is not None:
            upload(*item)

    pool = [threading.Thread(target=worker, name=f"plain-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    read = rejected = size = 0
    started = time.perf_counter()
    try:
        with open(catalog, "rb") as fh:
            batch: list[bytes] = []
            for line in fh:
                stripped = line.rstrip(b"\r\n")
                if not stripped.strip():
                    continue
                read += 1
                size += len(line)
                try:
                    product = json.loads(stripped) if len(stripped) <= MAX_PRODUCT_BYTES else None
                except ValueError:
                    product = None
                if not isinstance(product, dict) or "id" not in product:
                    rejected += 1
                    continue
                batch.append(stripped + b"\n")
                if len(batch) == chunk_size:
                    bodies.put((len(batch), b"".join(batch)))
                    batch = []
            if batch:
                bodies.put((len(batch), b"".join(batch)))
    finally:
        for _ in pool:
            bodies.put(None)
        for thread in pool:
            thread.join()
    return {
        **counts,
        "read": read,
        "rejected": rejected,
        "bytes_read": size,
        "seconds": time.perf_counter() - started,
    }
