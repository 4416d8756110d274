"""bulkpush: push product catalogs into product-data platforms, fast, losing nothing."""

from __future__ import annotations

from bulkpush._version import __version__
from bulkpush.errors import (
    APIError,
    AuthError,
    BulkpushError,
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

__all__ = [
    "PLATFORM",
    "STREAM_API",
    "APIError",
    "AuthError",
    "BulkpushError",
    "Chunk",
    "ConfigError",
    "Conflict",
    "InvalidRequest",
    "NotFound",
    "Outcome",
    "PayloadTooLarge",
    "PlatformApiLimits",
    "RateLimited",
    "Record",
    "Rejection",
    "RequestTimeout",
    "RetriesExhausted",
    "RunStopped",
    "ServerError",
    "SourceError",
    "StreamApiLimits",
    "StreamDisabled",
    "StreamLocked",
    "TransportError",
    "Unattributed",
    "__version__",
]
