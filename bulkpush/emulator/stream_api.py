"""The emulated Stream API's handlers: streams, uploads, deletes, batches."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from bulkpush.emulator.config import EmulatorConfig
from bulkpush.emulator.faults import FaultDraw
from bulkpush.emulator.gate import DropConnection
from bulkpush.emulator.responses import ApiError, jsonapi, request_info
from bulkpush.emulator.state import UPLOAD_LOCKED, EmulatorState, Stream
from bulkpush.emulator.uplink import Uplink
from bulkpush.emulator.validation import (
    BodyError,
    GzipDecoder,
    JsonArrayValidator,
    LineCounter,
    NdjsonValidator,
    Validator,
)

__all__ = ["StreamApi"]

# "a maximum of 10 streams per page and a minimum of 1"
_ALL_STREAMS_PAGE_MAX = 10


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "Bad Request", f"{name} must be an integer") from None


async def _json_body(request: web.Request, uplink: Uplink) -> dict[str, Any]:
    # Assumption: JSON:API bodies may be sent as application/vnd.api+json or
    # application/json; anything else is 415; unparseable JSON is 400.
    if request.content_type not in ("application/vnd.api+json", "application/json"):
        raise ApiError(415, "Unsupported Media Type", "send application/vnd.api+json")
    raw = await uplink.read_all(request)
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

    def __init__(self, state: EmulatorState, config: EmulatorConfig, uplink: Uplink) -> None:
        self.state = state
        self.config = config
        self.uplink = uplink

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
        data = (await _json_body(request, self.uplink))["data"]
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
        data = (await _json_body(request, self.uplink))["data"]
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
    ) -> tuple[int, int]:
        """Stream the body into ``validator``; returns the bytes read from the wire
        and the bytes they decoded to (the same without Content-Encoding)."""
        decoder = self._decoder(request)
        wire = 0
        decoded = 0
        try:
            while chunk := await self.uplink.read(request.content):
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
        return wire, decoded

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
        # The request timeout (``Gate``) cancels this at any wait before the batch is
        # recorded: nothing after the body's last piece waits, so a request that
        # times out stores nothing.
        draw = await self._write_faults(stream)
        referenced = stream.type == "referenced"
        validator = self._validator(stream, request)
        self._decoder(request)  # 415 before reading a body it cannot decode
        max_wire = self.config.referenced_max_bytes if referenced else self.config.max_request_bytes
        length = request.content_length
        if length is not None and length > max_wire:
            raise ApiError(413, "Payload Too Large", f"the body exceeds {max_wire} bytes")
        _, decoded = await self._read(
            request, validator, max_wire=max_wire, max_decoded=max_wire, drop=draw.drop
        )
        result = validator.finish()
        request_info().products = result.lines
        # Assumption: a request refused as a whole ("Empty Payload", a broken JSON
        # array, a referenced body under the minimum) creates no batch.
        if result.whole_request_error is not None:
            raise ApiError(422, result.whole_request_error)
        if referenced and decoded < self.config.referenced_min_bytes:
            # "You request can't be less than 10 MB." Assumption: a 422, measured on the
            # body as decoded (gzip or not: the reference does not say; bulkpush keeps a
            # compressed request's body at 10 MB or more, docs/emulator.md assumption 8).
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
