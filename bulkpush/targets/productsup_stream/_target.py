"""The Stream API as a push target: preflight, plan, upload requests, answers.

Productsup Stream API reference, "Uploading Data" and "Rate limiting":

======  =====================================================================
200/201 accepted
202     partial: products named in ``stages.upload.errors`` are rejected
2xx     whose body is not a batch document (``{"data": {...}}``): an anomaly
        (a proxy's page, a truncated answer), retried as transient, never
        counted as accepted
422     the whole request refused: its products are rejected with the reason
429     wait for ``ratelimit-reset`` / ``Retry-After`` (the pacer pauses), retry
423     stream locked: slow backoff until ``RetryPolicy.lock_deadline_s``
403     stream disabled: the run stops
401     bad token: the run stops (the preflight catches it before reading)
413     split the chunk and send the halves
5xx     and network errors / timeouts: full-jitter backoff, bounded attempts
======  =====================================================================
"""

from __future__ import annotations

from bulkpush._compression import CompressionOptions
from bulkpush._http import Request, Response
from bulkpush._options import PushOptions
from bulkpush._quota import Quota, Window
from bulkpush._retry import (
    Delivered,
    Executor,
    Fatal,
    Retry,
    Split,
    Verdict,
    classify_status,
    error_for_status,
    error_titles,
)
from bulkpush._target import Plan
from bulkpush.errors import (
    APIError,
    CatalogTooSmall,
    ConfigError,
    PayloadTooLarge,
    StreamDisabled,
    StreamLocked,
)
from bulkpush.limits import STREAM_API
from bulkpush.targets.productsup_stream._manage import StreamManager
from bulkpush.targets.productsup_stream._wire import (
    JSONAPI,
    StreamType,
    is_batch_document,
    products_path,
    upload_errors,
)

__all__ = [
    "DEFAULT_CHUNKED_REQUEST_BYTES",
    "DEFAULT_REFERENCED_REQUEST_BYTES",
    "KIND",
    "StreamTarget",
    "products_quota",
]

KIND = "productsup-stream"
# Chunked streams: products per request are capped at 10,000 by the API; the
# byte target keeps a request well under the server's 10 s timeout on a slow
# uplink (16 MB before compression is about 3 MB gzipped).
DEFAULT_CHUNKED_REQUEST_BYTES = 16 * 1024 * 1024
# Referenced streams: 10-200 MB per request; aim in the middle.
DEFAULT_REFERENCED_REQUEST_BYTES = 50_000_000


def products_quota(stream_id: str) -> Quota:
    """A stream's uploads: 30 requests per second ("Rate limiting", ``/products``)."""
    return Quota(
        f"{KIND}:{stream_id}:products", (Window(int(STREAM_API.products_rate_per_s), 1.0),)
    )


