"""The exceptions bulkpush raises.

Every exception the library raises derives from :class:`BulkpushError`; no
``aiohttp``, ``OSError`` or ``orjson`` exception reaches a caller untranslated
(the transport maps them, ``raise ... from exc`` keeps the cause).

Hierarchy::

    BulkpushError
    ├── ConfigError              bad options or arguments (CLI exit code 2)
    │   └── CatalogTooSmall      a referenced stream's whole catalog is under its request minimum
    ├── SourceError              a catalog cannot be read at all (exit code 2)
    ├── TransportError           the network failed (retriable unless said otherwise)
    │   ├── RequestTimeout       no answer within the request timeout (retriable)
    │   ├── TLSError             the TLS handshake failed: bad certificate, not TLS (fatal)
    │   └── ResponseTooLarge     an answer larger than ``max_response_bytes`` (fatal)
    ├── APIError                 the API answered with an error status
    │   ├── AuthError            401: the token was refused (fail fast)
    │   ├── StreamDisabled       403 on upload: the stream rejects uploads
    │   ├── StreamLocked         423: the stream is locked (retriable)
    │   ├── RateLimited          429: throttled (retriable after ``retry_after``)
    │   ├── NotFound             404
    │   ├── Conflict             409 (e.g. a duplicate stream name)
    │   ├── InvalidRequest       400/422: the request as a whole was refused
    │   ├── PayloadTooLarge      413 (split the chunk)
    │   └── ServerError          5xx (retriable)
    ├── RetriesExhausted         a request kept failing until its attempts or deadline ran out
    ├── QuotaExhausted           an API quota window is used up for longer than a request may wait
    ├── ChunkFailed              a chunk could not be delivered and the run must stop
    ├── QueueError               the worker's job queue failed or holds something malformed
    ├── Interrupted              a run was stopped by its caller (Ctrl-C, SIGTERM)
    └── RunStopped               the run stopped early; ``report`` has the accounting

Messages never contain a token: build them from status, path and the API's
own error titles only.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AuthError",
    "BulkpushError",
    "CatalogTooSmall",
    "ChunkFailed",
    "ConfigError",
    "Conflict",
    "Interrupted",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "QueueError",
    "QuotaExhausted",
    "RateLimited",
    "RequestTimeout",
    "ResponseTooLarge",
    "RetriesExhausted",
    "RunStopped",
    "ServerError",
    "SourceError",
    "StreamDisabled",
    "StreamLocked",
    "TLSError",
    "TransportError",
]


class BulkpushError(Exception):
    """Raised when anything in bulkpush fails; the root of every bulkpush error.

    ``retriable`` tells whether the same operation may succeed if tried again.
    """

    retriable: bool = False


class ConfigError(BulkpushError):
    """Raised when options or arguments are invalid or inconsistent."""


class CatalogTooSmall(ConfigError):
    """Raised when a whole catalog is smaller than the minimum size of one request.

    A referenced stream refuses requests under 10 MB, so a catalog that cannot
    fill one request cannot be sent to it. ``nbytes`` is the catalog's size as
    it would be sent, ``min_bytes`` the minimum.
    """

    def __init__(self, message: str, *, nbytes: int, min_bytes: int) -> None:
        super().__init__(message)
        self.nbytes = nbytes
        self.min_bytes = min_bytes


class SourceError(BulkpushError):
    """Raised when a catalog source cannot be opened or read at all.

    A single bad line is not a ``SourceError``: it becomes a rejected record.
    """

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


class TransportError(BulkpushError):
    """Raised when the network failed: connection refused or reset, DNS, TLS.

    The message names the request, the host and port, and the reason (``POST
    /streams/1/products: connection refused by 127.0.0.1:9``). ``retriable``
    is False for the subclasses sending again cannot fix (:class:`TLSError`,
    :class:`ResponseTooLarge`).
    """

    retriable = True

    def __init__(self, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.url = url


class RequestTimeout(TransportError):
    """Raised when a request got no complete answer within its timeout."""


class TLSError(TransportError):
    """Raised when the TLS handshake failed; sending again cannot help.

    A certificate that does not verify, or a server that does not speak TLS
    on that port (an ``https://`` URL on a plain-http port).
    """

    retriable = False


class ResponseTooLarge(TransportError):
    """Raised when an answer's body is larger than the transport reads.

    The body is counted after decompression; ``limit`` is
    ``TransportOptions.max_response_bytes``.
    """

    retriable = False

    def __init__(self, message: str, *, method: str = "", url: str = "", limit: int) -> None:
        super().__init__(message, method=method, url=url)
        self.limit = limit


class APIError(BulkpushError):
    """Raised when the API answered with an error status.

    ``status`` is the HTTP status, ``errors`` the API's error objects (JSON:API
    ``errors`` list or the Platform API ``message``), ``body`` the parsed body.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        method: str = "",
        url: str = "",
        errors: list[dict[str, Any]] | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.url = url
        self.errors = errors or []
        self.body = body
        self.retry_after = retry_after


