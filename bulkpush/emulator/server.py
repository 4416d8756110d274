"""The :class:`Emulator`: the app on a real socket, plus helpers to look inside.

::

    async with Emulator(EmulatorConfig(tokens=frozenset({"t"}))) as emu:
        sid = emu.create_stream("catalog", "chunked")
        ...  # talk HTTP to emu.url
        emu.products(sid)
"""

from __future__ import annotations

import logging
import socket

from aiohttp import web

from bulkpush._resource import AsyncResource
from bulkpush.emulator.config import EmulatorConfig, Faults
from bulkpush.emulator.gate import Gate, Handler
from bulkpush.emulator.inspection import InspectionApi
from bulkpush.emulator.platform import PlatformApi
from bulkpush.emulator.state import EmulatorState, LoggedRequest, StateError, Stream
from bulkpush.emulator.stream_api import StreamApi
from bulkpush.emulator.uplink import JSON_BODY_MAX, Uplink

__all__ = ["IDLE_TIMEOUT_S", "Emulator", "build_app"]

_log = logging.getLogger("bulkpush.emulator")

# A larger read buffer than aiohttp's 64 KiB default lets uploads arrive in fewer pieces.
_READ_BUFSIZE = 1 << 20
# With an uplink bandwidth, aiohttp's default: a body read slowly stops the socket
# being read after 128 KiB buffered (twice this), so the client's writes slow down
# soon (TCP back-pressure) rather than after megabytes.
_UPLINK_READ_BUFSIZE = 1 << 16

# With an uplink, what the kernel may hold of a body the server has not read
# yet (Linux doubles it). On a real link the bytes not yet carried wait on the
# client's side, where a client that gives up on a request (a reset) drops
# them; on loopback they would all move into the server's socket at once, and
# a timed-out body would go on taking the emulated link after its client left.
_UPLINK_RCVBUF = 1 << 16


