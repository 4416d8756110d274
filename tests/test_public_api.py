"""The public surface is curated: this test pins it (adding a name is a decision)."""

from __future__ import annotations

import bulkpush

EXPECTED = {
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
}


def test_all_is_pinned() -> None:
    assert set(bulkpush.__all__) == EXPECTED


def test_every_name_in_all_exists() -> None:
    for name in bulkpush.__all__:
        assert hasattr(bulkpush, name), name
