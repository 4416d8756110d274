"""Every published limit of the APIs bulkpush talks to, as data.

Each value names the section of the API's public reference it comes from
(or, where the reference is silent, docs/architecture.md, "Limits the
reference does not state"). The client and the emulator both read
these numbers, so a limit is written down exactly once. This module imports
nothing from the rest of bulkpush.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "PLATFORM",
    "STREAM_API",
    "PlatformApiLimits",
    "StreamApiLimits",
]

MB = 1_000_000  # the reference says "MB"; we read it as 10**6 bytes (the stricter of the two
# for the 10 MB minimum is 2**20, so referenced chunks aim well above either reading).


@dataclass(frozen=True, slots=True)
class StreamApiLimits:
    """Limits of the Productsup Stream API (productsup-stream-and-platform-api.md)."""

    # "Chunked type": "The maximum recommended request size is 10,000 products."
    max_products_per_request: int = 10_000
    # "Chunked type": "Our solution automatically rejects any product exceeding 1MB."
    max_product_bytes: int = 1 * MB
    # "Invalid batch" table: "max line length is 2097152 bytes" (422 Product payload is too large)
    max_line_bytes: int = 2_097_152
    # "Referenced type": "The recommended request size is from 10 to 200 MB.
    # You request can't be less than 10 MB."
    referenced_min_request_bytes: int = 10 * MB
    referenced_max_request_bytes: int = 200 * MB
    # docs/architecture.md, "Limits the reference does not state": a request body is
    # at most 200 MB, compressed or not.
    max_request_bytes: int = 200 * MB
    # "Rate limiting": /streams/{streamId}/products: 30 requests per second per {streamId}
    products_rate_per_s: float = 30.0
    # "Rate limiting": /streams/{streamId}/batches: 100 requests per second per {streamId}
    batches_rate_per_s: float = 100.0
    # "Rate limiting": /* all other endpoints, each individually: 5 requests per second
    other_rate_per_s: float = 5.0
    # "Streams" / "Stream creation": a maximum of 100 Streams per account.
    max_streams_per_account: int = 100
    # "Stream naming": length from 3 to 255 characters, unique.
    stream_name_min_chars: int = 3
    stream_name_max_chars: int = 255
    # "List Stream": a maximum of 10 streams per page and a minimum of 1.
    list_page_max: int = 10
    list_page_min: int = 1
    # docs/architecture.md, "Limits the reference does not state": the server ends a
    # request that takes over 10 s with a server error.
    server_request_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class PlatformApiLimits:
    """Limits of the Productsup Platform API (productsup-stream-and-platform-api.md)."""

    # "Rate limiting" (Platform API): upload/commit/discard: 15 requests per second.
    batch_upload_rate_per_s: float = 15.0
    # "Rate limiting": /platform/v2/process/{siteIdentifier}: 1 request per site per 5 minutes.
    process_per_site_period_s: float = 300.0
    # "Process data": only a single process runs per site; up to 1 more may be queued.
    process_running_per_site: int = 1
    process_queued_per_site: int = 1
    # "Product Data (Write)": the amount of products per upload request is limited to 10000.
    batch_upload_max_products: int = 10_000
    # "Uploading": batchId is exactly 32 characters.
    batch_id_chars: int = 32
    # "Rate limiting": /* all other endpoints: 5 requests per second.
    other_rate_per_s: float = 5.0


STREAM_API = StreamApiLimits()
PLATFORM = PlatformApiLimits()
