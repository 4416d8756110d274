"""The gate every emulated request passes: rate limits, early faults, auth, headers, log.

Every Stream and Platform API request goes through :meth:`Gate.middleware`,
in this order: rate limit (refused before the body is read), 429 storm fault,
authentication, then the handler, within the request timeout; the answer gets
the ``ratelimit-*`` headers and is logged. ``/_emulator/...`` (inspection)
bypasses all of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from bulkpush.emulator.config import EmulatorConfig
from bulkpush.emulator.ratelimit import Decision, FixedWindowLimiter
from bulkpush.emulator.responses import (
    CURRENT_REQUEST,
    ApiError,
    PlatformError,
    RequestInfo,
    error_document,
    jsonapi,
    platform_json,
)
from bulkpush.emulator.state import EmulatorState, LoggedRequest, StateError
from bulkpush.emulator.uplink import Uplink

__all__ = ["DropConnection", "Gate", "Handler"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

INSPECTION_PREFIX = "/_emulator"
PLATFORM_PREFIX = "/platform/"
_SECRET_HEADERS = frozenset({"authorization", "x-auth-token", "proxy-authorization", "cookie"})

# Rate-limit classes of the Stream API's per-stream endpoints, by route template.
_PRODUCTS = "products"
_BATCHES = "batches"
_STREAM_CLASSES = {
    "/streams/{streamId}/products": _PRODUCTS,
    "/streams/{streamId}/products/": _PRODUCTS,
    # Assumption: deleting one product by URL counts against the stream's /products limit.
    "/streams/{streamId}/products/{productId}": _PRODUCTS,
    "/streams/{streamId}/products/{productId}/": _PRODUCTS,
    "/streams/{streamId}/batches/{batchId}": _BATCHES,
}
# Assumption: after a timed-out request's answer, the rest of its body is drained
# through the uplink for at most this long (aiohttp's lingering time), then the
# connection is closed.
_DRAIN_S = 10.0


class DropConnection(Exception):
    """Raised by a handler to close the connection without answering (a fault)."""


class Gate:
    """Rate limits, faults that act before a handler, auth, headers and the request log."""

    def __init__(self, state: EmulatorState, config: EmulatorConfig, uplink: Uplink) -> None:
        self.state = state
        self.config = config
        self.uplink = uplink
        clock = config.clock or time.time

        def make(rate: float | None) -> FixedWindowLimiter | None:
            return None if rate is None else FixedWindowLimiter(rate, clock=clock)

        self.products_limiter = make(config.products_rate)
        self.batches_limiter = make(config.batches_rate)
        self.other_limiter = make(config.other_rate)
        self.platform_limiter = make(config.other_rate)

    def _authorized(self, request: web.Request, *, platform: bool) -> bool:
        token = ""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = value.strip()
        if not token and platform:
            # Platform API: "X-Auth-Token: client_id:client_secret". Assumption: the
            # unified endpoints' Bearer token is accepted on every Platform endpoint.
            token = request.headers.get("X-Auth-Token", "").strip()
        if not token:
            return False
        return not self.config.tokens or token in self.config.tokens

    def _limit(self, request: web.Request, template: str, sid: str | None) -> Decision | None:
        if request.path.startswith(PLATFORM_PREFIX):
            # Assumption: one account per emulator, so the Platform API's "account
            # and route level" limit is keyed by the route template alone.
            limiter = self.platform_limiter
            return None if limiter is None else limiter.hit(template)
        cls = _STREAM_CLASSES.get(template)
        ip = request.remote
        if cls == _PRODUCTS and sid is not None:
            limiter = self.products_limiter
            key: tuple[str | None, ...] = (ip, _PRODUCTS, sid)
        elif cls == _BATCHES and sid is not None:
            limiter = self.batches_limiter
            key = (ip, _BATCHES, sid)
        else:
            # "All other endpoints (the limit applies to each endpoint individually)":
            # one window per route template (``/streams/{streamId}`` is one endpoint).
            limiter = self.other_limiter
            key = (ip, template.rstrip("/") or "/")
        return None if limiter is None else limiter.hit(key)

    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The aiohttp middleware (see the module docstring for the order)."""
        path = request.path
        if path.startswith(INSPECTION_PREFIX):
            return await handler(request)
        started = time.time()
        t0 = time.perf_counter()
        # The request timeout counts from here: aiohttp calls the middleware as soon
        # as the request's head has been parsed, before any of its body is read.
        deadline = None
        if self.config.request_timeout_s is not None:
            deadline = asyncio.get_running_loop().time() + self.config.request_timeout_s
        platform = path.startswith(PLATFORM_PREFIX)
        resource = request.match_info.route.resource
        template = resource.canonical if resource is not None else path
        sid = None if platform else request.match_info.get("streamId")
        stream = self.state.streams.get(sid) if sid is not None else None
        # Assumption: the rate limit is checked before authentication: the reference
        # keys it by client IP and URL path, as a front proxy would.
        decision = self._limit(request, template, sid)
        dropped = False
        info = RequestInfo()
        context = CURRENT_REQUEST.set(info)
        try:
            if decision is not None and not decision.allowed:
                response = self._refusal(429, platform, "Too Many Requests")
            elif stream is not None and self.state.faults_of(stream).storm_active():
                response = self._refusal(429, platform, "Too Many Requests")
                if decision is not None:
                    decision = Decision(False, decision.limit, decision.limit, 0, decision.reset)
            elif not self._authorized(request, platform=platform):
                response = self._refusal(401, platform, "Unauthorized")
            else:
                response = await self._call_in_time(request, handler, platform, deadline, info)
        except DropConnection:
            dropped = True
            if request.transport is not None:
                request.transport.close()
            response = web.Response(status=500)  # never reaches the client
        finally:
            CURRENT_REQUEST.reset(context)
        # With a limit disabled (rate None) there is no window to report, so no headers.
        if decision is not None:
            if platform:
                response.headers["X-RateLimit-Limit"] = str(decision.limit)
                response.headers["X-Ratelimit-Remaining"] = str(decision.remaining)
                response.headers["X-Ratelimit-Retry-After"] = str(decision.reset)
            else:
                response.headers.update(decision.headers())
        self._log(
            request,
            info,
            status=response.status,
            dropped=dropped,
            started=started,
            duration=time.perf_counter() - t0,
            sid=sid,
        )
        if info.timed_out:
            await self._answer_and_drain(request, response)
        return response

    async def _answer_and_drain(self, request: web.Request, response: web.Response) -> None:
        """Send a timed-out request's answer now, then read what is left of its body.

        The rest of the body is read through the uplink (a client still sending
        keeps the link busy), for at most ``_DRAIN_S``, and thrown away; a client
        that closes the connection on the answer ends it at once. aiohttp would
        drain it too after the handler returns ("lingering"), but without the
        uplink, and waiting out its whole 10 s when the client disconnects.
        """
        await response.prepare(request)
        await response.write_eof()
        try:
            async with asyncio.timeout(_DRAIN_S):
                while await self.uplink.read(request.content):
                    pass
        except (TimeoutError, ConnectionError):
            if request.transport is not None:
                request.transport.close()

    def _refusal(self, status: int, platform: bool, title: str) -> web.Response:
        if platform:
            if status == 429:
                # Platform API "Rate limiting": the documented 429 body.
                return platform_json({"success": False, "message": "Too many attempts."}, 429)
            # API Errors example: "Forbidden, your auth token seems to be invalid".
            return platform_json(
                {"success": False, "message": "Forbidden, your auth token seems to be invalid"},
                401,
            )
        # Stream API "Rate limiting": {"errors":[{"status":"429","title":"Too Many Requests"}]}
        return jsonapi(error_document(status, title), status)

    async def _call_in_time(
        self,
        request: web.Request,
        handler: Handler,
        platform: bool,
        deadline: float | None,
        info: RequestInfo,
    ) -> web.Response:
        """:meth:`_call`, answered 504 when it is not done by ``deadline`` (loop time).

        The handler is cancelled at the deadline wherever it waits (reading the
        body, an added latency); handlers store nothing before their last wait,
        so a request that times out leaves nothing behind.
        """
        if deadline is None:
            return await self._call(request, handler, platform)
        timeout = asyncio.timeout_at(deadline)
        try:
            async with timeout:
                return await self._call(request, handler, platform)
        except TimeoutError:
            if not timeout.expired():
                raise
        info.timed_out = True
        # Assumption: the API's "Rate Limiting, Timeouts" section (not in the stored
        # reference) says a request it takes over 10 s to process is terminated with
        # a server error, without a status or body. 504 Gateway Timeout, as the proxy
        # in front of an application answers when the application does not answer in
        # time (500 would be the application failing by itself); the body is the
        # API's usual error shape. The body's transfer counts (the careful reading).
        title = "Gateway Timeout"
        detail = f"the request took more than {self.config.request_timeout_s:g} s"
        if platform:
            return platform_json({"success": False, "message": title}, 504)
        return jsonapi(error_document(504, title, detail), 504)

    async def _call(self, request: web.Request, handler: Handler, platform: bool) -> web.Response:
        try:
            response = await handler(request)
        except ApiError as exc:
            return jsonapi(error_document(exc.status, exc.title, exc.detail), exc.status)
        except PlatformError as exc:
            return platform_json({"success": False, "message": exc.message}, exc.status)
        except StateError as exc:
            if platform:
                return platform_json({"success": False, "message": exc.title}, exc.status)
            return jsonapi(error_document(exc.status, exc.title, exc.detail), exc.status)
        except web.HTTPException as exc:
            if platform:
                return platform_json({"success": False, "message": exc.reason}, exc.status)
            return jsonapi(error_document(exc.status, exc.reason), exc.status)
        if not isinstance(response, web.Response):  # pragma: no cover - handlers build Responses
            raise TypeError("handlers must return web.Response")
        return response

    def _log(
        self,
        request: web.Request,
        info: RequestInfo,
        *,
        status: int,
        dropped: bool,
        started: float,
        duration: float,
        sid: str | None,
    ) -> None:
        state = self.state
        entry = LoggedRequest(
            method=request.method,
            path=request.path,
            query=request.query_string,
            status=0 if dropped else status,
            time=started,
            duration_s=duration,
            size=info.size,
            headers={
                str(k): v for k, v in request.headers.items() if k.lower() not in _SECRET_HEADERS
            },
            products=info.products,
            stream_id=sid,
            batch_id=info.batch_id,
            timed_out=info.timed_out,
        )
        state.request_log.append(entry)
        counters = [state.counters]
        stream = state.streams.get(sid) if sid is not None else None
        if stream is not None:
            counters.append(stream.counters)
        for c in counters:
            c["requests"] += 1
            if info.timed_out:
                c["timed_out"] += 1  # counted in server_errors too (a 504)
            if dropped:
                c["dropped"] += 1
            elif status == 429:
                c["throttled"] += 1
            elif status == 423:
                c["locked"] += 1
            elif status >= 500:
                c["server_errors"] += 1
            elif status == 401:
                c["unauthorized"] += 1
