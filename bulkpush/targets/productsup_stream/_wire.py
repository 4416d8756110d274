"""The Stream API's wire models: streams, batches, deletes, and upload answers.

Productsup Stream API reference: "Stream Management" (JSON:API stream
documents), "Batches" (an upload's status and its ``stages.upload.errors``:
one example line per message, with ``occurrences``), "Uploading Data".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from bulkpush._options import StreamType
from bulkpush._retry import ItemError
from bulkpush.errors import InvalidRequest

__all__ = [
    "JSONAPI",
    "Batch",
    "DeleteResult",
    "Stream",
    "StreamType",
    "batch_path",
    "deleted_count",
    "is_batch_document",
    "product_path",
    "products_path",
    "stream_path",
    "upload_errors",
]

JSONAPI = "application/vnd.api+json"


def stream_path(stream_id: str) -> str:
    return f"/streams/{quote(str(stream_id), safe='')}"


def products_path(stream_id: str) -> str:
    return f"{stream_path(stream_id)}/products"


def product_path(stream_id: str, product_id: str) -> str:
    return f"{products_path(stream_id)}/{quote(str(product_id), safe='')}"


def batch_path(stream_id: str, batch_id: str) -> str:
    return f"{stream_path(stream_id)}/batches/{quote(str(batch_id), safe='')}"


@dataclass(frozen=True, slots=True)
class Stream:
    """A stream as the API describes it."""

    id: str
    name: str
    type: str
    created_at: str | None = None
    updated_at: str | None = None
    account_id: str | None = None

    @classmethod
    def from_jsonapi(cls, data: dict[str, Any]) -> Stream:
        attrs = data.get("attributes") or {}
        account = ((data.get("relationships") or {}).get("account") or {}).get("data") or {}
        return cls(
            id=str(data.get("id")),
            name=str(attrs.get("name", "")),
            type=str(attrs.get("type", "")),
            created_at=attrs.get("createdAt"),
            updated_at=attrs.get("updatedAt"),
            account_id=str(account["id"]) if account.get("id") is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Batch:
    """An upload's status: ``uploaded``, ``processed`` or ``failed``, with its stages."""

    id: str
    status: str
    error_count: int
    stages: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_jsonapi(cls, body: Any) -> Batch:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise InvalidRequest("the batch answer has no data object", status=200, body=body)
        attrs = data.get("attributes") or {}
        return cls(
            id=str(data.get("id")),
            status=str(attrs.get("status", "")),
            error_count=int(attrs.get("errorCount") or 0),
            stages=dict(attrs.get("stages") or {}),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """What a delete did: ``requested`` ids sent (0 for "all") in ``requests`` requests,
    the last answer's ``status``, and ``deleted``: how many products the API says it
    deleted (its ``meta.deleted``, summed over the requests), None when no answer said."""

    requested: int
    status: int
    requests: int = 1
    deleted: int | None = None


def deleted_count(body: Any) -> int | None:
    """``meta.deleted`` of a delete's answer: the products the API deleted, None if absent."""
    meta = body.get("meta") if isinstance(body, dict) else None
    n = meta.get("deleted") if isinstance(meta, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None


def is_batch_document(body: Any) -> bool:
    """True when an upload's answer is the documented ``{"data": {...}}`` batch document."""
    return isinstance(body, dict) and isinstance(body.get("data"), dict)


def upload_errors(body: Any) -> tuple[tuple[ItemError, ...], int | None, str | None]:
    """``(errors, errorCount, batch id)`` from an upload's batch answer, tolerant of shape.

    Each error names one example line (``example.lineNumber``, 1-based in the
    request) of its ``occurrences``.
    """
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return (), None, None
    attrs = data.get("attributes") or {}
    upload = (attrs.get("stages") or {}).get("upload") or {}
    errors: list[ItemError] = []
    for err in upload.get("errors") or []:
        if not isinstance(err, dict):
            continue
        occurrences = err.get("occurrences")
        example = err.get("example")
        line = example.get("lineNumber") if isinstance(example, dict) else None
        errors.append(
            ItemError(
                str(err.get("message") or "rejected by the API"),
                position=line if isinstance(line, int) else None,
                count=occurrences if isinstance(occurrences, int) and occurrences > 0 else 1,
            )
        )
    count = upload.get("errorCount", attrs.get("errorCount"))
    batch_id = data.get("id")
    return (
        tuple(errors),
        count if isinstance(count, int) else None,
        str(batch_id) if batch_id is not None else None,
    )
