"""Prometheus metrics of a worker, per stream (prometheus-client, an optional extra).

::

    bulkpush_products_total{stream, result}   accepted | rejected | not_sent
    bulkpush_bytes_sent_total{stream}         request bodies as sent (compressed)
    bulkpush_requests_total{stream}           requests made, retries included
    bulkpush_retries_total{stream}            requests that were retries
    bulkpush_throttled_total{stream}          requests answered 429
    bulkpush_parts_in_flight{stream}          parts this worker is pushing now
    bulkpush_parts_total{stream, status}      parts ended by this worker: done, failed, released
    bulkpush_queue_depth                      parts waiting in the queue
"""

from __future__ import annotations

from typing import Any

from bulkpush._records import Outcome

__all__ = ["Metrics"]


class Metrics:
    """The worker's metrics in their own registry (several workers may share a process)."""

    def __init__(self) -> None:
        try:
            import prometheus_client as prom  # noqa: PLC0415 - optional extra
        except ImportError:  # pragma: no cover
            self.registry: Any = None
            return
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.products = prom.Counter(
            "bulkpush_products", "Products by result", ["stream", "result"], registry=r
        )
        self.bytes_sent = prom.Counter(
            "bulkpush_bytes_sent", "Request body bytes sent", ["stream"], registry=r
        )
        self.requests = prom.Counter(
            "bulkpush_requests", "Requests made, retries included", ["stream"], registry=r
        )
        self.retries = prom.Counter("bulkpush_retries", "Retried requests", ["stream"], registry=r)
        self.throttled = prom.Counter(
            "bulkpush_throttled", "Requests answered 429", ["stream"], registry=r
        )
        self.in_flight = prom.Gauge(
            "bulkpush_parts_in_flight", "Parts being pushed now", ["stream"], registry=r
        )
        self.parts = prom.Counter(
            "bulkpush_parts", "Parts ended by this worker", ["stream", "status"], registry=r
        )
        self.depth = prom.Gauge("bulkpush_queue_depth", "Parts waiting in the queue", registry=r)

    def outcome(self, stream: str, outcome: Outcome) -> None:
        if self.registry is None:
            return
        self.products.labels(stream, "accepted").inc(outcome.accepted)
        self.products.labels(stream, "rejected").inc(outcome.rejected)
        if outcome.not_sent:
            self.products.labels(stream, "not_sent").inc(outcome.not_sent)
        self.bytes_sent.labels(stream).inc(outcome.bytes_sent)
        self.requests.labels(stream).inc(outcome.attempts)
        self.retries.labels(stream).inc(max(0, outcome.attempts - 1))
        self.throttled.labels(stream).inc(outcome.throttled)

    def rejected(self, stream: str) -> None:
        if self.registry is not None:
            self.products.labels(stream, "rejected").inc()

    def part_started(self, stream: str) -> None:
        if self.registry is not None:
            self.in_flight.labels(stream).inc()

    def part_ended(self, stream: str, status: str) -> None:
        if self.registry is not None:
            self.in_flight.labels(stream).dec()
            self.parts.labels(stream, status).inc()

    def set_depth(self, depth: int) -> None:
        if self.registry is not None:
            self.depth.set(depth)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        if self.registry is None:
            return b"# prometheus-client is not installed\n", "text/plain; charset=utf-8"
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST
