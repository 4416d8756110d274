"""The benchmark server, always in a process of its own.

Server side (``python -m benchmarks.server --config JSON``): builds the
bulkpush emulator (:mod:`bulkpush.emulator`) with the given limits, adds the
Elasticsearch ``_bulk``-style endpoint of :mod:`benchmarks.bulk_endpoint` when
that module exists (the same rate, latency and size limits), listens on
127.0.0.1 (port 0 by default) and prints one line ``LISTENING http://127.0.0.1:PORT``.

The config is a JSON object; every key is optional:

=================  ==========================================================
``rate``           requests/s per stream on ``/products`` (and per index on
                   ``_bulk``); ``null`` lifts every rate limit. Default 30.
``latency_s``      seconds added before answering each upload. Default 0.
``throughput_mode``  count lines only: no parsing, no store. Default true.
``token``          the accepted bearer token. Default ``bench-token``.
``port``           default 0 (a free port).
``uplink_bytes_per_s``  the client's shared uplink, bytes/s: every request
                   body is read through it (:mod:`bulkpush.emulator.uplink`);
                   ``null`` (default) reads bodies as fast as they arrive.
``request_timeout_s``  a request not answered this many seconds after its
                   head arrived (body transfer included) is answered 504 and
                   counted ``timed_out``; ``null`` turns it off. Default 10,
                   the Stream API's.
=================  ==========================================================

With a rate, the other published limits hold too (100/s on batches, 5/s per
other endpoint); without, none does.

Driver side: :class:`BenchServer` starts it, gives its ``url``, creates
streams, reads counters and the request log, and kills it on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from bulkpush.emulator import EmulatorConfig, build_app
from bulkpush.emulator.state import EmulatorState, StateError
from bulkpush.limits import STREAM_API

TOKEN = "bench-token"
START_TIMEOUT_S = 30.0
BENCH_PREFIX = "/_emulator/bench"
READ_BUFSIZE = 1 << 20
# With an uplink, the emulator's own choice (bulkpush.emulator.server): a body read
# slowly stops the socket being read after 128 KiB buffered, so the client's writes
# slow down soon (TCP back-pressure), as on a real link, rather than after megabytes.
UPLINK_READ_BUFSIZE = 1 << 16


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """What the benchmark server is started with (see the module docstring)."""

    rate: float | None = 30.0
    latency_s: float = 0.0
    throughput_mode: bool = True
    token: str = TOKEN
    port: int = 0
    uplink_bytes_per_s: float | None = None
    request_timeout_s: float | None = STREAM_API.server_request_timeout_s
    # The server process's niceness (driver side only): 19 gives the client
    # the cores first, as when the API runs on another machine.
    nice: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "latency_s": self.latency_s,
            "throughput_mode": self.throughput_mode,
            "token": self.token,
            "port": self.port,
            "uplink_bytes_per_s": self.uplink_bytes_per_s,
            "request_timeout_s": self.request_timeout_s,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServerConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown server config keys: {sorted(unknown)}")
        return cls(**dict(data))

    def describe(self) -> str:
        rate = "limits lifted" if self.rate is None else f"{self.rate:g} req/s per stream"
        mode = "throughput mode" if self.throughput_mode else "full validation"
        niced = f", server at nice {self.nice}" if self.nice else ""
        link = ""
        if self.uplink_bytes_per_s is not None:
            link = (
                f", uplink {self.uplink_bytes_per_s / 1e6:g} MB/s "
                f"({self.uplink_bytes_per_s * 8 / 1e6:g} Mbit/s)"
            )
        timeout = (
            "no request timeout"
            if self.request_timeout_s is None
            else f"requests ended at {self.request_timeout_s:g} s"
        )
        return f"{rate}, latency {self.latency_s * 1000:g} ms, {mode}{link}, {timeout}{niced}"


# --- server side ------------------------------------------------------------------


def _build(config: ServerConfig) -> web.Application:
    lifted = config.rate is None
    emu_config = EmulatorConfig(
        host="127.0.0.1",
        port=config.port,
        tokens=frozenset({config.token}),
        products_rate=config.rate,
        batches_rate=None if lifted else STREAM_API.batches_rate_per_s,
        other_rate=None if lifted else STREAM_API.other_rate_per_s,
        throughput_mode=config.throughput_mode,
        latency_s=config.latency_s,
        max_streams=10_000,
        request_log_size=200_000,
        uplink_bytes_per_s=config.uplink_bytes_per_s,
        request_timeout_s=config.request_timeout_s,
    )
    state = EmulatorState(emu_config)
    app = build_app(state)

    async def create_stream(request: web.Request) -> web.Response:
        # Benchmark only: streams are made here, outside the 5/s management limit,
        # so that setting up a run never spends the budget being measured.
        body = await request.json()
        try:
            stream = state.create_stream(body["name"], body.get("type", "chunked"))
        except StateError as exc:
            return web.json_response({"error": exc.title, "detail": exc.detail}, status=422)
        return web.json_response({"id": stream.id}, status=201)

    async def stream_requests(request: web.Request) -> web.Response:
        # One stream's uploads, compact (the inspection API's log carries headers
        # too, which is heavy at 10k entries): arrival time, status, products,
        # body bytes read from the wire, seconds to answer, ended by the timeout.
        sid = request.match_info["streamId"]
        rows = [
            [e.time, e.status, e.products, e.size, e.duration_s, e.timed_out]
            for e in state.request_log
            if e.stream_id == sid and e.path.rstrip("/").endswith("/products")
        ]
        return web.json_response(rows)

    app.router.add_post(BENCH_PREFIX + "/streams", create_stream)
    app.router.add_get(BENCH_PREFIX + "/streams/{streamId}/uploads", stream_requests)

    bulk = _bulk_module()
    if bulk is not None:
        before = set(app.router.resources())
        bulk.add_bulk_routes(
            app,
            rate=config.rate,
            latency_s=config.latency_s,
            max_request_bytes=STREAM_API.max_request_bytes,
            max_actions=STREAM_API.max_products_per_request,
        )
        bulk_resources = set(app.router.resources()) - before
        body_max = STREAM_API.max_request_bytes + (1 << 20)

        @web.middleware
        async def bypass_gate(request: web.Request, handler: Any) -> web.StreamResponse:
            # The _bulk routes are not the Stream API: the emulator's gate (its
            # auth, its 5/s limit on "other" endpoints, its 1 MB body cap) must
            # not apply; bulk_endpoint enforces its own limits.
            route = request.match_info.route
            if route.resource is not None and route.resource in bulk_resources:
                inner = request.clone(client_max_size=body_max)
                response: web.StreamResponse = await request.match_info.handler(inner)
                return response
            response = await handler(request)
            return response

        app.middlewares.insert(0, bypass_gate)
    return app


def _bulk_module() -> Any:
    try:
        return importlib.import_module("benchmarks.bulk_endpoint")
    except ModuleNotFoundError as exc:
        if exc.name != "benchmarks.bulk_endpoint":
            raise
        return None


async def _serve(config: ServerConfig) -> None:
    app = _build(config)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        read_bufsize=READ_BUFSIZE if config.uplink_bytes_per_s is None else UPLINK_READ_BUFSIZE,
        auto_decompress=False,  # the upload handler decodes gzip itself
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", config.port)
    await site.start()
    host, port = runner.addresses[0][:2]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"LISTENING http://{host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The benchmark server (one process).")
    parser.add_argument("--config", default="{}", help="a JSON object (module docstring)")
    args = parser.parse_args(argv)
    config = ServerConfig.from_json(json.loads(args.config))
    asyncio.run(_serve(config))


# --- driver side ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upload:
    """One upload (a request to ``/products``) as the server logged it.

    ``time``: arrival (Unix seconds, when its head was read); ``status`` (0:
    connection dropped); ``products``: lines or elements counted in its body;
    ``size``: body bytes read from the wire (as sent: compressed when it was;
    part of the body only when it was refused or ended early); ``duration_s``:
    head read to answer; ``timed_out``: ended by the request timeout (a 504).
    """

    time: float
    status: int
    products: int
    size: int
    duration_s: float
    timed_out: bool


class BenchServer:
    """Start the benchmark server in its own process; ``with BenchServer(cfg) as s: s.url``.

    Entering waits (at most ``START_TIMEOUT_S``) for the ``LISTENING`` line;
    leaving terminates the process and kills it if it does not stop in 5 s.
    The helpers talk HTTP to it (stream creation and counters bypass the
    rate limits).
    """

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self._proc: subprocess.Popen[str] | None = None
        self._url: str | None = None
        self._stderr: list[str] = []

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the benchmark server is not running")
        return self._url

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def __repr__(self) -> str:
        return f"<BenchServer {self._url or 'stopped'} {self.config.describe()}>"

    def start(self) -> None:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.server",
                "--config",
                json.dumps(self.config.to_json()),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=(lambda: os.nice(self.config.nice)) if self.config.nice else None,  # noqa: PLW1509 - only os.nice, before exec
            cwd=Path(__file__).resolve().parent.parent,
        )
        self._proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        err = proc.stderr

        def drain() -> None:  # keep the pipe from filling; keep the tail for errors
            for line in err:
                self._stderr.append(line)
                del self._stderr[:-50]

        threading.Thread(target=drain, daemon=True).start()
        found: list[str] = []
        out = proc.stdout

        def read() -> None:
            for line in out:
                if line.startswith("LISTENING "):
                    found.append(line.split()[1])
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        if not found:
            self.stop()
            tail = "".join(self._stderr[-20:])
            raise RuntimeError(f"the benchmark server did not start:\n{tail}")
        self._url = found[0]

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self._url = None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> BenchServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers -------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode(errors="replace")
            raise RuntimeError(f"{method} {path}: {exc.code} {detail}") from None

    def create_stream(self, name: str, stream_type: str = "chunked") -> str:
        """A new stream's id (outside the management rate limit)."""
        body = {"name": name, "type": stream_type}
        return str(self._request("POST", BENCH_PREFIX + "/streams", body)["id"])

    def counters(self, stream_id: str | None = None) -> dict[str, int]:
        """Counters (``requests``, ``throttled`` = 429s, ...) of one stream or of all."""
        path = "/_emulator/counters"
        if stream_id is not None:
            path = f"/_emulator/streams/{stream_id}/counters"
        return {str(k): int(v) for k, v in self._request("GET", path).items()}

    def uploads(self, stream_id: str) -> list[tuple[float, int, int]]:
        """Each upload to the stream as the server saw it: (arrival Unix time, status, products)."""
        return [(u.time, u.status, u.products) for u in self.upload_log(stream_id)]

    def upload_log(self, stream_id: str) -> list[Upload]:
        """Each upload to the stream as the server logged it, in arrival order (:class:`Upload`)."""
        rows = self._request("GET", f"{BENCH_PREFIX}/streams/{stream_id}/uploads")
        return [
            Upload(
                time=float(t),
                status=int(s),
                products=int(p),
                size=int(n),
                duration_s=float(d),
                timed_out=bool(x),
            )
            for t, s, p, n, d, x in rows
        ]

    def uplink(self) -> dict[str, float | None]:
        """The uplink now: ``bytes_per_s`` (None: unlimited) and ``carried`` (body bytes read)."""
        data = self._request("GET", "/_emulator/uplink")
        rate = data.get("bytes_per_s")
        return {
            "bytes_per_s": None if rate is None else float(rate),
            "carried": float(data.get("carried") or 0),
        }

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


if __name__ == "__main__":
    main()
