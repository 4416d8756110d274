"""bulkpush: push product catalogs into product-data platforms, fast, losing nothing.

The curated public API: every type a caller passes or receives. The names
are listed in the README ("Public API"); ``tests/test_public_api.py`` pins
``__all__`` to that list.
"""

from __future__ import annotations

from bulkpush._compression import CompressionOptions
from bulkpush._concurrency import ConcurrencyOptions
from bulkpush._engine import Engine, PacerFactory
from bulkpush._http import HttpTransport, Request, Response, Secret, TransportOptions
from bulkpush._options import PushOptions, StreamType
from bulkpush._pipeline import Event, Pipeline, RecordHook, Source
from bulkpush._quota import Pacer, Quota, Window
from bulkpush._records import Chunk, Outcome, Record, Rejection, Unattributed
from bulkpush._retry import (
    Delivered,
    Executor,
    Fatal,
    ItemError,
    Retry,
    RetryPolicy,
    Split,
    Verdict,
)
from bulkpush._target import Plan, Target
from bulkpush._validation import ValidationOptions
from bulkpush._version import __version__
from bulkpush.client import StreamClient
from bulkpush.errors import (
    APIError,
    AuthError,
    BulkpushError,
    CatalogTooSmall,
    ChunkFailed,
    ConfigError,
    Conflict,
    Interrupted,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    QueueError,
    QuotaExhausted,
    RateLimited,
    RequestTimeout,
    ResponseTooLarge,
    RetriesExhausted,
    RunStopped,
    ServerError,
    SourceError,
    StreamDisabled,
    StreamLocked,
    TLSError,
    TransportError,
)
from bulkpush.limits import STREAM_API, StreamApiLimits
from bulkpush.report import Report
from bulkpush.sources import FileRange
from bulkpush.targets.productsup_stream import (
    Batch,
    DeleteResult,
    Stream,
    StreamManager,
    StreamTarget,
)

__all__ = [
    "STREAM_API",
    "APIError",
    "AuthError",
    "Batch",
    "BulkpushError",
    "CatalogTooSmall",
    "Chunk",
    "ChunkFailed",
    "CompressionOptions",
    "ConcurrencyOptions",
    "ConfigError",
    "Conflict",
    "DeleteResult",
    "Delivered",
    "Engine",
    "Event",
    "Executor",
    "Fatal",
    "FileRange",
    "HttpTransport",
    "Interrupted",
    "InvalidRequest",
    "ItemError",
    "NotFound",
    "Outcome",
    "Pacer",
    "PacerFactory",
    "PayloadTooLarge",
    "Pipeline",
    "Plan",
    "PushOptions",
    "QueueError",
    "Quota",
    "QuotaExhausted",
    "RateLimited",
    "Record",
    "RecordHook",
    "Rejection",
    "Report",
    "Request",
    "RequestTimeout",
    "Response",
    "ResponseTooLarge",
    "RetriesExhausted",
    "Retry",
    "RetryPolicy",
    "RunStopped",
    "Secret",
    "ServerError",
    "Source",
    "SourceError",
    "Split",
    "Stream",
    "StreamApiLimits",
    "StreamClient",
    "StreamDisabled",
    "StreamLocked",
    "StreamManager",
    "StreamTarget",
    "StreamType",
    "TLSError",
    "Target",
    "TransportError",
    "TransportOptions",
    "Unattributed",
    "ValidationOptions",
    "Verdict",
    "Window",
    "__version__",
]
