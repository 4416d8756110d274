"""Stream management, deletes and batch status, through the one retry executor.

Productsup Stream API reference: "Stream Management", "Delete products",
"Batches", "Rate limiting" (5 requests/s per other endpoint, 30/s on
``/products``, 100/s on ``/batches``, per stream).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import orjson

from bulkpush._http import Request, Response
from bulkpush._quota import DEFAULT_SAFETY, Pacer
from bulkpush._retry import Executor, Retry, Verdict, classify_status, error_for_status
from bulkpush.errors import (
    APIError,
    BulkpushError,
    ConfigError,
    Conflict,
    NotFound,
    StreamLocked,
    TransportError,
)
from bulkpush.limits import STREAM_API
from bulkpush.targets.productsup_stream._wire import (
    JSONAPI,
    Batch,
    DeleteResult,
    Stream,
    StreamType,
    batch_path,
    deleted_count,
    product_path,
    products_path,
    stream_path,
)

__all__ = ["StreamManager", "classify_manage"]


def classify_manage(resp: Response) -> Verdict:
    """A management answer: the generic reading, and a locked stream (423) waits."""
    if resp.status == 423:
        return Retry("busy", error_for_status(resp, StreamLocked))
    return classify_status(resp)


class StreamManager:
    """Stream management, deletes and batch status, each endpoint paced at its published rate."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        # "All other endpoints (the limit applies to each endpoint individually): 5/s".
        self._pacers: dict[str, Pacer] = {}

    def __repr__(self) -> str:
        return f"StreamManager({self.executor!r})"

    def _pacer(self, key: str, rate: float) -> Pacer:
        pacer = self._pacers.get(key)
        if pacer is None:
            pacer = self._pacers[key] = Pacer(rate * DEFAULT_SAFETY)
        return pacer

    async def _call(
        self,
        method: str,
        path: str,
        key: str,
        *,
        rate: float = STREAM_API.other_rate_per_s,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool = True,
        executor: Executor | None = None,
    ) -> Response:
        request = Request(
            method=method,
            path=path,
            body=body,
            headers={"Accept": JSONAPI, **(headers or {})},
            params=params,
            idempotent=idempotent,
        )
        resp, _ = await (executor or self.executor).execute(
            request, classify_manage, pacer=self._pacer(key, rate)
        )
        return resp

    async def get_stream(self, stream_id: str, *, executor: Executor | None = None) -> Stream:
        """The stream; :class:`NotFound` names it when it does not exist or the token cannot
        see it. ``executor``: another retry policy for this call (a push's preflight)."""
        try:
            resp = await self._call("GET", stream_path(stream_id), "get", executor=executor)
        except NotFound as exc:
            raise NotFound(
                f"stream {stream_id} does not exist (or this token cannot see it)",
                status=404,
                method="GET",
                url=exc.url,
            ) from exc
        return Stream.from_jsonapi(_data(resp))

    async def iter_streams(
        self, *, page_size: int = STREAM_API.list_page_max
    ) -> AsyncIterator[Stream]:
        offset = 0
        while True:
            resp = await self._call(
                "GET",
                "/streams",
                "list",
                params={"page[offset]": str(offset), "page[limit]": str(page_size)},
            )
            body = resp.json() or {}
            data = body.get("data") or []
            if isinstance(data, dict):
                data = [data]
            for item in data:
                yield Stream.from_jsonapi(item)
            links = body.get("links") or {}
            if not data or not links.get("next") or len(data) < page_size:
                return
            offset += len(data)

    async def list_streams(self) -> list[Stream]:
        return [s async for s in self.iter_streams()]

    async def create_stream(self, name: str, type: StreamType = "chunked") -> Stream:
        """Create a stream; safe to call when an answer gets lost.

        ``POST /streams`` is not idempotent, so it is never blindly resent:
        after a lost answer (a network error, a timeout) or a 5xx the create
        may have happened, so the name is looked up first and a stream with
        that name and type is returned; else the create is sent once more. A
        409 on that second create, with the name now present, returns that
        stream too. Raises :class:`~bulkpush.errors.Conflict` when the name is
        taken (by a stream of another type, or before this call).
        """
        low, high = STREAM_API.stream_name_min_chars, STREAM_API.stream_name_max_chars
        if not low <= len(name) <= high:
            raise ConfigError(f"a stream name has {low} to {high} characters, got {len(name)}")
        doc = {"data": {"type": "stream", "attributes": {"name": name, "type": type}}}
        body = orjson.dumps(doc)
        try:
            return await self._create(body)
        except BulkpushError as exc:
            if not _maybe_done(exc):
                raise
            found = await self._find(name, type)
            if found is not None:
                return found
        try:
            return await self._create(body)
        except Conflict:
            found = await self._find(name, type)
            if found is not None:
                return found
            raise

    async def _create(self, body: bytes) -> Stream:
        resp = await self._call(
            "POST",
            "/streams",
            "create",
            body=body,
            headers={"Content-Type": JSONAPI},
            idempotent=False,
        )
        return Stream.from_jsonapi(_data(resp))

    async def _find(self, name: str, type: StreamType) -> Stream | None:
        async for stream in self.iter_streams():
            if stream.name == name and stream.type == type:
                return stream
        return None

    async def rename_stream(self, stream_id: str, name: str) -> Stream:
        doc = {"data": {"id": str(stream_id), "type": "stream", "attributes": {"name": name}}}
        resp = await self._call(
            "PATCH",
            stream_path(stream_id),
            "rename",
            body=orjson.dumps(doc),
            headers={"Content-Type": JSONAPI},
        )
        return Stream.from_jsonapi(_data(resp))

    async def delete_stream(self, stream_id: str) -> None:
        await self._call("DELETE", stream_path(stream_id), "delete")

    async def delete_products(
        self, stream_id: str, ids: Iterable[str | int], *, per_request: int = 10_000
    ) -> DeleteResult:
        """Delete products by id: an NDJSON body of ``{"id": ...}`` lines, in batches."""
        path = products_path(stream_id)
        total = requests = 0
        status = 0
        deleted: int | None = None
        batch: list[bytes] = []

        async def flush() -> None:
            nonlocal requests, status, deleted
            if not batch:
                return
            resp = await self._call(
                "DELETE",
                path,
                "products",
                body=b"\n".join(batch) + b"\n",
                headers={"Content-Type": "application/x-ndjson"},
                rate=STREAM_API.products_rate_per_s,
            )
            requests += 1
            status = resp.status
            n = deleted_count(resp.json())
            if n is not None:
                deleted = (deleted or 0) + n
            batch.clear()

        for pid in ids:
            batch.append(orjson.dumps({"id": pid}))
            total += 1
            if len(batch) >= per_request:
                await flush()
        await flush()
        return DeleteResult(requested=total, status=status, requests=requests, deleted=deleted)

    async def delete_all_products(self, stream_id: str) -> DeleteResult:
        resp = await self._call(
            "DELETE",
            products_path(stream_id),
            "products",
            params={"all": "true"},
            rate=STREAM_API.products_rate_per_s,
        )
        return DeleteResult(requested=0, status=resp.status, deleted=deleted_count(resp.json()))

    async def delete_product(self, stream_id: str, product_id: str) -> DeleteResult:
        resp = await self._call(
            "DELETE",
            product_path(stream_id, product_id),
            "products",
            rate=STREAM_API.products_rate_per_s,
        )
        return DeleteResult(requested=1, status=resp.status, deleted=deleted_count(resp.json()))

    async def batch(self, stream_id: str, batch_id: str) -> Batch:
        resp = await self._call(
            "GET", batch_path(stream_id, batch_id), "batches", rate=STREAM_API.batches_rate_per_s
        )
        return Batch.from_jsonapi(resp.json())


def _maybe_done(exc: BulkpushError) -> bool:
    # No answer, or a 5xx/408: the server may have acted on the request.
    if isinstance(exc, TransportError):
        return exc.retriable
    return isinstance(exc, APIError) and (exc.status >= 500 or exc.status == 408)


def _data(resp: Response) -> dict[str, Any]:
    body = resp.json()
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else {}