class StreamTarget:
    """Uploads to one stream (``/streams/{id}/products``).

    ``manager`` serves the preflight (``GET /streams/{id}``: a bad token or a
    missing stream fails before the catalog is read; the stream's type comes
    from the API); without one, the push's executor is used with fresh pacers.
    """

    kind = KIND

    def __init__(self, stream_id: str, *, manager: StreamManager | None = None) -> None:
        self.stream_id = str(stream_id)
        self.manager = manager
        self.path = products_path(self.stream_id)

    def __repr__(self) -> str:
        return f"StreamTarget({self.stream_id!r})"

    async def prepare(
        self, executor: Executor, *, options: PushOptions, total_bytes: int | None
    ) -> Plan:
        manager = self.manager or StreamManager(executor)
        info = await manager.get_stream(self.stream_id, executor=executor)
        stream_type: StreamType = options.stream_type or (
            "referenced" if info.type == "referenced" else "chunked"
        )
        if options.stream_type and info.type and options.stream_type != info.type:
            raise ConfigError(
                f"stream {self.stream_id} is a {info.type} stream, not {options.stream_type}: "
                "drop --stream-type or use a matching stream"
            )
        if stream_type == "referenced":
            return self._referenced_plan(options, total_bytes)
        return self._chunked_plan(options)

    def _chunked_plan(self, options: PushOptions) -> Plan:
        if options.body_format not in (None, "ndjson"):
            raise ConfigError("chunked streams take NDJSON only (application/x-ndjson)")
        limit = STREAM_API.max_products_per_request
        count = options.max_products_per_request or limit
        if count > limit:
            raise ConfigError(f"max_products_per_request must be 1..{limit}, got {count}")
        return Plan(
            destination=self.stream_id,
            label=f"stream {self.stream_id}",
            quota=products_quota(self.stream_id),
            max_count=count,
            max_bytes=STREAM_API.max_request_bytes,
            target_bytes=options.request_bytes or DEFAULT_CHUNKED_REQUEST_BYTES,
            max_record_bytes=STREAM_API.max_product_bytes,
            compression=options.compression or CompressionOptions(codec="gzip"),
        )

    def _referenced_plan(self, options: PushOptions, total_bytes: int | None) -> Plan:
        low = options.referenced_min_bytes or STREAM_API.referenced_min_request_bytes
        high = options.referenced_max_bytes or STREAM_API.referenced_max_request_bytes
        if total_bytes is not None and total_bytes < low:
            raise CatalogTooSmall(
                f"the catalog is {total_bytes:,} bytes; a referenced stream needs at least "
                f"{low:,} bytes per request: push it to a chunked stream instead",
                nbytes=total_bytes,
                min_bytes=low,
            )
        target = options.request_bytes or DEFAULT_REFERENCED_REQUEST_BYTES
        # gzip by default, as chunked streams: it cuts the bytes a slow uplink
        # carries about 4x (benchmarks, "slow links"), so a 10 MB request fits
        # the API's 10 s where uncompressed it may not. The reference does not
        # say whether the 10 MB minimum counts the body before or after gzip:
        # every body is 10 MB or more before it (min_bytes counts the body as
        # cut), the reading docs/emulator.md (assumption 8) and the README
        # state; --compression none meets both readings.
        return Plan(
            destination=self.stream_id,
            label=f"stream {self.stream_id}",
            quota=products_quota(self.stream_id),
            max_count=10**9,
            max_bytes=high,
            min_bytes=low,
            target_bytes=max(min(target, high), low),
            max_record_bytes=STREAM_API.max_product_bytes,
            body_format=options.body_format or "ndjson",
            compression=options.compression or CompressionOptions(),
            inflight_bytes=2 * high,
        )

    def upload(self, body: bytes, plan: Plan) -> Request:
        content_type = "application/json" if plan.body_format == "json" else "application/x-ndjson"
        headers = {"Content-Type": content_type, "Accept": JSONAPI}
        if plan.compression.content_encoding:
            headers["Content-Encoding"] = plan.compression.content_encoding
        return Request(method="POST", path=self.path, body=body, headers=headers)

    def classify(self, resp: Response) -> Verdict:
        status = resp.status
        if status in (200, 201, 202, 422):
            body = resp.json()
            if status != 422 and not is_batch_document(body):
                # Nothing says which products the API took: counting them
                # accepted could lose them all.
                return Retry(
                    "transient",
                    APIError(
                        f"POST {self.path} answered {status} with a body that is not the "
                        f"Stream API's batch document ({_describe(resp)})",
                        status=status,
                        method=resp.method or "POST",
                        url=resp.url or self.path,
                        body=body,
                    ),
                )
            errors, count, batch_id = upload_errors(body)
            if status != 422:
                return Delivered(status, errors, rejected=count, batch_id=batch_id)
            reason = None if errors else (error_titles(body)[1] or "request refused (422)")
            return Delivered(status, errors, refused=True, reason=reason, batch_id=batch_id)
        if status == 413:
            return Split(error_for_status(resp, PayloadTooLarge))
        if status == 423:
            return Retry(
                "busy",
                StreamLocked(
                    f"stream {self.stream_id} stayed locked (423)",
                    status=423,
                    method="POST",
                    url=self.path,
                ),
            )
        if status == 403:
            return Fatal(error_for_status(resp, StreamDisabled))
        return classify_status(resp, ok=())


def _describe(resp: Response) -> str:
    kind = resp.headers.get("Content-Type", "no Content-Type").split(";")[0].strip()
    if not resp.body:
        return f"{kind}, empty"
    if resp.json() is None:
        return f"{kind}, {len(resp.body):,} bytes, not JSON"
    return f"{kind}, JSON without a data object"
