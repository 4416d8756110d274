"""The Productsup Stream API: uploads, stream management, deletes, batches.

Source of truth: ``shared/reference/productsup-stream-and-platform-api.md``
("Uploading Data", "Stream Management", "Delete products", "Batches",
"Rate limiting"). Uploads follow the retry table of DESIGN.md section 3:

======  =====================================================================
200/201 accepted
202     partial: products named in ``stages.upload.errors`` are rejected
422     the whole request refused: its products are rejected with the reason
429     wait for ``ratelimit-reset`` / ``Retry-After`` (the pacer pauses), retry
423     stream locked: slow backoff until ``RetryPolicy.lock_deadline_s``
403     stream disabled: the run stops
401     bad token: the run stops (a preflight catches it before reading)
413     split the chunk and send the halves
5xx     and network errors / timeouts: full-jitter backoff, bounded attempts
======  =====================================================================
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import quote

import orjson

from bulkpush.errors import (
    APIError,
    BulkpushError,
    InvalidRequest,
    PayloadTooLarge,
    RetriesExhausted,
    StreamLocked,
    TransportError,
)
from bulkpush.limits import STREAM_API
from bulkpush.pipeline import ChunkFailed
from bulkpush.records import STAGE_UPLOAD, Chunk, Outcome, Record, Rejection, Unattributed
from bulkpush.transport import (
    AdaptiveLimit,
    HttpTransport,
    Pacer,
    Response,
    RetryPolicy,
    backoff_delay,
    error_for_status,
    rate_limit_wait,
)

__all__ = [
    "DEFAULT_API_URL",
    "JSONAPI",
    "Batch",
    "DeleteResult",
    "Stream",
    "StreamType",
    "StreamUploader",
    "stream_products_path",
]

DEFAULT_API_URL = "https://stream-api.productsup.com"
JSONAPI = "application/vnd.api+json"
StreamType = Literal["chunked", "referenced"]

# How much slower than the published limit the pacer runs by default. The API
# counts requests in fixed one-second windows; spacing requests exactly 1/30 s
# apart lets jitter (network, a busy machine) push a 31st into one window. A
# window receives at most 30 while jitter stays under 30 x interval - 1 s:
# 20 ms at 98 %, 26 ms at 97.5 %. The pacer's own cap (30 in any 1.02 s, see
# transport.Pacer) stops bursts after a busy event loop; together they gave
# zero 429s on 4 streams from one process at 97.5 % (benchmarks/RESULTS.md).
RATE_SAFETY = 0.975

PayloadBuilder = Callable[[Chunk], Awaitable[bytes]]


def stream_products_path(stream_id: str) -> str:
    return f"/streams/{quote(str(stream_id), safe='')}/products"


@dataclass(frozen=True, slots=True)
class Stream:
    """A stream as the API describes it."""

    id: str
    name: str
    type: str
    created_at: str | None = None
    updated_at: str | None = None
    account_id: str | None = None

    @classmethod
    def from_jsonapi(cls, data: dict[str, Any]) -> Stream:
        attrs = data.get("attributes") or {}
        account = ((data.get("relationships") or {}).get("account") or {}).get("data") or {}
        return cls(
            id=str(data.get("id")),
            name=str(attrs.get("name", "")),
            type=str(attrs.get("type", "")),
            created_at=attrs.get("createdAt"),
            updated_at=attrs.get("updatedAt"),
            account_id=str(account["id"]) if account.get("id") is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Batch:
    """An upload's status: ``uploaded``, ``processed`` or ``failed``, with its stages."""

    id: str
    status: str
    error_count: int
    stages: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_jsonapi(cls, body: Any) -> Batch:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise InvalidRequest("the batch answer has no data object", status=200, body=body)
        attrs = data.get("attributes") or {}
        return cls(
            id=str(data.get("id")),
            status=str(attrs.get("status", "")),
            error_count=int(attrs.get("errorCount") or 0),
            stages=dict(attrs.get("stages") or {}),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """What a delete request did: how many ids were sent, the API's answer."""

    requested: int
    status: int
    requests: int = 1


def _span(records: list[Record]) -> tuple[str, int, int]:
    first, last = records[0], records[-1]
    if first.source == last.source:
        return first.source, first.line, last.line
    return f"{first.source} … {last.source}", first.line, last.line


def _upload_errors(body: Any) -> tuple[list[dict[str, Any]], int | None, str | None]:
    """``(errors, errorCount, batch id)`` from a batch answer, tolerant of shape."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return [], None, None
    attrs = data.get("attributes") or {}
    upload = (attrs.get("stages") or {}).get("upload") or {}
    errors = upload.get("errors") or []
    count = upload.get("errorCount", attrs.get("errorCount"))
    batch_id = data.get("id")
    return (
        [e for e in errors if isinstance(e, dict)],
        int(count) if isinstance(count, int) else None,
        str(batch_id) if batch_id is not None else None,
    )


def map_upload_errors(
    records: list[Record], body: Any, *, whole_request_refused: bool = False
) -> tuple[list[Rejection], list[Unattributed], int, str | None]:
    """Map an upload answer's per-line errors back to source records.

    Returns ``(named rejections, unattributed, accepted, batch id)``. The API
    gives one example per message per request; the other occurrences are
    unattributed, placed within the request's source line range.
    """
    errors, error_count, batch_id = _upload_errors(body)
    rejections: list[Rejection] = []
    unattributed: list[Unattributed] = []
    named: set[int] = set()
    total = 0
    for err in errors:
        message = str(err.get("message") or "rejected by the API")
        occurrences = err.get("occurrences")
        occurrences = int(occurrences) if isinstance(occurrences, int) else 1
        total += occurrences
        example = err.get("example") or {}
        line_no = example.get("lineNumber") if isinstance(example, dict) else None
        hits = 0
        if isinstance(line_no, int) and 1 <= line_no <= len(records) and line_no not in named:
            named.add(line_no)
            rejections.append(Rejection(records[line_no - 1], STAGE_UPLOAD, message))
            hits = 1
        if occurrences > hits:
            source, first, last = _span(records)
            unattributed.append(
                Unattributed(message, occurrences - hits, source, first, last, batch_id)
            )
    if error_count is None or error_count < total:
        error_count = total
    if whole_request_refused:
        # Every product of a refused request is rejected, named or not.
        missing = len(records) - len(rejections) - sum(u.count for u in unattributed)
        if missing > 0:
            source, first, last = _span(records)
            message = unattributed[0].message if unattributed else "request refused by the API"
            unattributed.append(Unattributed(message, missing, source, first, last, batch_id))
        return rejections, unattributed, 0, batch_id
    error_count = min(error_count, len(records))
    # Keep the accounting whole even if the API's counts disagree with its list.
    listed = len(rejections) + sum(u.count for u in unattributed)
    error_count = max(error_count, listed)
    return rejections, unattributed, len(records) - error_count, batch_id


class StreamUploader:
    """Sends chunks to ``/streams/{id}/products`` with the retry table applied.

    Shared by every chunk of one run: one pacer (per stream), one adaptive
    concurrency limit. ``build`` turns a chunk into the request body as sent
    (encoded and compressed) and is used again when a 413 splits a chunk or
    ``pinpoint`` re-sends a subset.
    """

    def __init__(
        self,
        transport: HttpTransport,
        stream_id: str,
        *,
        content_type: str,
        content_encoding: str | None,
        build: PayloadBuilder,
        pacer: Pacer,
        limit: AdaptiveLimit,
        policy: RetryPolicy,
        pinpoint: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.stream_id = stream_id
        self.path = stream_products_path(stream_id)
        self.headers = {"Content-Type": content_type, "Accept": JSONAPI}
        if content_encoding:
            self.headers["Content-Encoding"] = content_encoding
        self.build = build
        self.pacer = pacer
        self.limit = limit
        self.policy = policy
        self.pinpoint = pinpoint
        self._clock = clock
        self.pinpoint_requests = 0
        self.pinpoint_bytes = 0

    def __repr__(self) -> str:
        return f"StreamUploader(stream={self.stream_id!r}, {self.pacer!r}, {self.limit!r})"

    def _observe(self, resp: Response) -> None:
        # The ratelimit-* headers correct the pacer: nothing left in this
        # window means no request before it resets (capped: clocks differ).
        if resp.headers.get("ratelimit-remaining") == "0":
            wait = rate_limit_wait({"ratelimit-reset": resp.headers.get("ratelimit-reset", "")})
            if wait:
                self.pacer.pause_until(self._clock() + min(wait, 1.0))

    async def _post(self, payload: bytes, outcome: Outcome) -> Response:
        """One paced request; retries per the table until a final answer.

        Returns the final answer (2xx, 413 or 422); raises for the rest.
        """
        started = self._clock()
        deadline = started + self.policy.deadline_s
        lock_deadline: float | None = None
        failures = lock_waits = 0
        last: BulkpushError | None = None
        while True:
            # A concurrency slot first, then the rate slot: a request that took
            # its rate slot and then waited for a free connection would go out
            # late, together with the next one (a burst the API counts).
            await self.limit.acquire()
            self.limit.parked += 1
            try:
                await self.pacer.acquire()
            except BaseException:
                await self.limit.release(ok=False)
                raise
            finally:
                self.limit.parked -= 1
            ok = backpressure = False
            delay = 0.0
            try:
                outcome.attempts += 1
                outcome.bytes_sent += len(payload)
                resp = await self.transport.request(
                    "POST", self.path, body=payload, headers=self.headers
                )
            except TransportError as exc:
                backpressure = True
                failures += 1
                last = exc
            else:
                self._observe(resp)
                status = resp.status
                if status != 429:
                    self.pacer.answered()
                if status in (200, 201, 202, 413, 422):
                    ok = status != 413
                    return resp
                err = error_for_status(resp, upload=True)
                if status == 429:
                    backpressure = True
                    outcome.throttled += 1
                    self.pacer.throttled()
                    wait = min(
                        err.retry_after if err.retry_after is not None else 1.0,
                        self.policy.max_rate_limit_wait_s,
                    )
                    self.pacer.pause_until(self._clock() + wait)
                    if self._clock() + wait > deadline:
                        raise RetriesExhausted(
                            f"stream {self.stream_id}: still throttled after "
                            f"{self.policy.deadline_s:.0f} s",
                            last=err,
                            attempts=outcome.attempts,
                        ) from err
                    continue
                if status == 423:
                    backpressure = True
                    now = self._clock()
                    if lock_deadline is None:
                        lock_deadline = now + self.policy.lock_deadline_s
                    if now >= lock_deadline:
                        raise StreamLocked(
                            f"stream {self.stream_id} stayed locked (423) for "
                            f"{self.policy.lock_deadline_s:.0f} s",
                            status=423,
                            method="POST",
                            url=self.path,
                        ) from err
                    lock_waits += 1
                    delay = backoff_delay(
                        lock_waits,
                        base=self.policy.lock_backoff_base_s,
                        cap=self.policy.lock_backoff_max_s,
                    )
                    delay = max(delay, self.policy.lock_backoff_base_s / 2)
                    last = err
                elif err.retriable:
                    backpressure = True
                    failures += 1
                    last = err
                else:
                    raise err
            finally:
                await self.limit.release(ok=ok, backpressure=backpressure)
            if lock_waits and delay:
                await asyncio.sleep(delay)
                continue
            if failures >= self.policy.max_attempts or self._clock() >= deadline:
                raise RetriesExhausted(
                    f"stream {self.stream_id}: gave up after {outcome.attempts} attempts: {last}",
                    last=last,
                    attempts=outcome.attempts,
                ) from last
            await asyncio.sleep(
                backoff_delay(
                    failures, base=self.policy.backoff_base_s, cap=self.policy.backoff_max_s
                )
            )

    async def send(self, chunk: Chunk, payload: bytes) -> list[Outcome]:
        """Deliver one chunk; one outcome per request that carried its products.

        Raises :class:`ChunkFailed` when the run must stop (bad token, disabled
        stream, lock or retries past their deadline, any other refusal that
        would hit every chunk alike).
        """
        outcome = Outcome(chunk=chunk)
        try:
            resp = await self._post(payload, outcome)
        except APIError as exc:
            outcome.status = exc.status
            outcome.not_sent = len(chunk)
            outcome.error = str(exc)
            raise ChunkFailed(str(exc), outcome=outcome, cause=exc) from exc
        except BulkpushError as exc:
            outcome.not_sent = len(chunk)
            outcome.error = str(exc)
            raise ChunkFailed(str(exc), outcome=outcome, cause=exc) from exc
        outcome.status = resp.status
        if resp.status == 413:
            if len(chunk) < 2:
                outcome.not_sent = len(chunk)
                err = PayloadTooLarge(
                    f"one product of {chunk.nbytes} bytes is over the request size limit (413)",
                    status=413,
                )
                outcome.error = str(err)
                raise ChunkFailed(str(err), outcome=outcome, cause=err)
            outcome.rejections = []
            outcomes: list[Outcome] = []
            # The 413 request spent attempts; account them on the first half.
            half = len(chunk) // 2
            for i, part in enumerate((chunk.records[:half], chunk.records[half:])):
                sub = Chunk(seq=chunk.seq, records=part, nbytes=0)
                sub_payload = await self.build(sub)
                sub_outcomes = await self.send(sub, sub_payload)
                if i == 0 and sub_outcomes:
                    sub_outcomes[0].attempts += outcome.attempts
                    sub_outcomes[0].bytes_sent += outcome.bytes_sent
                    sub_outcomes[0].throttled += outcome.throttled
                outcomes.extend(sub_outcomes)
            return outcomes
        body = resp.json()
        rejections, unattributed, accepted, batch_id = map_upload_errors(
            chunk.records, body, whole_request_refused=resp.status == 422
        )
        if resp.status == 422 and not rejections and not unattributed:
            source, first, last = _span(chunk.records)
            _, titles = _titles(body)
            unattributed = [
                Unattributed(titles or "request refused (422)", len(chunk), source, first, last)
            ]
        outcome.batch_id = batch_id
        outcome.accepted = accepted
        outcome.rejections = rejections
        outcome.unattributed = unattributed
        if self.pinpoint and unattributed:
            await self._pinpoint(outcome)
        return [outcome]

    async def _pinpoint(self, outcome: Outcome) -> None:
        """Find every rejected product of ``outcome`` by re-sending halves.

        Uploads are upserts by id, so re-sending a product the API accepted
        is harmless. Each subset's answer names one product per message; a
        subset with more errors than names is split again. The requests and
        bytes spent are counted in ``pinpoint_requests``/``pinpoint_bytes``.
        """
        named = {id(r.record) for r in outcome.rejections}
        pending: list[list[Record]] = [[r for r in outcome.chunk.records if id(r) not in named]]
        found: list[Rejection] = []
        while pending:
            subset = pending.pop()
            if not subset:
                continue
            probe = Outcome(chunk=Chunk(seq=outcome.chunk.seq, records=subset, nbytes=0))
            payload = await self.build(probe.chunk)
            try:
                resp = await self._post(payload, probe)
            except BulkpushError:
                break  # pinpointing is best effort: what stays unknown stays unattributed
            finally:
                self.pinpoint_requests += probe.attempts
                self.pinpoint_bytes += probe.bytes_sent
            if resp.status == 413:
                half = len(subset) // 2
                pending.extend([subset[:half], subset[half:]])
                continue
            rej, unatt, _, _ = map_upload_errors(
                subset, resp.json(), whole_request_refused=resp.status == 422
            )
            found.extend(rej)
            left = sum(u.count for u in unatt)
            if left == 0:
                continue
            rest = [r for r in subset if id(r) not in {id(x.record) for x in rej}]
            messages = {u.message for u in unatt}
            if len(rest) == left and len(messages) == 1:
                message = next(iter(messages))
                found.extend(Rejection(r, STAGE_UPLOAD, message) for r in rest)
                continue
            if len(rest) <= 1:
                if rest and len(messages) == 1:
                    found.append(Rejection(rest[0], STAGE_UPLOAD, next(iter(messages))))
                continue
            half = len(rest) // 2
            pending.extend([rest[:half], rest[half:]])
        # Keep the accounting whole: a found product replaces one unattributed
        # occurrence of its message, never more than the API counted.
        remaining: Counter[str] = Counter()
        for u in outcome.unattributed:
            remaining[u.message] += u.count
        known = {id(r.record) for r in outcome.rejections}
        for hit in found:
            if id(hit.record) not in known and remaining[hit.message] > 0:
                known.add(id(hit.record))
                remaining[hit.message] -= 1
                outcome.rejections.append(hit)
        template = {u.message: u for u in outcome.unattributed}
        outcome.unattributed = [
            replace(template[m], count=c) for m, c in remaining.items() if c > 0
        ]
        outcome.rejections.sort(key=lambda r: (r.record.source, r.record.line))


def _titles(body: Any) -> tuple[list[dict[str, Any]], str]:
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        errs = [e for e in body["errors"] if isinstance(e, dict)]
        return errs, "; ".join(str(e.get("title") or e.get("detail") or "") for e in errs)
    return [], ""


# --- management ------------------------------------------------------------------------


class StreamManager:
    """Stream management, deletes and batch status (paced at the published rates)."""

    def __init__(self, transport: HttpTransport, *, policy: RetryPolicy | None = None) -> None:
        self.transport = transport
        self.policy = policy or RetryPolicy()
        # "All other endpoints (the limit applies to each endpoint individually): 5/s".
        self._pacers: dict[str, Pacer] = {}

    def _pacer(self, key: str, rate: float = STREAM_API.other_rate_per_s) -> Pacer:
        pacer = self._pacers.get(key)
        if pacer is None:
            pacer = self._pacers[key] = Pacer(rate * RATE_SAFETY)
        return pacer

    async def _call(self, method: str, path: str, key: str, **kwargs: Any) -> Response:
        headers = {"Accept": JSONAPI, **kwargs.pop("headers", {})}
        rate = kwargs.pop("rate", STREAM_API.other_rate_per_s)
        return await self.transport.call(
            method,
            path,
            pacer=self._pacer(key, rate),
            policy=self.policy,
            headers=headers,
            **kwargs,
        )

    async def get_stream(self, stream_id: str) -> Stream:
        resp = await self._call("GET", f"/streams/{quote(str(stream_id), safe='')}", "get")
        return Stream.from_jsonapi((resp.json() or {}).get("data") or {})

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
        doc = {"data": {"type": "stream", "attributes": {"name": name, "type": type}}}
        resp = await self._call(
            "POST", "/streams", "create", body=orjson.dumps(doc), headers={"Content-Type": JSONAPI}
        )
        return Stream.from_jsonapi((resp.json() or {}).get("data") or {})

    async def rename_stream(self, stream_id: str, name: str) -> Stream:
        doc = {"data": {"id": str(stream_id), "type": "stream", "attributes": {"name": name}}}
        resp = await self._call(
            "PATCH",
            f"/streams/{quote(str(stream_id), safe='')}",
            "rename",
            body=orjson.dumps(doc),
            headers={"Content-Type": JSONAPI},
        )
        return Stream.from_jsonapi((resp.json() or {}).get("data") or {})

    async def delete_stream(self, stream_id: str) -> None:
        await self._call("DELETE", f"/streams/{quote(str(stream_id), safe='')}", "delete")

    async def delete_products(
        self, stream_id: str, ids: Iterable[str | int], *, per_request: int = 10_000
    ) -> DeleteResult:
        """Delete products by id: an NDJSON body of ``{"id": ...}`` lines, in batches."""
        path = stream_products_path(stream_id)
        total = requests = 0
        status = 0
        batch: list[bytes] = []

        async def flush() -> None:
            nonlocal requests, status
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
            batch.clear()

        for pid in ids:
            batch.append(orjson.dumps({"id": pid}))
            total += 1
            if len(batch) >= per_request:
                await flush()
        await flush()
        return DeleteResult(requested=total, status=status, requests=requests)

    async def delete_all_products(self, stream_id: str) -> DeleteResult:
        resp = await self._call(
            "DELETE",
            stream_products_path(stream_id),
            "products",
            params={"all": "true"},
            rate=STREAM_API.products_rate_per_s,
        )
        return DeleteResult(requested=0, status=resp.status)

    async def delete_product(self, stream_id: str, product_id: str) -> DeleteResult:
        path = f"{stream_products_path(stream_id)}/{quote(str(product_id), safe='')}"
        resp = await self._call("DELETE", path, "products", rate=STREAM_API.products_rate_per_s)
        return DeleteResult(requested=1, status=resp.status)

    async def batch(self, stream_id: str, batch_id: str) -> Batch:
        path = f"/streams/{quote(str(stream_id), safe='')}/batches/{quote(str(batch_id), safe='')}"
        resp = await self._call("GET", path, "batches", rate=STREAM_API.batches_rate_per_s)
        return Batch.from_jsonapi(resp.json())
