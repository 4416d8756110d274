"""Inspection and control under ``/_emulator/...`` (no auth, no rate limit, not logged).

The emulator binds to 127.0.0.1 by default; these endpoints are for tests and
demos on the same machine. Endpoints:

====== ============================================ ===========================================
GET    /_emulator/streams                            every stream: id, name, type, status, counts
GET    /_emulator/streams/{id}/products              stored products, NDJSON (one line each)
GET    /_emulator/streams/{id}/upload-counts         ``{product id: times uploaded}``
GET    /_emulator/streams/{id}/counters              the stream's counters
GET    /_emulator/streams/{id}/batches               the stream's batches (JSON:API objects)
GET    /_emulator/counters                           the emulator's counters
GET    /_emulator/requests?stream={id}&limit={n}     the request log, oldest first
GET    /_emulator/streams/{id}/status                ``{"status": ...}``
PUT    /_emulator/streams/{id}/status                body ``{"status": "locked"}`` (POST too)
GET    /_emulator/streams/{id}/faults                the stream's faults
PUT    /_emulator/streams/{id}/faults                body: Faults fields (POST too)
GET    /_emulator/faults                             the default faults
PUT    /_emulator/faults                             set the default faults (POST too)
GET    /_emulator/uplink                             ``{"bytes_per_s": ..., "carried": ...}``
PUT    /_emulator/uplink                             body ``{"bytes_per_s": 125000}`` (null: no
                                                     limit; POST too)
====== ============================================ ===========================================
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from bulkpush.emulator.config import Faults
from bulkpush.emulator.state import EmulatorState, StateError, Stream
from bulkpush.emulator.uplink import Uplink

__all__ = ["InspectionApi"]

PREFIX = "/_emulator"


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(document), status=status, content_type="application/json")


class InspectionApi:
    """Handlers of ``/_emulator/...``."""

    # Assumption: not part of the reference; no auth, so tests and demos can read
    # the state without a token (the emulator binds to 127.0.0.1 by default).

    def __init__(self, state: EmulatorState, uplink: Uplink) -> None:
        self.state = state
        self.uplink = uplink

    def add_routes(self, app: web.Application) -> None:
        """Register the inspection routes."""
        r = app.router
        s = PREFIX + "/streams/{streamId}"
        r.add_get(PREFIX + "/streams", self.streams)
        r.add_get(s + "/products", self.products)
        r.add_get(s + "/upload-counts", self.upload_counts)
        r.add_get(s + "/counters", self.stream_counters)
        r.add_get(s + "/batches", self.batches)
        r.add_get(s + "/status", self.get_status)
        r.add_put(s + "/status", self.set_status)
        r.add_post(s + "/status", self.set_status)
        r.add_get(s + "/faults", self.get_faults)
        r.add_put(s + "/faults", self.set_faults)
        r.add_post(s + "/faults", self.set_faults)
        r.add_get(PREFIX + "/counters", self.counters)
        r.add_get(PREFIX + "/requests", self.requests)
        r.add_get(PREFIX + "/faults", self.get_faults)
        r.add_put(PREFIX + "/faults", self.set_faults)
        r.add_post(PREFIX + "/faults", self.set_faults)
        r.add_get(PREFIX + "/uplink", self.get_uplink)
        r.add_put(PREFIX + "/uplink", self.set_uplink)
        r.add_post(PREFIX + "/uplink", self.set_uplink)

    def _stream(self, request: web.Request) -> Stream:
        try:
            return self.state.get_stream(request.match_info["streamId"])
        except StateError as exc:
            raise web.HTTPNotFound(text=exc.detail or exc.title) from None

    async def _body(self, request: web.Request) -> Any:
        try:
            return orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise web.HTTPBadRequest(text="the body is not valid JSON") from None

    async def streams(self, _request: web.Request) -> web.Response:
        """Every stream with its status and sizes."""
        return _json(
            [
                {
                    "id": s.id,
                    "name": s.name,
                    "type": s.type,
                    "status": s.status,
                    "products": len(s.products),
                    "batches": len(s.batches),
                    "faults": self.state.faults_of(s).faults.to_json(),
                }
                for s in self.state.list_streams()
            ]
        )

    async def products(self, request: web.Request) -> web.StreamResponse:
        """The stored products as NDJSON, streamed."""
        stream = self._stream(request)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        buffer: list[bytes] = []
        size = 0
        for line in list(stream.products.values()):
            buffer.append(line)
            size += len(line) + 1
            if size >= 1 << 16:
                await response.write(b"\n".join(buffer) + b"\n")
                buffer, size = [], 0
        if buffer:
            await response.write(b"\n".join(buffer) + b"\n")
        await response.write_eof()
        return response

    async def upload_counts(self, request: web.Request) -> web.Response:
        """How many times each product id was accepted."""
        return _json(dict(self._stream(request).upload_counts))

    async def stream_counters(self, request: web.Request) -> web.Response:
        """The stream's counters."""
        return _json(dict(self._stream(request).counters))

    async def batches(self, request: web.Request) -> web.Response:
        """The stream's batches, oldest first."""
        return _json([b.to_resource() for b in self._stream(request).batches.values()])

    async def counters(self, _request: web.Request) -> web.Response:
        """The emulator's counters (all streams and endpoints)."""
        return _json(dict(self.state.counters))

    async def requests(self, request: web.Request) -> web.Response:
        """The request log, optionally of one stream and only the last ``limit`` entries."""
        sid = request.query.get("stream")
        entries = [e for e in self.state.request_log if sid is None or e.stream_id == sid]
        limit = request.query.get("limit")
        if limit is not None:
            try:
                entries = entries[-int(limit) :] if int(limit) > 0 else []
            except ValueError:
                raise web.HTTPBadRequest(text="limit must be an integer") from None
        return _json([e.to_json() for e in entries])

    async def get_status(self, request: web.Request) -> web.Response:
        """The stream's status."""
        return _json({"status": self._stream(request).status})

    async def set_status(self, request: web.Request) -> web.Response:
        """Set the stream's status from ``{"status": ...}``."""
        stream = self._stream(request)
        body = await self._body(request)
        status = body.get("status") if isinstance(body, dict) else None
        try:
            self.state.set_status(stream.id, str(status))
        except StateError as exc:
            raise web.HTTPUnprocessableEntity(text=exc.detail or exc.title) from None
        return _json({"status": stream.status})

    async def get_faults(self, request: web.Request) -> web.Response:
        """The faults of a stream, or the defaults."""
        if "streamId" in request.match_info:
            return _json(self.state.faults_of(self._stream(request)).faults.to_json())
        return _json(self.state.default_faults.faults.to_json())

    async def set_faults(self, request: web.Request) -> web.Response:
        """Set the faults of a stream, or the defaults; their time windows start now."""
        sid = self._stream(request).id if "streamId" in request.match_info else None
        try:
            faults = Faults.from_json(await self._body(request))
        except ValueError as exc:
            raise web.HTTPUnprocessableEntity(text=str(exc)) from None
        self.state.set_faults(sid, faults)
        return _json(faults.to_json())

    async def get_uplink(self, _request: web.Request) -> web.Response:
        """The uplink's bandwidth (bytes/s, null: unlimited) and the body bytes it carried."""
        return _json(self.uplink.to_json())

    async def set_uplink(self, request: web.Request) -> web.Response:
        """Set the uplink's bandwidth from ``{"bytes_per_s": number or null}``, now."""
        body = await self._body(request)
        if not isinstance(body, dict) or set(body) != {"bytes_per_s"}:
            raise web.HTTPUnprocessableEntity(text='send {"bytes_per_s": number or null}')
        rate = body["bytes_per_s"]
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)):
            raise web.HTTPUnprocessableEntity(text="bytes_per_s must be a number or null")
        try:
            self.uplink.set_rate(None if rate is None else float(rate))
        except ValueError as exc:
            raise web.HTTPUnprocessableEntity(text=str(exc)) from None
        return _json(self.uplink.to_json())
