"""The Productsup Stream API: a push target, and its management calls.

- :class:`StreamTarget`: uploads to a chunked or referenced stream (the
  target protocol: preflight and plan, upload requests, answers).
- :class:`StreamManager`: streams (create, list, rename, delete), deletes of
  products, batch status.
- The wire models :class:`Stream`, :class:`Batch`, :class:`DeleteResult`.
"""

from __future__ import annotations

from bulkpush.targets.productsup_stream._manage import StreamManager
from bulkpush.targets.productsup_stream._target import (
    DEFAULT_CHUNKED_REQUEST_BYTES,
    DEFAULT_REFERENCED_REQUEST_BYTES,
    KIND,
    StreamTarget,
    products_quota,
)
from bulkpush.targets.productsup_stream._wire import (
    JSONAPI,
    Batch,
    DeleteResult,
    Stream,
    StreamType,
    products_path,
)

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_CHUNKED_REQUEST_BYTES",
    "DEFAULT_REFERENCED_REQUEST_BYTES",
    "JSONAPI",
    "KIND",
    "Batch",
    "DeleteResult",
    "Stream",
    "StreamManager",
    "StreamTarget",
    "StreamType",
    "products_path",
    "products_quota",
]

DEFAULT_API_URL = "https://stream-api.productsup.com"