def _listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose connections get the small receive buffer above."""
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UPLINK_RCVBUF)
        sock.bind(addr)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


#: Seconds a connection may stay open without a whole request head: before its
#: first request (a client that connects and sends nothing, or a head byte by
#: byte) and between two requests. aiohttp's keep-alive timer covers both (its
#: default, 3,630 s, is meant for servers behind a proxy); 75 s is nginx's
#: default, longer than clients keep an idle pooled connection (aiohttp's 15 s),
#: so the server never closes one that a client is about to reuse.
IDLE_TIMEOUT_S = 75.0


def build_app(state: EmulatorState, uplink: Uplink | None = None) -> web.Application:
    """The aiohttp application serving ``state`` (Stream API, Platform API, inspection).

    Request bodies are read through ``uplink`` (default: a new one with the
    config's ``uplink_bytes_per_s``).
    """
    if uplink is None:
        uplink = Uplink(state.config.uplink_bytes_per_s)
    gate = Gate(state, state.config, uplink)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await gate.middleware(request, handler)
        except ConnectionError as exc:  # reset, broken pipe; aiohttp's ClientConnectionResetError
            # The client went away mid-request: one line, not aiohttp's traceback.
            _log.warning(
                "client %s disconnected during %s %s: %s",
                request.remote,
                request.method,
                request.path,
                exc,
            )
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=400)  # never reaches the client

    app = web.Application(middlewares=[middleware], client_max_size=JSON_BODY_MAX)
    StreamApi(state, state.config, uplink).add_routes(app)
    PlatformApi(state, state.config, uplink).add_routes(app)
    InspectionApi(state, uplink).add_routes(app)
    return app


class Emulator(AsyncResource):
    """The local Productsup API emulator, served in-process on a real socket.

    An async context manager: entering starts it (on a free port when
    ``config.port`` is 0) and returns it; :attr:`url` is then its base URL.
    The Stream API is at ``{url}/streams``, the Platform API at
    ``{url}/platform/v2/...``, inspection at ``{url}/_emulator/...``. The helper
    methods read and change the same state the HTTP endpoints do; they raise
    ``KeyError`` for an unknown stream id.

    ``idle_timeout_s``: a connection without a whole request head for that
    long (before its first request, or between two) is closed, so idle or
    byte-by-byte ("slow loris") connections hold nothing for long.
    """

    def __init__(
        self, config: EmulatorConfig | None = None, *, idle_timeout_s: float = IDLE_TIMEOUT_S
    ) -> None:
        if not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be positive, not {idle_timeout_s!r}")
        self.config = config or EmulatorConfig()
        self.idle_timeout_s = idle_timeout_s
        self.state = EmulatorState(self.config)
        self.uplink = Uplink(self.config.uplink_bytes_per_s)
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``; ``RuntimeError`` before start."""
        if self._url is None:
            raise RuntimeError("the emulator is not running")
        return self._url

    async def start(self) -> None:
        """Bind and serve. Starting twice is an error."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        runner = web.AppRunner(
            build_app(self.state, self.uplink),
            access_log=None,
            handle_signals=False,
            read_bufsize=_READ_BUFSIZE
            if self.config.uplink_bytes_per_s is None
            else _UPLINK_READ_BUFSIZE,
            auto_decompress=False,  # the upload handler decodes gzip itself, incrementally
            keepalive_timeout=self.idle_timeout_s,
        )
        await runner.setup()
        try:
            site: web.BaseSite
            if self.config.uplink_bytes_per_s is None:
                site = web.TCPSite(runner, self.config.host, self.config.port)
            else:
                site = web.SockSite(runner, _listening_socket(self.config.host, self.config.port))
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        if ":" in host:
            host = f"[{host}]"
        self._url = f"http://{host}:{port}"

    async def aclose(self) -> None:
        """Stop serving (idempotent); the state stays readable."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._url = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    def __repr__(self) -> str:
        where = self._url or "stopped"
        return (
            f"<Emulator {where} streams={len(self.state.streams)} "
            f"requests={self.state.counters['requests']}>"
        )

    # -- helpers -------------------------------------------------------------------

    def _stream(self, sid: str) -> Stream:
        try:
            return self.state.streams[str(sid)]
        except KeyError:
            raise KeyError(f"no stream {sid!r}") from None

    def create_stream(self, name: str, stream_type: str = "chunked") -> str:
        """Create a stream as ``POST /streams`` would; returns its id (ValueError if refused)."""

        try:
            return self.state.create_stream(name, stream_type).id
        except StateError as exc:
            raise ValueError(f"{exc.title}: {exc.detail}") from None

    def products(self, sid: str) -> dict[str, bytes]:
        """A copy of the stream's stored products: id -> the product's bytes.

        NDJSON uploads store each line exactly as uploaded (without its newline);
        JSON-array uploads store the compact orjson encoding of each element.
        Empty in throughput mode.
        """
        return dict(self._stream(sid).products)

    def upload_counts(self, sid: str) -> dict[str, int]:
        """How many times each product id was accepted by an upload (all of them)."""
        return dict(self._stream(sid).upload_counts)

    def batches(self, sid: str) -> list[dict[str, object]]:
        """The stream's batches as JSON:API ``data`` objects, oldest first."""
        return [b.to_resource() for b in self._stream(sid).batches.values()]

    def requests(self, sid: str | None = None) -> list[LoggedRequest]:
        """The request log (bounded by ``request_log_size``), of one stream or all."""
        log = self.state.request_log
        if sid is None:
            return list(log)
        return [e for e in log if e.stream_id == str(sid)]

    def counters(self, sid: str | None = None) -> dict[str, int]:
        """Counters of one stream, or of the whole emulator (``sid=None``).

        Keys (absent means 0): requests, uploads, products_accepted,
        products_rejected, products_deleted, batches_processed, throttled (429),
        locked (423), server_errors (5xx), dropped, unauthorized (401), timed_out
        (answered 504 by the request timeout; counted in server_errors too).
        """
        if sid is None:
            return dict(self.state.counters)
        return dict(self._stream(sid).counters)

    def set_stream_status(self, sid: str, status: str) -> None:
        """Set a stream's status: active, disabled, locked, locked_upload, locked_processing."""
        self._stream(sid)

        try:
            self.state.set_status(str(sid), status)
        except StateError as exc:
            raise ValueError(exc.detail) from None

    def set_faults(self, sid: str | None, faults: Faults) -> None:
        """Set a stream's faults (``sid=None``: the default of all streams); windows start now."""
        if sid is not None:
            self._stream(sid)
        self.state.set_faults(None if sid is None else str(sid), faults)

    def set_uplink(self, bytes_per_s: float | None) -> None:
        """Change the uplink bandwidth now (bytes/s; ``None``: unlimited), e.g. mid-run.

        Every request body read from now on goes at the new speed, the ones in
        flight included. An emulator started without a bandwidth reads with a
        larger socket buffer, so back-pressure on the client comes later
        (after about 2 MiB buffered rather than 128 KiB).
        """
        self.uplink.set_rate(bytes_per_s)

    def link_stream(self, site_id: int, sid: str) -> int:
        """Link a stream to a site (an active main datasource); returns the datasource id."""
        return self.state.add_datasource(site_id, int(self._stream(sid).id)).id
