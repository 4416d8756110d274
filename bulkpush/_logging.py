"""How the commands log: human lines or one JSON object per line, on stderr, credentials masked.

:func:`setup_logging` is called once by ``bulkpush push`` and by ``bulkpush
worker`` (``--log-format human|json``). ``human`` (the default) writes
``time LEVEL message`` lines; ``json`` writes one object per record with
``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message`` and the
record's structured fields (the ``extra=`` of the call), so a log shipper
needs no parsing. Either way every message and field goes through
:func:`~bulkpush.report.redact` (tokens, keys, a URL's password) and a field
named like a credential (``token``, ``password``, ...) is masked whole; a
:class:`~bulkpush.Secret` prints as ``Secret('********')``.

The ``bulkpush`` loggers log at INFO with ``verbose`` or in JSON (a machine
reads every event: retried requests, 429s, stops), else at WARNING; other
libraries' loggers at WARNING. :func:`log_outcome` is what a push logs of
each chunk's outcome, once it is answered (the executor itself logs nothing
per attempt).
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson

from bulkpush._records import Outcome
from bulkpush.report import redact

__all__ = [
    "COMMAND_FORMAT",
    "HUMAN_FORMAT",
    "HumanFormatter",
    "JsonFormatter",
    "LogFormat",
    "current_format",
    "log_outcome",
    "setup_logging",
]

LogFormat = Literal["human", "json"]
HUMAN_FORMAT = "%(asctime)s %(levelname)s %(message)s"
# A one-off command speaks in the style of its errors ("bulkpush: error: ...").
COMMAND_FORMAT = "bulkpush: %(level)s: %(message)s"

# What every LogRecord has; the rest of its attributes are the caller's fields.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_SECRET_KEY = re.compile(r"(?i)token|secret|password|passwd|authorization|api[_-]?key|credential")


def _clean(value: Any, key: str = "") -> Any:
    """A field's value as JSON can carry it, with credentials masked."""
    if key and _SECRET_KEY.search(key):
        return "***"
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _clean(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    return redact(str(value))  # a Secret's str is its mask


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, the
    record's own fields, and ``exception`` (the traceback) when it has one."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_") and key not in doc:
                doc[key] = _clean(value, key)
        if record.exc_info:
            doc["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(doc).decode()


class HumanFormatter(logging.Formatter):
    """``fmt`` (default :data:`HUMAN_FORMAT`), every line redacted."""

    def __init__(self, fmt: str = HUMAN_FORMAT) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        record.level = record.levelname.lower()
        return redact(super().format(record))


class _Handler(logging.StreamHandler[TextIO]):
    """Writes to ``stream``, or to ``sys.stderr`` as it is at each record: a live
    progress display replaces it while it runs, so log lines go above the display."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream or sys.stderr)
        self._fixed = stream

    def emit(self, record: logging.LogRecord) -> None:
        if self._fixed is None:
            self.stream = sys.stderr
        super().emit(record)


def setup_logging(
    fmt: LogFormat = "human",
    *,
    verbose: bool = False,
    stream: TextIO | None = None,
    human: str = HUMAN_FORMAT,
) -> logging.Handler:
    """Send the log to ``stream`` (default: stderr) in ``fmt``; returns the handler.

    ``human`` is the line format of ``fmt="human"`` (:data:`HUMAN_FORMAT`, with
    times, for the worker; :data:`COMMAND_FORMAT` for one-off commands).

    Replaces the handler an earlier call installed (never another's), so it
    can be called again.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    handler = _Handler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter(human))
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    verbose_level = verbose or fmt == "json"
    logging.getLogger("bulkpush").setLevel(logging.INFO if verbose_level else logging.WARNING)
    return handler


def current_format() -> LogFormat | None:
    """The format :func:`setup_logging` installed, None when it was not called."""
    for h in logging.getLogger().handlers:
        if isinstance(h, _Handler):
            return "json" if isinstance(h.formatter, JsonFormatter) else "human"
    return None


def log_outcome(logger: logging.Logger, outcome: Outcome) -> None:
    """Log one chunk's outcome when it is news: retried or throttled requests, products
    not sent. At INFO: the run's stop, when it stops, is the error (an interrupted run
    hands back every request it held: no news line by line in a terminal).

    Fields: ``event`` (``retried``, ``not_sent``), ``seq``, ``source``, ``first_line``,
    ``last_line``, ``products``, ``status``, ``attempts``, ``retries``, ``throttled``,
    ``batch_id``, and ``error``/``not_sent`` for products not sent."""
    chunk = outcome.chunk
    fields: dict[str, Any] = {
        "seq": chunk.seq,
        "source": chunk.source if len(chunk) else None,
        "first_line": chunk.first_line if len(chunk) else None,
        "last_line": chunk.last_line if len(chunk) else None,
        "products": len(chunk),
        "status": outcome.status,
        "attempts": outcome.attempts,
        "retries": max(0, outcome.attempts - 1),
        "throttled": outcome.throttled,
        "batch_id": outcome.batch_id,
    }
    where = f"request {chunk.seq} (lines {fields['first_line']}-{fields['last_line']})"
    if outcome.error is not None:
        logger.info(
            "%s: %d products not sent: %s",
            where,
            outcome.not_sent,
            outcome.error,
            extra={
                **fields,
                "event": "not_sent",
                "not_sent": outcome.not_sent,
                "error": outcome.error,
            },
        )
    elif outcome.attempts > 1 or outcome.throttled:
        logger.info(
            "%s: answered %d after %d attempts (%d throttled, 429)",
            where,
            outcome.status,
            outcome.attempts,
            outcome.throttled,
            extra={**fields, "event": "retried"},
        )
