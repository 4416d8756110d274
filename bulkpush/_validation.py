"""The client-side product checks: refuse what the API would refuse, before sending it.

A :class:`Validator` is called on each :class:`~bulkpush._records.Record` and
returns ``None`` (valid) or one :class:`~bulkpush._records.Rejection` with
stage ``"client"`` and one of the ``MSG_*`` messages below. Messages never
carry variable detail (the record carries the position), so rejections of
the same kind aggregate into one line of the report. Where the Stream API
has a title for the same error ("Invalid batch" table of the reference) the
message starts with it.

Checks of the ``"full"`` level, in this order (the first failure wins):

1. size: ``len(raw) > max_product_bytes`` (1 MB; the API rejects any product
   over 1 MB). Sources cut lines over 2,097,152 bytes short so that this
   check catches them; hence ``max_product_bytes`` may not exceed that.
2. JSON: one ``orjson.loads``; a failure is invalid UTF-8, a raw control
   character, or any other syntax error.
3. an object (``{...}``), not another JSON value.
4. not every attribute empty: an object whose every value — ``id``
   included — is ``""`` or ``null``, or that has no keys, is what the API
   calls "Empty Product Attributes" (its example is ``{}``). ``id`` counts
   as an attribute: the reference does not say that ``{"id": "1"}`` alone is
   refused, and a client must not refuse a product the API would take.
5. ``id``: present and not ``null``; a string or a number (``true``/``false``
   are not numbers); not ``""``. Whitespace-only ids are passed to the API.
6. no nested objects or arrays (the API does not support them). With
   ``flatten=True`` they are flattened instead: ``{"a": {"b": 1}}`` →
   ``{"a.b": 1}``, arrays by index ``{"a": [1, 2]}`` → ``{"a.0": 1, "a.1": 2}``
   (lossless, and reversible); an empty object or array leaves no attribute.
   A flattened key that collides with an existing one is rejected rather
   than overwriting data, and so is a product nested deeper than
   :data:`MAX_FLATTEN_DEPTH` levels (254: deeper than orjson, the encoder
   used everywhere, can write). The flattened product is checked for size
   again.

A valid record gets ``record.id`` (a ``str``); so does a product rejected as
too large when its ``"id"`` comes early (:func:`prefix_id`: a bounded scan of
its first bytes, not a parse), so the report and the rejects file name it.
``raw`` is only rewritten when flattening, or when a valid product holds a
line break (whitespace between tokens) that would split an NDJSON body: it
is then re-encoded compactly.

``"light"`` parses nothing: size, ``{`` first and ``}`` last, a ``"id"``
somewhere, no line break; the API checks the rest.

Measured on this machine (2 shared cores, Python 3.11, orjson 3.11; 100,000
realistic products of ~985 bytes with 20 attributes; one thread, best of 5):
full ~200,000 products/s (5 µs each, mostly the one ``orjson.loads``),
light ~800,000-1,000,000 products/s.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from bulkpush._records import STAGE_CLIENT, Record, Rejection
from bulkpush.errors import ConfigError
from bulkpush.limits import STREAM_API

__all__ = [
    "MAX_FLATTEN_DEPTH",
    "MSG_BAD_ENCODING",
    "MSG_CONTROL_CHARACTER",
    "MSG_EMPTY_ATTRIBUTES",
    "MSG_EMPTY_ID",
    "MSG_FLATTEN_COLLISION",
    "MSG_FLATTEN_TOO_DEEP",
    "MSG_ID_TYPE",
    "MSG_LINE_BREAK",
    "MSG_MISSING_ID",
    "MSG_NESTED",
    "MSG_NOT_OBJECT",
    "MSG_SYNTAX",
    "MSG_TOO_LARGE",
    "FlattenTooDeep",
    "Level",
    "ValidationOptions",
    "Validator",
    "prefix_id",
    "unchecked",
]

Level = Literal["full", "light"]

MSG_TOO_LARGE = "Product payload is too large: a product may be at most 1 MB (1,000,000 bytes)"
MSG_SYNTAX = "Syntax error: not valid JSON"
MSG_BAD_ENCODING = "Control character error, possibly incorrectly encoded: not valid UTF-8"
MSG_CONTROL_CHARACTER = (
    "Control character error: a control character (U+0000 to U+001F) in a string must be escaped"
)
MSG_NOT_OBJECT = "Not a JSON object: a product must be an object {...}"
MSG_EMPTY_ATTRIBUTES = "Empty Product Attributes: every attribute is empty"
MSG_MISSING_ID = 'Missing "id" attribute'
MSG_EMPTY_ID = 'Empty "id" attribute'
MSG_ID_TYPE = 'Invalid "id" attribute: must be a string or a number'
MSG_NESTED = (
    "Nested JSON structures are not supported: flatten objects and arrays into attributes "
    "(--flatten does it)"
)
MSG_FLATTEN_COLLISION = "Flattening made an attribute name that already exists"
MSG_LINE_BREAK = "Syntax error: a line break inside a product"

#: The deepest nesting :func:`flatten` takes, in levels (the product itself is
#: level 1): orjson refuses to encode anything deeper, so a product past it
#: could not be written back either. Also keeps the recursion far from
#: Python's limit, whatever a crafted line holds.
MAX_FLATTEN_DEPTH = 254
MSG_FLATTEN_TOO_DEEP = f"Nested too deep to flatten (over {MAX_FLATTEN_DEPTH} levels)"

_log = logging.getLogger("bulkpush.pipeline")

_CONTROL = re.compile(rb"[\x00-\x1f]")

# The id of a product too large to parse, read from its first bytes: the
# object's opening, then top-level pairs with scalar values (other keys than
# "id"), then "id" and a string or number. Possessive and anchored, over a
# bounded prefix: linear, never the megabytes behind it.
_WSP = rb"[ \t\r\n]*+"
_STRING = rb'"(?:[^"\\]|\\.)*+"'
_NUMBER = rb"-?(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?(?:[eE][+-]?[0-9]++)?"
_SCALAR = rb"(?:" + _STRING + rb"|" + _NUMBER + rb"|true|false|null)"
_OTHER_PAIR = rb'(?!"id"' + _WSP + rb":)" + _STRING + _WSP + rb":" + _WSP + _SCALAR
_EARLY_ID = re.compile(
    rb"\A" + _WSP + rb"\{" + _WSP
    + rb"(?:" + _OTHER_PAIR + _WSP + rb"," + _WSP + rb")*+"
    + rb'"id"' + _WSP + rb":" + _WSP + rb"(" + _STRING + rb"|" + _NUMBER + rb")"
    + rb"(?=" + _WSP + rb"[,}])"
)  # fmt: skip
_ID_SCAN_BYTES = 65_536


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidationOptions:
    """How thoroughly to check products before sending them.

    ``level``: ``"full"`` parses every product; ``"light"`` only looks at its
    bytes. ``flatten``: flatten nested objects and arrays instead of
    rejecting them, joining keys with ``separator``. ``max_product_bytes``:
    the largest product accepted, in bytes as sent (at most 2,097,152, the
    API's line limit and the length at which sources cut a line short).
    """

    level: Level = "full"
    flatten: bool = False
    separator: str = "."
    max_product_bytes: int = STREAM_API.max_product_bytes

    def __post_init__(self) -> None:
        if self.level not in ("full", "light"):
            raise ConfigError(f"unknown validation level {self.level!r}: use 'full' or 'light'")
        if not self.separator:
            raise ConfigError("the flatten separator must not be empty")
        if not 2 <= self.max_product_bytes <= STREAM_API.max_line_bytes:
            raise ConfigError(
                f"max_product_bytes must lie between 2 and {STREAM_API.max_line_bytes}, "
                f"not {self.max_product_bytes}"
            )
        if self.flatten and self.level == "light":
            raise ConfigError("flatten needs level='full': light validation parses nothing")


class _Collision(Exception):
    pass


class FlattenTooDeep(ValueError):
    """Raised by :func:`flatten` when a product is nested over :data:`MAX_FLATTEN_DEPTH` levels."""


def _flatten_into(out: dict[str, Any], prefix: str, value: Any, sep: str, depth: int) -> None:
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        if prefix in out:
            raise _Collision
        out[prefix] = value
        return
    if depth > MAX_FLATTEN_DEPTH:
        raise FlattenTooDeep(f"nested too deep to flatten (over {MAX_FLATTEN_DEPTH} levels)")
    for key, sub in items:
        _flatten_into(out, f"{prefix}{sep}{key}", sub, sep, depth + 1)


def flatten(obj: dict[str, Any], separator: str = ".") -> dict[str, Any]:
    """``obj`` with nested objects and arrays flattened into ``a.b`` / ``a.0`` keys.

    Raises ``ValueError`` when a flattened key collides with another key, and
    :class:`FlattenTooDeep` (a ``ValueError``) when ``obj`` is nested over
    :data:`MAX_FLATTEN_DEPTH` levels.
    """
    out: dict[str, Any] = {}
    try:
        for key, value in obj.items():
            if isinstance(value, dict | list):
                _flatten_into(out, key, value, separator, 2)
            elif key in out:
                raise _Collision
            else:
                out[key] = value
    except _Collision:
        raise ValueError("flattening made a key that already exists") from None
    return out


def prefix_id(raw: bytes) -> str | None:
    """The product id of ``raw`` read from its first 64 KiB alone, as :meth:`Record.product_id`
    spells it; None unless ``"id"`` is a top-level key that only scalar values precede.

    For products too large to parse (or cut short by the source): one
    bounded regular expression, no parsing of the rest.
    """
    m = _EARLY_ID.match(raw, 0, _ID_SCAN_BYTES)
    if m is None:
        return None
    value = m.group(1)
    try:
        ident = orjson.loads(value)
    except orjson.JSONDecodeError:  # an invalid escape or UTF-8 in the string
        return None
    if isinstance(ident, str):
        return ident or None
    return str(ident)


class Validator:
    """Check records against the API's product rules (see the module docstring).

    Calling it returns ``None`` for a valid record (setting ``record.id``, and
    replacing ``record.raw`` when flattening) or a ``Rejection``.
    """

    __slots__ = ("_check", "_flatten", "_max", "_sep", "options")

    def __init__(self, options: ValidationOptions = ValidationOptions()) -> None:
        self.options = options
        self._max = options.max_product_bytes
        self._flatten = options.flatten
        self._sep = options.separator
        self._check = self._light if options.level == "light" else self._full

    def __repr__(self) -> str:
        return f"Validator({self.options!r})"

    def __call__(self, record: Record) -> Rejection | None:
        return self._check(record)

    def _light(self, record: Record) -> Rejection | None:
        raw = record.raw
        if len(raw) > self._max:
            return _too_large(record)
        if raw[:1] != b"{" or raw[-1:] != b"}":
            return Rejection(record, STAGE_CLIENT, MSG_NOT_OBJECT)
        if b'"id"' not in raw:
            return Rejection(record, STAGE_CLIENT, MSG_MISSING_ID)
        if b"\n" in raw or b"\r" in raw:
            return Rejection(record, STAGE_CLIENT, MSG_LINE_BREAK)
        return None

    def _full(self, record: Record) -> Rejection | None:
        raw = record.raw
        if len(raw) > self._max:
            return _too_large(record)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return Rejection(record, STAGE_CLIENT, _syntax_message(raw))
        if type(obj) is not dict:
            return Rejection(record, STAGE_CLIENT, MSG_NOT_OBJECT)
        pid = obj.get("id")
        kind = type(pid)
        # bool is not int here: type(True) is bool.
        ident = pid if kind is str and pid else str(pid) if kind is int or kind is float else None
        # The hot path: a nested value needs a "{" past the first byte or a "[";
        # most products have neither, and then no value needs a look (a "{" or
        # "[" inside a string only sends the product down the slow path).
        if raw.find(b"{", 1) < 0 and raw.find(b"[") < 0:
            nested = False
            # A valid id is a non-empty value: then the product is not empty.
            empty = ident is None and all(v is None or v == "" for v in obj.values())
        else:
            nested, empty = _scan(obj)
        if empty:
            return Rejection(record, STAGE_CLIENT, MSG_EMPTY_ATTRIBUTES)
        if ident is None:
            if pid is None:
                return Rejection(record, STAGE_CLIENT, MSG_MISSING_ID)
            return Rejection(record, STAGE_CLIENT, MSG_EMPTY_ID if pid == "" else MSG_ID_TYPE)
        if nested:
            if not self._flatten:
                return Rejection(record, STAGE_CLIENT, MSG_NESTED)
            try:
                flat = flatten(obj, self._sep)
            except FlattenTooDeep:
                return Rejection(record, STAGE_CLIENT, MSG_FLATTEN_TOO_DEEP)
            except ValueError:
                return Rejection(record, STAGE_CLIENT, MSG_FLATTEN_COLLISION)
            new = orjson.dumps(flat)
            if len(new) > self._max:
                return Rejection(record, STAGE_CLIENT, MSG_TOO_LARGE)
            record.raw = new
        elif b"\n" in raw or b"\r" in raw:
            # Valid JSON holds line breaks only between tokens; they would split an NDJSON body.
            record.raw = orjson.dumps(obj)
        record.id = ident
        return None


def unchecked(record: Record, exc: Exception) -> Rejection:
    """The rejection of a product whose check raised ``exc`` (a bug one crafted product
    triggers must not end the run: that product alone is rejected)."""
    _log.debug("checking %s line %d failed", record.source, record.line, exc_info=exc)
    message = f"The product could not be checked: an unexpected {type(exc).__name__}"
    return Rejection(record, STAGE_CLIENT, message)


def _too_large(record: Record) -> Rejection:
    # Not parsed: its id, when it comes early, is read from the first bytes.
    if record.id is None:
        record.id = prefix_id(record.raw)
    return Rejection(record, STAGE_CLIENT, MSG_TOO_LARGE)


def _scan(obj: dict[str, Any]) -> tuple[bool, bool]:
    """``(nested, empty)``: a value is an object or array; every value is null or ""."""
    empty = True
    for value in obj.values():
        if value is None or value == "":
            continue
        empty = False
        if isinstance(value, dict | list):
            return True, False
    return False, empty


def _syntax_message(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return MSG_BAD_ENCODING
    if _CONTROL.search(raw) is not None and _has_control_in_string(raw):
        return MSG_CONTROL_CHARACTER
    return MSG_SYNTAX


def _has_control_in_string(raw: bytes) -> bool:
    """Whether a raw control character sits inside a JSON string (only called on failures)."""
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
            elif byte < 0x20:
                return True
        elif byte == 0x22:
            in_string = True
        elif byte < 0x20 and byte not in b" \t\n\r":
            return True
    return False
