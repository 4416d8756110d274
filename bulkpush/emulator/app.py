"""The aiohttp application: the gate every request passes, and the Stream API.

Every Stream and Platform API request goes through :meth:`Gate.middleware`,
in this order: rate limit (refused before the body is read), 429 storm fault,
authentication, then the handler; the answer gets the ``ratelimit-*`` headers
and is logged. ``/_emulator/...`` (inspection) bypasses all of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from bulkpush.emulator.config import EmulatorConfig
from bulkpush.emulator.faults import FaultDraw
from bulkpush.emulator.ratelimit import Decision, FixedWindowLimiter
from bulkpush.emulator.responses import (
    CURRENT_REQUEST,
    ApiError,
    PlatformError,
    RequestInfo,
    error_document,
    jsonapi,
    platform_json,
    request_info,
)
from bulkpush.emulator.state import UPLOAD_LOCKED, EmulatorState, LoggedRequest, StateError, Stream
from bulkpush.emulator.validation import (
    BodyError,
    GzipDecoder,
    JsonArrayValidator,
    LineCounter,
    NdjsonValidator,
    Validator,
)

__all__ = ["Gate", "StreamApi"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

INSPECTION_PREFIX = "/_emulator"
PLATFORM_PREFIX = "/platform/"
_SECRET_HEADERS = frozenset({"authorization", "x-auth-token", "proxy-authorization", "cookie"})
_ALL_STREAMS_PAGE_MAX = 10  # "a maximum of 10 streams per page and a minimum of 1"

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


class DropConnection(Exception):
    """Raised by a handler to close the connection without answering (a fault)."""


class Gate:
    """Rate limits, faults that act before a handler, auth, headers and the request log."""

    def __init__(self, state: EmulatorState, config: EmulatorConfig) -> None:
        self.state = state
        self.config = config
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
                response = await self._call(request, handler, platform)
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
        return response

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
        )
        state.request_log.append(entry)
        counters = [state.counters]
        stream = state.streams.get(sid) if sid is not None else None
        if stream is not None:
            counters.append(stream.counters)
        for c in counters:
            c["requests"] += 1
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


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "Bad Request", f"{name} must be an integer") from None


async def _json_body(request: web.Request) -> dict[str, Any]:
    # Assumption: JSON:API bodies may be sent as application/vnd.api+json or
    # application/json; anything else is 415; unparseable JSON is 400.
    if request.content_type not in ("application/vnd.api+json", "application/json"):
        raise ApiError(415, "Unsupported Media Type", "send application/vnd.api+json")
    raw = await request.read()
    request_info().size = len(raw)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "Bad Request", "the body is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise ApiError(400, "Bad Request", "the body must be a JSON:API document with data")
    return body


class StreamApi:
    """Handlers of the Stream API: streams, uploads, deletes, batches."""

    def __init__(self, state: EmulatorState, config: EmulatorConfig) -> None:
        self.state = state
        self.config = config

    def add_routes(self, app: web.Application) -> None:
        """Register the Stream API's routes."""
        r = app.router
        r.add_get("/streams", self.list_streams)
        r.add_post("/streams", self.create_stream)
        r.add_get("/streams/{streamId}", self.get_stream)
        r.add_patch("/streams/{streamId}", self.update_stream)
        r.add_delete("/streams/{streamId}", self.delete_stream)
        for path in ("/streams/{streamId}/products", "/streams/{streamId}/products/"):
            # "Upload" accepts POST; assumption: PUT and PATCH behave the same.
            r.add_post(path, self.upload)
            r.add_put(path, self.upload)
            r.add_patch(path, self.upload)
            r.add_delete(path, self.delete_products)
        r.add_delete("/streams/{streamId}/products/{productId}", self.delete_product)
        r.add_delete("/streams/{streamId}/products/{productId}/", self.delete_product)
        r.add_get("/streams/{streamId}/batches/{batchId}", self.get_batch)

    def _stream(self, request: web.Request) -> Stream:
        return self.state.get_stream(request.match_info["streamId"])

    # -- stream management ---------------------------------------------------------

    async def create_stream(self, request: web.Request) -> web.Response:
        """``POST /streams``: 201 with the stream and ``Content-Location``."""
        data = (await _json_body(request))["data"]
        if data.get("type") != "stream":
            raise ApiError(409, "Conflict", "data.type must be 'stream'")
        attributes = data.get("attributes")
        if not isinstance(attributes, dict):
            raise ApiError(422, "Invalid attribute", "data.attributes is required")
        stream = self.state.create_stream(attributes.get("name"), attributes.get("type"))
        # Changelog 18/05/2023: POST /streams answers with Content-Location.
        return jsonapi(
            {"data": stream.to_resource(self.state.account_id)},
            201,
            headers={"Content-Location": f"/streams/{stream.id}"},
        )

    async def list_streams(self, request: web.Request) -> web.Response:
        """``GET /streams`` with ``page[offset]`` / ``page[limit]`` and pagination links."""
        offset = _int_param(request, "page[offset]", 0)
        limit = _int_param(request, "page[limit]", _ALL_STREAMS_PAGE_MAX)
        # Assumption: a limit outside 1..10 or a negative offset is a 400, not clamped.
        if not 1 <= limit <= _ALL_STREAMS_PAGE_MAX:
            raise ApiError(400, "Bad Request", "page[limit] must be from 1 to 10")
        if offset < 0:
            raise ApiError(400, "Bad Request", "page[offset] must not be negative")
        streams = self.state.list_streams()
        total = len(streams)
        base = f"{request.scheme}://{request.host}/streams"

        def link(at: int) -> str:
            return f"{base}?page[offset]={at}&page[limit]={limit}"

        links = {
            "self": link(offset),
            "first": link(0),
            "last": link(max(0, (total - 1) // limit * limit)),
        }
        if offset > 0:
            links["prev"] = link(max(0, offset - limit))
        if offset + limit < total:
            links["next"] = link(offset + limit)
        page = streams[offset : offset + limit]
        return jsonapi(
            {
                "data": [s.to_resource(self.state.account_id) for s in page],
                "links": links,
                "meta": {"total": total},
            }
        )

    async def get_stream(self, request: web.Request) -> web.Response:
        """``GET /streams/{id}``."""
        return jsonapi({"data": self._stream(request).to_resource(self.state.account_id)})

    async def update_stream(self, request: web.Request) -> web.Response:
        """``PATCH /streams/{id}``: rename; changing the type is a 422."""
        sid = request.match_info["streamId"]
        self.state.get_stream(sid)
        data = (await _json_body(request))["data"]
        if data.get("type") != "stream":
            raise ApiError(409, "Conflict", "data.type must be 'stream'")
        if "id" in data and str(data["id"]) != sid:
            raise ApiError(409, "Conflict", "data.id does not match the URL")
        attributes = data.get("attributes")
        if not isinstance(attributes, dict):
            raise ApiError(422, "Invalid attribute", "data.attributes is required")
        stream = self.state.rename_stream(sid, attributes.get("name"), attributes.get("type"))
        return jsonapi({"data": stream.to_resource(self.state.account_id)})

    async def delete_stream(self, request: web.Request) -> web.Response:
        """``DELETE /streams/{id}``: 204; the name stays reserved."""
        self.state.delete_stream(request.match_info["streamId"])
        return jsonapi(None, 204)

    # -- uploads -------------------------------------------------------------------

    async def _write_faults(self, stream: Stream) -> FaultDraw:
        """Status and fault checks of a ``/products`` write; sleeps the added latency."""
        # Assumption: deletes are writes too: locked and locked_upload answer them 423,
        # while a disabled stream ("rejects uploads") still accepts deletes.
        if stream.status in UPLOAD_LOCKED:
            raise ApiError(423, "Locked", f"the stream is {stream.status}")
        faults = self.state.faults_of(stream)
        if faults.lock_active():
            raise ApiError(423, "Locked", "the stream is temporarily locked")
        draw = faults.draw(stream.rng)
        delay = self.config.latency_s + faults.faults.latency_s
        if delay > 0:
            await asyncio.sleep(delay)
        if draw.error:
            raise ApiError(faults.faults.error_status)
        return draw

    def _validator(self, stream: Stream, request: web.Request) -> Validator:
        # Assumption: a charset parameter is accepted whatever its value (bodies are
        # parsed as UTF-8); a media type the stream does not take is a 415.
        ctype = request.content_type
        throughput = self.config.throughput_mode
        if stream.type == "chunked":
            if ctype == "application/x-ndjson":
                if throughput:
                    return LineCounter()
                return NdjsonValidator(max_line_bytes=self.config.max_line_bytes)
            raise ApiError(
                415, "Unsupported Media Type", "a chunked stream takes application/x-ndjson"
            )
        if ctype == "application/json":
            return JsonArrayValidator(store=not throughput)
        if ctype == "application/x-ndjson":
            if throughput:
                return LineCounter()
            return NdjsonValidator(max_line_bytes=self.config.max_line_bytes, validate=False)
        raise ApiError(
            415,
            "Unsupported Media Type",
            "a referenced stream takes application/json or application/x-ndjson",
        )

    @staticmethod
    def _decoder(request: web.Request) -> GzipDecoder | None:
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            return GzipDecoder()
        if encoding in ("identity", ""):
            return None
        # Assumption: only gzip is documented; other encodings are a 415.
        raise ApiError(
            415, "Unsupported Media Type", f"Content-Encoding {encoding} is not supported"
        )

    async def _read(
        self,
        request: web.Request,
        validator: Validator,
        *,
        max_wire: int,
        max_decoded: int,
        drop: bool = False,
    ) -> int:
        """Stream the body into ``validator``; returns the bytes read from the wire."""
        decoder = self._decoder(request)
        wire = 0
        decoded = 0
        try:
            async for chunk in request.content.iter_any():
                wire += len(chunk)
                request_info().size = wire
                if drop:
                    raise DropConnection
                if wire > max_wire:
                    raise ApiError(413, "Payload Too Large", f"the body exceeds {max_wire} bytes")
                pieces = decoder.feed(chunk) if decoder is not None else (chunk,)
                for piece in pieces:
                    decoded += len(piece)
                    if decoded > max_decoded:
                        raise ApiError(
                            413,
                            "Payload Too Large",
                            f"the decoded body exceeds {max_decoded} bytes",
                        )
                    validator.feed(piece)
            if drop:
                raise DropConnection
            if decoder is not None:
                decoder.finish()
        except BodyError as exc:
            raise ApiError(exc.status, exc.title) from None
        return wire

    async def upload(self, request: web.Request) -> web.Response:
        """``POST|PUT|PATCH /streams/{id}/products``: validate, store, answer a batch.

        200 when every product is valid (assumption: the reference names no
        success code), 202 when some are invalid ("Partial uploads"), 422 with
        the failed batch when all are (assumption: the table lists the per-line
        messages with 422), 422 with an error document for "Empty Payload".
        """
        stream = self._stream(request)
        if stream.status == "disabled":
            raise ApiError(403, "Forbidden", "the stream is disabled and rejects uploads")
        timeout = self.config.request_timeout_s
        try:
            async with asyncio.timeout(timeout):
                draw = await self._write_faults(stream)
                referenced = stream.type == "referenced"
                validator = self._validator(stream, request)
                self._decoder(request)  # 415 before reading a body it cannot decode
                max_wire = (
                    self.config.referenced_max_bytes
                    if referenced
                    else self.config.max_request_bytes
                )
                length = request.content_length
                if length is not None and length > max_wire:
                    raise ApiError(413, "Payload Too Large", f"the body exceeds {max_wire} bytes")
                wire = await self._read(
                    request, validator, max_wire=max_wire, max_decoded=max_wire, drop=draw.drop
                )
                result = validator.finish()
        except TimeoutError:
            # Assumption: 504. The API's references give no status for a request
            # that outlives the server's time limit (``STREAM_API.server_request_timeout_s``);
            # see docs/emulator.md, "Assumptions".
            raise ApiError(504, "Gateway Timeout", "the request took too long") from None
        request_info().products = result.lines
        # Assumption: a request refused as a whole ("Empty Payload", a broken JSON
        # array, a referenced body under the minimum) creates no batch.
        if result.whole_request_error is not None:
            raise ApiError(422, result.whole_request_error)
        if referenced and wire < self.config.referenced_min_bytes:
            # "You request can't be less than 10 MB." Assumption: a 422, measured on the wire.
            raise ApiError(
                422,
                "Payload too small",
                f"a referenced stream's request can't be less than "
                f"{self.config.referenced_min_bytes} bytes",
            )
        batch = self.state.record_upload(stream, result)
        request_info().batch_id = batch.id
        if draw.error_after_store:
            raise ApiError(self.state.faults_of(stream).faults.error_status)
        # Assumption: 200 when every product is valid (no success code is documented);
        # 202 for a partial upload (documented); 422 with the failed batch when all
        # products are invalid (the "Invalid batch" table lists the messages with 422).
        status = {"success": 200, "warning": 202, "failure": 422}[batch.upload.status]
        return jsonapi({"data": batch.to_resource()}, status)

    # -- deletes -------------------------------------------------------------------

    async def delete_products(self, request: web.Request) -> web.Response:
        """``DELETE /streams/{id}/products``: NDJSON ids in the body, or ``?all=true``.

        Assumption: the answer is 200 with ``meta.deleted`` (ids that existed) and
        the body's invalid lines in ``meta.errors``; a body with no valid id is a 422.
        """
        stream = self._stream(request)
        await self._write_faults(stream)
        if request.query.get("all", "").lower() == "true":
            deleted = self.state.delete_all_products(stream)
            return jsonapi({"meta": {"deleted": deleted, "errors": []}})
        validator = NdjsonValidator(max_line_bytes=self.config.max_line_bytes)
        limit = self.config.max_request_bytes
        await self._read(request, validator, max_wire=limit, max_decoded=limit)
        result = validator.finish()
        request_info().products = result.lines
        if result.whole_request_error is not None:
            raise ApiError(422, result.whole_request_error)
        errors = [e.to_json() for e in result.errors.values()]
        if not result.accepted:
            return jsonapi(
                {"errors": [{"status": "422", "title": e["message"], "meta": e} for e in errors]},
                422,
            )
        deleted = self.state.delete_products(stream, (pid for pid, _ in result.accepted))
        return jsonapi({"meta": {"deleted": deleted, "errors": errors}})

    async def delete_product(self, request: web.Request) -> web.Response:
        """``DELETE /streams/{id}/products/{productId}`` (the id URL-encoded)."""
        stream = self._stream(request)
        await self._write_faults(stream)
        deleted = self.state.delete_products(stream, [request.match_info["productId"]])
        return jsonapi({"meta": {"deleted": deleted, "errors": []}})

    # -- batches -------------------------------------------------------------------

    async def get_batch(self, request: web.Request) -> web.Response:
        """``GET /streams/{id}/batches/{batchId}``."""
        stream = self._stream(request)
        batch = stream.batches.get(request.match_info["batchId"])
        if batch is None:
            raise ApiError(404, "Not Found", "no such batch in this stream")
        return jsonapi({"data": batch.to_resource()})
