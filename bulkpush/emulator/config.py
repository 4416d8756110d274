"""The emulator's configuration: two small frozen value objects.

:class:`EmulatorConfig` is fixed when the emulator starts; :class:`Faults` can
also be changed per stream while it runs (``Emulator.set_faults`` or
``PUT /_emulator/streams/{id}/faults``). Defaults are the published limits of
``bulkpush.limits.STREAM_API``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from bulkpush.limits import STREAM_API

__all__ = ["EmulatorConfig", "Faults"]

_ERROR_STATUSES = frozenset({500, 502, 503, 504})


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """Faults injected into one stream's requests (or every stream's, as a default).

    All shares are drawn from a per-stream ``random.Random`` seeded with
    ``EmulatorConfig.seed`` and the stream id, so a run is repeatable.

    Attributes:
        error_rate: share (0..1) of ``/products`` requests answered ``error_status``
            before their body is stored.
        error_status: the 5xx status of those answers (500, 502, 503 or 504).
        error_after_store_rate: share (0..1) of ``/products`` uploads that are
            stored *and then* answered ``error_status``, as when a server fails
            after committing: a client that resends uploads the products twice.
        latency_s: seconds added before answering each ``/products`` request.
        drop_rate: share (0..1) of ``/products`` requests whose connection is
            closed after the first part of the body is read, without an answer.
        throttle_storm_s: every request on the stream's paths is answered 429 for
            this many seconds from the moment the faults are set.
        lock_s: every ``/products`` write on the stream is answered 423 for this
            many seconds from the moment the faults are set.
    """

    error_rate: float = 0.0
    error_status: int = 503
    error_after_store_rate: float = 0.0
    latency_s: float = 0.0
    drop_rate: float = 0.0
    throttle_storm_s: float = 0.0
    lock_s: float = 0.0

    def __post_init__(self) -> None:
        _check_share("error_rate", self.error_rate)
        _check_share("error_after_store_rate", self.error_after_store_rate)
        _check_share("drop_rate", self.drop_rate)
        _check_non_negative("latency_s", self.latency_s)
        _check_non_negative("throttle_storm_s", self.throttle_storm_s)
        _check_non_negative("lock_s", self.lock_s)
        if self.error_status not in _ERROR_STATUSES:
            raise ValueError(
                f"error_status must be one of 500/502/503/504, got {self.error_status}"
            )

    @classmethod
    def from_json(cls, data: Any) -> Faults:
        """Build from a JSON object with the attribute names as keys.

        Raises ``ValueError`` for an unknown key, a wrong type or a value out of range.
        """
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ValueError(f"unknown fault {key!r}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number")
            kwargs[key] = int(value) if key == "error_status" else float(value)
        return cls(**kwargs)

    def to_json(self) -> dict[str, float | int]:
        """The attributes as a JSON-ready dict (the inverse of :meth:`from_json`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorConfig:
    """Everything the emulator is started with.

    Attributes:
        host, port: where to listen; port 0 picks a free port.
        tokens: accepted bearer tokens (Stream API) and ``X-Auth-Token`` values
            (Platform API); empty accepts any non-empty token.
        products_rate, batches_rate, other_rate: requests per second allowed per
            stream on ``/streams/{id}/products``, per stream on
            ``/streams/{id}/batches``, and per endpoint elsewhere (Stream API
            "Rate limiting"); ``None`` disables that limit.
        referenced_min_bytes, referenced_max_bytes: the size a referenced
            stream's upload must have, as sent on the wire (before gzip
            decoding). The maximum also applies to the decoded body.
        max_request_bytes: the largest body of a chunked upload, on the wire and
            decoded (``bulkpush.limits.STREAM_API.max_request_bytes``; see
            ``docs/emulator.md``, "Assumptions"), answered 413 above it.
        max_line_bytes: the longest NDJSON line ("Product payload is too large").
        throughput_mode: count lines only: no per-line JSON parsing, no product
            store, no per-id upload counts; uploads still answer with a batch.
        latency_s: seconds added before answering each ``/products`` request of
            every stream (in addition to any ``Faults.latency_s``).
        faults: the faults every stream starts with (overridable per stream).
        seed: seeds the fault draws; the same seed gives the same faults.
        max_streams: the most streams one account may have.
        request_log_size: how many requests the log keeps (the oldest go first).
        request_timeout_s: a Stream or Platform API request not answered this
            many seconds after its headers arrived (reading its body counts) is
            answered 504 and leaves nothing stored (the API's 10 s rule; see
            ``docs/emulator.md``, "Assumptions"); ``None`` disables it.
        uplink_bytes_per_s: the bandwidth of the client's uplink in bytes per
            second, shared by every request body (see
            :mod:`bulkpush.emulator.uplink`); ``None`` (default) reads bodies as
            fast as they arrive. ``Emulator.set_uplink`` changes it while running.
        name_reservation_s: how long a deleted stream's name stays taken.
        process_duration_s: how long a simulated Platform API process runs.
        process_interval_s: the least time between two process triggers of one
            site (the reference's "1 request per site per 5 minutes" is 300);
            ``None`` (default) does not enforce it.
        clock: the wall clock (Unix seconds) of the rate-limit windows; a test
            can pass a fake one. ``None`` is ``time.time``.
    """

    host: str = "127.0.0.1"
    port: int = 0
    tokens: frozenset[str] = frozenset()
    products_rate: float | None = STREAM_API.products_rate_per_s
    batches_rate: float | None = STREAM_API.batches_rate_per_s
    other_rate: float | None = STREAM_API.other_rate_per_s
    referenced_min_bytes: int = STREAM_API.referenced_min_request_bytes
    referenced_max_bytes: int = STREAM_API.referenced_max_request_bytes
    max_request_bytes: int = STREAM_API.max_request_bytes
    max_line_bytes: int = STREAM_API.max_line_bytes
    throughput_mode: bool = False
    latency_s: float = 0.0
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    max_streams: int = STREAM_API.max_streams_per_account
    request_log_size: int = 10_000
    request_timeout_s: float | None = STREAM_API.server_request_timeout_s
    uplink_bytes_per_s: float | None = None
    name_reservation_s: float = 7 * 24 * 3600.0
    process_duration_s: float = 0.2
    process_interval_s: float | None = None
    clock: Callable[[], float] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if not isinstance(self.tokens, frozenset):
            raise ValueError("tokens must be a frozenset of strings")
        if any(not t for t in self.tokens):
            raise ValueError("tokens must not be empty strings")
        for name in ("products_rate", "batches_rate", "other_rate"):
            rate = getattr(self, name)
            if rate is not None and rate <= 0:
                raise ValueError(f"{name} must be positive or None, got {rate!r}")
        if not 0 <= self.referenced_min_bytes <= self.referenced_max_bytes:
            raise ValueError("need 0 <= referenced_min_bytes <= referenced_max_bytes")
        for name in ("max_request_bytes", "max_line_bytes", "max_streams", "request_log_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        _check_non_negative("latency_s", self.latency_s)
        _check_non_negative("process_duration_s", self.process_duration_s)
        _check_non_negative("name_reservation_s", self.name_reservation_s)
        if self.request_timeout_s is not None and self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be positive or None")
        if self.uplink_bytes_per_s is not None and not self.uplink_bytes_per_s > 0:
            raise ValueError("uplink_bytes_per_s must be positive or None")
        if self.process_interval_s is not None and self.process_interval_s <= 0:
            raise ValueError("process_interval_s must be positive or None")

    def __repr__(self) -> str:
        # Tokens are secrets: show how many, never which.
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.repr and f.name != "tokens"
        )
        return f"EmulatorConfig(tokens=<{len(self.tokens)} hidden>, {shown})"
