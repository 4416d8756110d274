"""bulkpush: push product catalogs into product-data platforms, fast, losing nothing.

The curated public API: every type a caller passes or receives. The names
are listed in the README ("Public API"); ``tests/test_public_api.py`` pins
``__all__`` to that list.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Imported when first used (PEP 562): a process that needs one module (a
# reading process of ``bulkpush._procs``) does not load the HTTP client, the
# CLI toolkit and the rest; ``from bulkpush import X`` works as before.
_LAZY: dict[str, str] = {
    "CompressionOptions": "bulkpush._compression",
    "ConcurrencyOptions": "bulkpush._concurrency",
    "Engine": "bulkpush._engine",
    "PacerFactory": "bulkpush._engine",
    "HttpTransport": "bulkpush._http",
    "Request": "bulkpush._http",
    "Response": "bulkpush._http",
    "Secret": "bulkpush._http",
    "TransportOptions": "bulkpush._http",
    "PushOptions": "bulkpush._options",
    "StreamType": "bulkpush._options",
    "Event": "bulkpush._pipeline",
    "Pipeline": "bulkpush._pipeline",
    "RecordHook": "bulkpush._pipeline",
    "Source": "bulkpush._pipeline",
    "Pacer": "bulkpush._quota",
    "Quota": "bulkpush._quota",
    "Window": "bulkpush._quota",
    "Chunk": "bulkpush._records",
    "Outcome": "bulkpush._records",
    "Record": "bulkpush._records",
    "Rejection": "bulkpush._records",
    "Unattributed": "bulkpush._records",
    "Delivered": "bulkpush._retry",
    "Executor": "bulkpush._retry",
    "Fatal": "bulkpush._retry",
    "ItemError": "bulkpush._retry",
    "Retry": "bulkpush._retry",
    "RetryPolicy": "bulkpush._retry",
    "Split": "bulkpush._retry",
    "Verdict": "bulkpush._retry",
    "Plan": "bulkpush._target",
    "Target": "bulkpush._target",
    "ValidationOptions": "bulkpush._validation",
    "__version__": "bulkpush._version",
    "StreamClient": "bulkpush.client",
    "APIError": "bulkpush.errors",
    "AuthError": "bulkpush.errors",
    "BulkpushError": "bulkpush.errors",
    "CatalogTooSmall": "bulkpush.errors",
    "ChunkFailed": "bulkpush.errors",
    "ConfigError": "bulkpush.errors",
    "Conflict": "bulkpush.errors",
    "Interrupted": "bulkpush.errors",
    "InvalidRequest": "bulkpush.errors",
    "NotFound": "bulkpush.errors",
    "PayloadTooLarge": "bulkpush.errors",
    "QueueError": "bulkpush.errors",
    "QuotaExhausted": "bulkpush.errors",
    "RateLimited": "bulkpush.errors",
    "RequestTimeout": "bulkpush.errors",
    "ResponseTooLarge": "bulkpush.errors",
    "RetriesExhausted": "bulkpush.errors",
    "RunStopped": "bulkpush.errors",
    "ServerError": "bulkpush.errors",
    "SourceError": "bulkpush.errors",
    "StreamDisabled": "bulkpush.errors",
    "StreamLocked": "bulkpush.errors",
    "TLSError": "bulkpush.errors",
    "TransportError": "bulkpush.errors",
    "STREAM_API": "bulkpush.limits",
    "StreamApiLimits": "bulkpush.limits",
    "Report": "bulkpush.report",
    "FileRange": "bulkpush.sources",
    "Batch": "bulkpush.targets.productsup_stream",
    "DeleteResult": "bulkpush.targets.productsup_stream",
    "Stream": "bulkpush.targets.productsup_stream",
    "StreamManager": "bulkpush.targets.productsup_stream",
    "StreamTarget": "bulkpush.targets.productsup_stream",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bulkpush' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
