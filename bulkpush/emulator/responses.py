"""Building answers: JSON:API documents (Stream API) and ``success`` bodies (Platform API)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

__all__ = [
    "CURRENT_REQUEST",
    "JSONAPI",
    "ApiError",
    "PlatformError",
    "RequestInfo",
    "error_document",
    "jsonapi",
    "platform_json",
    "request_info",
]

JSONAPI = "application/vnd.api+json"

# Assumption: error titles for statuses the reference shows no body for use the
# standard reason phrase (as its 429 body does: "Too Many Requests").
REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    423: "Locked",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(slots=True)
class RequestInfo:
    """What a handler tells the request log about the request it handled."""

    size: int = 0  # body bytes read from the wire
    products: int = 0  # lines or elements in an upload body
    batch_id: str | None = None
    timed_out: bool = False  # answered 504 by the request timeout


CURRENT_REQUEST: ContextVar[RequestInfo] = ContextVar("bulkpush_emulator_request")


def request_info() -> RequestInfo:
    """The log record of the request being handled (a detached one outside a request)."""
    try:
        return CURRENT_REQUEST.get()
    except LookupError:
        return RequestInfo()


class ApiError(Exception):
    """Raised by a Stream API handler to answer with a JSON:API error document."""

    def __init__(self, status: int, title: str | None = None, detail: str | None = None) -> None:
        self.status = status
        self.title = title or REASONS.get(status, "Error")
        self.detail = detail
        super().__init__(f"{status} {self.title}")


class PlatformError(Exception):
    """Raised by a Platform API handler to answer ``{"success": false, "message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status} {message}")


def error_document(status: int, title: str, detail: str | None = None) -> dict[str, Any]:
    """``{"errors":[{"status":"429","title":"Too Many Requests"}]}`` (status as a string)."""
    error: dict[str, Any] = {"status": str(status), "title": title}
    if detail:
        error["detail"] = detail
    return {"errors": [error]}


def jsonapi(
    document: dict[str, Any] | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A JSON:API answer (``application/vnd.api+json``); ``None`` gives an empty body."""
    if document is None:
        return web.Response(status=status, headers=headers)
    return web.Response(
        body=orjson.dumps(document), status=status, content_type=JSONAPI, headers=headers
    )


def platform_json(document: dict[str, Any], status: int = 200) -> web.Response:
    """A Platform API answer (``application/json``)."""
    return web.Response(body=orjson.dumps(document), status=status, content_type="application/json")