class AuthError(APIError):
    """Raised when the API refused the token (401)."""


class StreamDisabled(APIError):
    """Raised when an upload is refused because the stream is disabled (403)."""


class StreamLocked(APIError):
    """Raised when the stream is locked (423) and stayed locked past the deadline."""

    retriable = True


class RateLimited(APIError):
    """Raised when the API throttled the request (429)."""

    retriable = True


class NotFound(APIError):
    """Raised when the resource does not exist (404)."""


class Conflict(APIError):
    """Raised when the request conflicts with the current state (409)."""


class InvalidRequest(APIError):
    """Raised when the API refused the request as a whole (400 or 422)."""


class PayloadTooLarge(APIError):
    """Raised when the request body was over the API's size limit (413)."""


class ServerError(APIError):
    """Raised when the API failed with a 5xx status."""

    retriable = True


class RetriesExhausted(BulkpushError):
    """Raised when a request kept failing until its attempts or deadline ran out.

    ``last`` is the last error seen, ``attempts`` how many were made.
    """

    def __init__(self, message: str, *, last: BaseException | None, attempts: int) -> None:
        super().__init__(message)
        self.last = last
        self.attempts = attempts


class ChunkFailed(BulkpushError):
    """Raised when a chunk could not be delivered and the run must stop.

    ``outcome`` (an :class:`~bulkpush._records.Outcome`) holds what was spent
    on it with its records counted as ``not_sent``; ``cause`` is the error
    that stops the run.
    """

    def __init__(self, message: str, *, outcome: Any, cause: BulkpushError) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.cause = cause


class QuotaExhausted(BulkpushError):
    """Raised when an API's request quota is used up for longer than a request may wait.

    ``wait_s`` is how long until the quota lets the next request go (a
    monthly quota can take weeks): the run stops rather than sleeping.
    """

    def __init__(self, message: str, *, wait_s: float) -> None:
        super().__init__(message)
        self.wait_s = wait_s


class QueueError(BulkpushError):
    """Raised when the worker's job queue (SQLite or Redis) fails or holds malformed data.

    ``retriable`` is True when the queue was unreachable (it may come back).
    """

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class Interrupted(BulkpushError):
    """Raised when the caller interrupted a run (Ctrl-C, SIGTERM): the run's stop cause.

    The products read and not answered are ``not_sent``; pushing the same
    catalog again is harmless (uploads are upserts).
    """


class RunStopped(BulkpushError):
    """Raised when a push stopped before every record was sent.

    ``report`` holds the accounting at the stop (the records not sent are in
    ``not_sent``), ``cause`` the error that stopped it.
    """

    def __init__(self, message: str, *, report: Any = None, cause: BaseException | None = None):
        super().__init__(message)
        self.report = report
        self.cause = cause
