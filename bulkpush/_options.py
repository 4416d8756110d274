"""The options of a push: one frozen value object the library, the CLI and the worker build."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from bulkpush._chunking import BodyFormat
from bulkpush._compression import CompressionOptions
from bulkpush._concurrency import ConcurrencyOptions
from bulkpush._retry import RetryPolicy
from bulkpush._validation import ValidationOptions
from bulkpush.errors import ConfigError
from bulkpush.sources import Format

__all__ = ["PushOptions", "StreamType"]

StreamType = Literal["chunked", "referenced"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PushOptions:
    """Everything a push can be told; the CLI and the worker build this same object.

    For every target: ``format`` of the sources (None: detected);
    ``csv_delimiter``: one character separating the cells of CSV sources
    (None: sniffed from each header line, the most frequent of ``,`` ``;``
    tab ``|``); ``validation``; ``compression`` (None: the target's choice);
    ``max_products_per_request`` (None: the target's limit);
    ``request_bytes``: the body size (before compression) a chunk is cut at
    (None: the target's choice); ``rate``: requests per second for the
    target's upload quota (None: the quota's own pacing, e.g. 97.5 % of the
    Stream API's 30/s, slower for a while after a 429); ``retry``;
    ``concurrency``; ``rejects_path``; ``pinpoint_rejects`` (find products
    the API rejected without naming them, by re-sending halves);
    ``max_examples`` per error in the report; ``workers``: processes that
    read, check, cut and gzip plain NDJSON files (None: the cores this
    process may use when 3 or more, else 1; 1: no extra process, all in this
    one: see ``bulkpush._procs.default_workers``), used for a file of at
    least ``process_min_bytes`` (32 MiB: below it, starting processes costs
    more than it saves). ``request_time_s``: the time a request should take,
    body and answer (5 s: half the 10 s after which the API ends a request);
    the bytes in flight and the size of requests follow the uplink's
    measured throughput to keep it (``bulkpush._link``).

    Read by the Productsup Stream API target only: ``stream_type`` (None
    asks the API), ``body_format`` of referenced streams (chunked streams
    take NDJSON only), and ``referenced_min_bytes``/``referenced_max_bytes``
    (so tests can use small referenced catalogs against an emulator
    configured the same way).
    """

    format: Format | None = None
    csv_delimiter: str | None = None
    validation: ValidationOptions = field(default_factory=ValidationOptions)
    compression: CompressionOptions | None = None
    max_products_per_request: int | None = None
    request_bytes: int | None = None
    rate: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: ConcurrencyOptions = field(default_factory=ConcurrencyOptions)
    rejects_path: str | None = None
    pinpoint_rejects: bool = False
    max_examples: int = 5
    stream_type: StreamType | None = None
    body_format: BodyFormat | None = None
    referenced_min_bytes: int | None = None
    referenced_max_bytes: int | None = None
    workers: int | None = None
    process_min_bytes: int = 32 << 20
    request_time_s: float = 5.0

    def __post_init__(self) -> None:
        d = self.csv_delimiter
        if d is not None and (len(d) != 1 or d in '"\r\n'):
            raise ConfigError(
                f"csv_delimiter must be one character, not a quote or a line break: {d!r}"
            )
        if self.max_products_per_request is not None and self.max_products_per_request < 1:
            raise ConfigError("max_products_per_request must be at least 1")
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise ConfigError("rate must be a positive number")
        if self.request_bytes is not None and self.request_bytes < 1:
            raise ConfigError("request_bytes must be positive")
        if self.workers is not None and not 1 <= self.workers <= 256:
            raise ConfigError(f"workers must lie between 1 and 256, not {self.workers}")
        if self.process_min_bytes < 0:
            raise ConfigError("process_min_bytes must not be negative")
        if not (math.isfinite(self.request_time_s) and 0 < self.request_time_s <= 3600):
            raise ConfigError(
                f"request_time_s must lie between 0 and 3600 seconds, not {self.request_time_s}"
            )
