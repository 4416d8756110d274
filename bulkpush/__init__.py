"""bulkpush: push product catalogs into product-data platforms, fast, losing nothing."""

from __future__ import annotations

from bulkpush._version import __version__
from bulkpush.client import PushOptions, StreamClient
from bulkpush.compression import CompressionOptions
from bulkpush.errors import (
    APIError,
    AuthError,
    BulkpushError,
    CatalogTooSmall,
    ConfigError,
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    RetriesExhausted,
    RunStopped,
    ServerError,
    SourceError,
    StreamDisabled,
    StreamLocked,
    TransportError,
)
from bulkpush.limits import PLATFORM, STREAM_API, PlatformApiLimits, StreamApiLimits
from bulkpush.records import Chunk, Outcome, Record, Rejection, Unattributed
from bulkpush.report import Report
from bulkpush.transport import ConcurrencyOptions, RetryPolicy, TransportOptions
from bulkpush.validation import ValidationOptions

__all__ = [
    "PLATFORM",
    "STREAM_API",
    "APIError",
    "AuthError",
    "BulkpushError",
    "CatalogTooSmall",
    "Chunk",
    "CompressionOptions",
    "ConcurrencyOptions",
    "ConfigError",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "Outcome",
    "PayloadTooLarge",
    "PlatformApiLimits",
    "PushOptions",
    "RateLimited",
    "Record",
    "Rejection",
    "Report",
    "RequestTimeout",
    "RetriesExhausted",
    "RetryPolicy",
    "RunStopped",
    "ServerError",
    "SourceError",
    "StreamApiLimits",
    "StreamClient",
    "StreamDisabled",
    "StreamLocked",
    "TransportError",
    "TransportOptions",
    "Unattributed",
    "ValidationOptions",
    "__version__",
]
