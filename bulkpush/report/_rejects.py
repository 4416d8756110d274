"""The rejects file, written and read: NDJSON, one ``{"product", "id", "reason", "stage",
"source", "line"}`` object a line (docs/report.md, "The rejects file").

:class:`RejectsWriter` writes the rejected products themselves;
:func:`is_rejects_line` recognises such a file by its first line and
:func:`unwrap_rejects` reads it back (the sources' ``rejects`` format), so a
fixed rejects file can be pushed again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import IO

import orjson

from bulkpush._records import STAGE_CLIENT, Record, Rejection
from bulkpush._resource import Resource
from bulkpush._validation import prefix_id
from bulkpush.report._redact import redact

__all__ = [
    "MSG_PRODUCT_TOO_DEEP",
    "REJECTS_KEYS",
    "RejectsWriter",
    "is_rejects_line",
    "rejects_line",
    "unwrap_rejects",
]

#: The keys of a rejects line, in the order written.
REJECTS_KEYS = ("product", "id", "reason", "stage", "source", "line")
# Files written before "id" was added are still recognised.
_KEY_SETS = (frozenset(REJECTS_KEYS), frozenset(REJECTS_KEYS) - {"id"})

#: A rejects line whose ``product`` orjson reads but cannot write back: the
#: only such value a parse makes is one nested over orjson's 254 levels.
MSG_PRODUCT_TOO_DEEP = (
    "Nested too deep to be sent: the product in this rejects line is nested over 254 levels"
)


class RejectsWriter(Resource):
    """Writes rejected products to an NDJSON file, one line per product.

    Each line is ``{"product": …, "id": …, "reason": …, "stage": …,
    "source": …, "line": …}`` with exactly these keys. ``product`` is the
    product object exactly as it was sent (its bytes are copied, not
    re-encoded) when the record is a JSON object, else the raw line as a
    string (undecodable bytes as ``\\xNN``). ``id`` is the product id as a
    string, also of a line too large to be whole when ``"id"`` comes early
    in it, else null. The source reader's ``rejects`` format unwraps ``product``,
    so the fixed file can be pushed again.

    The file is written to ``path + ".tmp"`` and renamed to ``path`` on
    :meth:`close`. On an exception the partial file is still renamed: the
    rejects found before the failure are worth keeping, and the report's
    ``rejected`` count tells whether the file is complete. Lines come in the
    order rejections were written (completion order, not source order).

    Consecutive :meth:`write` calls for the same record (one per failed
    check) make one line, their reasons joined with ``"; "``; pass a whole
    outcome's rejections to :meth:`write_all` to group a product named under
    several messages. ``count`` is the number of lines written so far.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.tmp_path = self.path + ".tmp"
        self.count = 0
        self._file: IO[bytes] | None = open(self.tmp_path, "wb")  # noqa: SIM115
        self._pending: Rejection | None = None
        self._reasons: list[str] = []

    def __repr__(self) -> str:
        state = "closed" if self._file is None else "open"
        return f"<RejectsWriter path={self.path!r} count={self.count} {state}>"

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, rejection: Rejection) -> None:
        """Write one rejected product (merged with the previous one if it is the same record)."""
        if self._file is None:
            raise ValueError("write to a closed RejectsWriter")
        pending = self._pending
        if pending is not None and pending.record is rejection.record:
            if rejection.message not in self._reasons:
                self._reasons.append(rejection.message)
            return
        self._flush_pending()
        self._pending = rejection
        self._reasons = [rejection.message]

    def write_all(self, rejections: Iterable[Rejection]) -> None:
        """Write rejections, one line per distinct record in order of first appearance."""
        by_record: dict[int, list[Rejection]] = {}
        for r in rejections:
            by_record.setdefault(id(r.record), []).append(r)
        for group in by_record.values():
            for r in group:
                self.write(r)

    def close(self) -> None:
        """Flush, write to disk and rename the file to its final name. Idempotent."""
        if self._file is None:
            return
        f = self._file
        try:
            self._flush_pending()
            f.flush()
            os.fsync(f.fileno())
        finally:
            self._file = None
            f.close()
            os.replace(self.tmp_path, self.path)

    def _flush_pending(self) -> None:
        r = self._pending
        if r is None or self._file is None:
            return
        self._pending = None
        self._file.write(rejects_line(r, "; ".join(self._reasons)))
        self.count += 1


def rejects_line(rejection: Rejection, reason: str | None = None) -> bytes:
    """One rejects-file line (with its newline) for ``rejection``."""
    record = rejection.record
    tail = orjson.dumps(
        {
            "reason": redact(rejection.message if reason is None else reason),
            "stage": rejection.stage,
            "source": record.source,
            "line": record.line,
        }
    )
    raw = record.raw
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = None
    is_object = isinstance(obj, dict)
    pid = record.id
    if pid is None:
        # One parse per line: the id comes from it, or from the first bytes
        # of a line that does not parse (cut short), never a second parse.
        pid = _object_id(obj) if is_object else prefix_id(raw)
    tail = b',"id":' + orjson.dumps(pid) + b"," + tail[1:] + b"\n"
    if is_object and b"\n" not in raw and b"\r" not in raw:
        # Splice the bytes as sent: keeps key order, number spelling and
        # integers too large for a round trip through Python floats.
        return b'{"product":' + raw + tail
    text = raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
    return b'{"product":' + orjson.dumps(text) + tail


def _object_id(obj: object) -> str | None:
    """The id of a parsed product, as :meth:`Record.product_id` spells it."""
    value = obj.get("id") if isinstance(obj, dict) else None
    if isinstance(value, bool) or value is None or value == "":
        return None
    return str(value) if isinstance(value, str | int | float) else None


def is_rejects_line(line: bytes) -> bool:
    """True when ``line`` (stripped) is a rejects line: an object with exactly its keys
    (``id`` may be missing: files written before it was added)."""
    if not line.startswith(b"{"):
        return False
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.keys() in _KEY_SETS


def unwrap_rejects(records: Iterable[Record], *, cap: int) -> Iterator[Record | Rejection]:
    """The records of a rejects file's lines, each with its ``product`` as ``raw``.

    The records keep the position of the rejects file's own lines. An object
    product is re-encoded, a string product (the original line was not JSON)
    becomes its bytes; a line that is not a rejects object (a user replaced
    it with the bare product, or it is over ``cap`` bytes) is left as it is.
    A product that cannot be re-encoded (nested over 254 levels) is a
    ``Rejection`` (:data:`MSG_PRODUCT_TOO_DEEP`) holding the line as it is.
    """
    for rec in records:
        raw = rec.raw
        if len(raw) > cap:
            yield rec
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            yield rec
            continue
        if isinstance(obj, dict) and "product" in obj and "reason" in obj:
            product = obj["product"]
            if isinstance(product, str):
                rec.raw = product.encode("utf-8", "surrogateescape").strip()
            else:
                try:
                    rec.raw = orjson.dumps(product)
                except orjson.JSONEncodeError:
                    yield Rejection(rec, STAGE_CLIENT, MSG_PRODUCT_TOO_DEEP)
                    continue
        yield rec
