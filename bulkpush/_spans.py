"""The span fast path: validate a whole block of NDJSON lines with a few C-level passes.

:func:`check_block` takes a *block* of whole physical lines (each ending in
``\\n``) and returns what reading it with :func:`bulkpush.sources._ndjson.read_ndjson`
and checking each record with a :class:`~bulkpush._validation.Validator` would
give: the body of the kept products, their line starts, and the rejections.
Lines are never turned into Python objects unless a check names them
*suspect*; only those go through the per-line reader semantics and the
``Validator``, which decides (exact messages, flattening, re-encoding).

The checks, each a C-level pass over the block (numpy or a ``bytes`` method),
and what they prove for a line that passes all of them:

1. newline positions (numpy); a line's first byte is ``{`` and its last byte
   (before ``\\n``) is ``}``: no blank line, no BOM, no surrounding whitespace,
   so ``raw`` is the line itself;
2. no ``\\r`` in the line: no CRLF, and no CR between tokens (the Validator
   would re-encode such a product, so it could not be sent as it stands);
3. no ``[``, and exactly one ``{`` (counted for the whole block when every line
   passed 1., else per line: a blank line and a nested line would cancel out
   in the block's count): the line's only ``{`` is its first byte, so no value
   is an object or an array (nothing nested, nothing to flatten);
4. length <= ``max_product_bytes`` and <= ``cap`` (not too large, not cut short);
5. UTF-8: the block is ASCII, or decodes strictly (msgspec does not check the
   UTF-8 of values it skips); an error names its line, and decoding resumes
   after it;
6. msgspec ``decode_lines`` into a struct holding only ``id``, over each run
   of lines not yet suspect: each line is exactly one JSON object (syntax,
   escapes, lone surrogates, raw control characters: an object cannot span
   lines, since its closing ``}`` ends the line and a raw ``\\n`` in a string
   is an error) whose every ``"id"`` key is a non-empty string, an int64, or
   a finite float (not a bool, not null); a valid id also proves "not every
   attribute empty". msgspec names a failure by ``(byte N)`` or ``$[k]``: that
   line (and, to be safe, the one before) becomes suspect, and decoding
   resumes after it; an unlocated failure is bisected. Duplicate ``"id"``
   keys are each checked, so the last (the one orjson keeps) is valid too.
7. level ``"light"`` only: no ``\\u`` escape in the line, so its ``id`` key is
   spelled ``"id"``, which light looks for as bytes.

Together these prove that the ``"full"`` Validator without flatten keeps the
line unchanged. ``"light"`` accepts a superset of that (given 7.), and with
``flatten=True`` a product with nothing nested is kept unchanged: so a line
that passed is kept as it stands, whatever the options.

**Known divergence** (accepted): a number that overflows a double
(``1e309``, a 400-digit integer) in a value other than ``id``. orjson turns
it into infinity and the Validator rejects the product ("Syntax error: not
valid JSON"); msgspec only checks the syntax of values it skips, so the fast
path keeps it. (As the ``id`` it is caught: msgspec's float is finite, and
ints past int64 fall back to the Validator.)

Costs (µs per product, one thread, 4 MB blocks, a loaded 2-core machine;
``docs/notes/spans-prototype.md``): the checks on a clean block of ~1 KB
products 1.5-2.4 (of which the newlines 0.3-0.4, the msgspec decode 0.8-1.0,
``count(b"{")`` 0.4-0.7 as ``bytes.count`` but 0.1 in numpy, UTF-8 0.1 ASCII /
0.9 otherwise); ~130 B products 0.47-0.53. One bad line per 4 MB block:
1.6-2.1 and 0.5-0.8. Today's per-line ``Record`` + ``Validator``: 6.6-7.2 and
3.1. This module (wall time, median of 5, 4 MB clean blocks, 3 runs):
0.9-1.5 µs per 982 B product, 0.30-0.32 per 124 B, 0.35-0.53 per 216 B,
against 3.9-6.5, 2.3-3.5 and 2.3-4.1 for read_ndjson + Validator on the same
blocks. Lines that fall back (``[`` in strings, a CR inside a line) cost what
the per-line path costs. A block whose every CR ends a line (a Windows
export) is checked as the LF lines it is sent as (one ``replace``); records
made of its suspect lines still come from the physical lines.
"""

from __future__ import annotations

import re
from codecs import utf_8_decode
from dataclasses import dataclass
from typing import Annotated

import msgspec
import numpy as np
import numpy.typing as npt

from bulkpush._records import Record, Rejection
from bulkpush._validation import Validator, unchecked
from bulkpush.sources._framing import BOM, WS

__all__ = ["BlockResult", "check_block"]


class _IdOnly(msgspec.Struct):
    id: (
        Annotated[str, msgspec.Meta(min_length=1)]
        | Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
        | float
    )


_DECODER = msgspec.json.Decoder(_IdOnly)
_BYTE = re.compile(r"\(byte (\d+)\)")
_INDEX = re.compile(r"\$\[(\d+)\]")

_LBRACE, _RBRACE, _LBRACKET, _CR, _LF, _BACKSLASH, _U = 123, 125, 91, 13, 10, 92, 117

Lines = npt.NDArray[np.intp]


@dataclass(slots=True)
class BlockResult:
    """The kept products of a block as one body, their line starts, and the rejections.

    ``body``: the kept products, each followed by ``\\n`` (the input block
    itself when no line changed). ``starts``: uint32, product ``k`` is
    ``body[starts[k]:starts[k + 1] - 1]``, ``starts[-1] == len(body)``.
    ``lines``: int64, the 0-based index in the block of each kept product's
    line. ``rejections``: in line order. ``read``: products read (blank lines
    are not products). ``line_starts``: the offset in the block of every
    line's first byte, then the block's length (``len - 1`` lines), so a kept
    product's source offset is ``base_offset + line_starts[lines[k]]``.
    """

    body: bytes | memoryview
    starts: npt.NDArray[np.uint32]
    lines: npt.NDArray[np.int64]
    rejections: list[Rejection]
    read: int
    line_starts: npt.NDArray[np.intp]


def _source(mv: memoryview) -> tuple[bytes | bytearray, int, int]:
    """An object with ``find``/``count`` over ``mv``'s bytes, and their range in it."""
    obj = mv.obj
    if isinstance(obj, bytes | bytearray) and len(obj) >= mv.nbytes > 0:
        here = int(np.frombuffer(mv, np.uint8).ctypes.data)
        base = int(np.frombuffer(obj, np.uint8).ctypes.data)
        off = here - base
        if off >= 0 and off + mv.nbytes <= len(obj):
            return obj, off, off + mv.nbytes
    return mv.tobytes(), 0, mv.nbytes  # another kind of buffer: one copy


def _mark(suspect: npt.NDArray[np.bool_], nl: Lines, positions: Lines) -> None:
    """Mark the lines holding these byte positions (a line's ``\\n`` belongs to it)."""
    suspect[np.searchsorted(nl, positions, side="left")] = True


def _check_utf8(mv: memoryview, nl: Lines, starts: Lines, suspect: npt.NDArray[np.bool_]) -> None:
    pos = 0
    while pos < mv.nbytes:
        try:
            utf_8_decode(mv[pos:], "strict", True)
            return
        except UnicodeDecodeError as e:
            line = int(np.searchsorted(nl, pos + e.start, side="left"))
            suspect[line] = True
            pos = int(starts[line + 1])


def _check_json(mv: memoryview, nl: Lines, starts: Lines, suspect: npt.NDArray[np.bool_]) -> None:
    """msgspec over each run of lines not yet suspect; its errors name suspect lines."""
    good = np.concatenate(([0], (~suspect).view(np.int8), [0]))
    edges = np.flatnonzero(np.diff(good))
    todo = list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))
    while todo:
        a, b = todo.pop()
        if a >= b:
            continue
        try:
            if len(_DECODER.decode_lines(mv[starts[a] : starts[b]])) == b - a:
                continue
            where = None  # cannot happen after the byte checks: bisect
        except msgspec.ValidationError as e:
            m = _INDEX.search(str(e))
            where = None if m is None else a + int(m.group(1))
        except (msgspec.DecodeError, RecursionError) as e:
            m = _BYTE.search(str(e))
            pos = None if m is None else int(starts[a]) + int(m.group(1))
            where = None if pos is None else int(np.searchsorted(nl, pos, side="left"))
        if where is None or not a <= where < b:
            if b - a == 1:
                suspect[a] = True
            else:
                mid = (a + b) // 2
                todo += [(a, mid), (mid, b)]
            continue
        # The lines before ``where`` decoded and passed; the one just before is
        # rechecked anyway, in case an error is reported past its own line.
        suspect[max(where - 1, a) : where + 1] = True
        todo.append((where + 1, b))


def _suspects(
    mv: memoryview, validator: Validator, cap: int
) -> tuple[Lines, Lines, npt.NDArray[np.bool_]]:
    """``(nl, starts, suspect)``: newline positions, line starts (+ end), suspect lines."""
    src, off, end = _source(mv)
    arr = np.frombuffer(mv, np.uint8)
    nl = np.flatnonzero(arr == _LF)
    n = len(nl)
    if n == 0 or int(nl[-1]) != mv.nbytes - 1:
        raise ValueError("a block must be whole lines, each ending in b'\\n'")
    starts = np.empty(n + 1, np.intp)
    starts[0] = 0
    starts[1:] = nl + 1
    first = starts[:-1]
    suspect = arr[first] != _LBRACE  # (a blank line starts with its own "\n")
    suspect |= arr[np.maximum(nl - 1, 0)] != _RBRACE
    limit = min(validator.options.max_product_bytes, cap)
    if mv.nbytes - 1 > limit:
        suspect |= (nl - first) > limit
    if src.find(b"[", off, end) >= 0:
        _mark(suspect, nl, np.flatnonzero(arr == _LBRACKET))
    if src.find(b"\r", off, end) >= 0:
        _mark(suspect, nl, np.flatnonzero(arr == _CR))
    if validator.options.level == "light" and src.find(b"\\u", off, end) >= 0:
        slashes = np.flatnonzero(arr == _BACKSLASH)  # never the last byte (a "\n")
        _mark(suspect, nl, slashes[arr[slashes + 1] == _U])
    # count("{") == n proves one "{" per line only when every line starts with one.
    lbrace = arr == _LBRACE  # (numpy counts a byte 5x faster than bytes.count)
    if suspect.any() or np.count_nonzero(lbrace) != n:
        braces = np.searchsorted(nl, np.flatnonzero(lbrace), side="left")
        suspect |= np.bincount(braces, minlength=n) != 1
    ascii_only = src.isascii() if off == 0 and end == len(src) else int(arr.max()) < 128
    if not ascii_only:
        _check_utf8(mv, nl, starts, suspect)
    _check_json(mv, nl, starts, suspect)
    return nl, starts, suspect


def _without_crlf(mv: memoryview) -> tuple[bytes, Lines] | None:
    """A block of CRLF lines as LF lines, and its physical line starts; None unless every
    CR of the block ends a line (a CR elsewhere leaves its line to the Validator).

    Windows exports end every line in CRLF: read_ndjson strips the CR, so the
    product sent is the line without it. Checking the block with the CRs
    removed keeps such files on the fast path (one ``replace``, a C pass).
    """
    src, off, end = _source(mv)
    if src.find(b"\r", off, end) < 0:
        return None
    data = mv.tobytes()
    pairs = data.count(b"\r\n")
    if pairs == 0 or data.count(b"\r") != pairs:
        return None
    nl = np.flatnonzero(np.frombuffer(data, np.uint8) == _LF)
    physical = np.empty(len(nl) + 1, np.intp)
    physical[0] = 0
    physical[1:] = nl + 1
    return data.replace(b"\r\n", b"\n"), physical


def _raw(mv: memoryview, start: int, length: int, cap: int, bom: bool) -> bytes:
    """The record's raw as read_ndjson makes it from a physical line (b"" when blank)."""
    if length > cap:
        raw = mv[start : start + cap + 1].tobytes()
    else:
        raw = mv[start : start + length].tobytes()
        if not raw or raw[0] in WS or raw[-1] in WS:
            raw = raw.strip()
    if bom and start == 0 and raw.startswith(BOM):
        raw = raw[len(BOM) :].strip()
    return raw


def check_block(
    block: bytes | memoryview,
    validator: Validator,
    *,
    source: str,
    first_line: int,
    base_offset: int,
    bom: bool,
    cap: int,
) -> BlockResult:
    """Validate a block of whole lines (each ending in ``b"\\n"``); see the module docstring.

    ``first_line``/``base_offset``: the line number and stream offset of the
    block's first line; ``bom``: the block starts the stream (a BOM at the
    start of its first line is dropped); ``cap``: the record size cap (a longer
    line's raw is its first ``cap + 1`` bytes).
    """
    mv = block if isinstance(block, memoryview) else memoryview(block)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    if mv.nbytes == 0:
        empty = np.zeros(1, np.uint32)
        return BlockResult(b"", empty, np.zeros(0, np.int64), [], 0, np.zeros(1, np.intp))
    orig, physical = mv, None
    crlf = _without_crlf(mv)
    if crlf is not None:  # checked as the LF lines they are sent as
        normalised, physical = crlf
        mv = memoryview(normalised)
    nl, starts, suspect = _suspects(mv, validator, cap)
    if physical is None:
        physical = starts
    n = len(nl)
    bad = np.flatnonzero(suspect).tolist()
    rejections: list[Rejection] = []
    pieces: list[bytes | memoryview] = []
    lens = np.diff(starts)  # physical length of each line, "\n" included
    keep = np.ones(n, np.bool_)
    prev = 0
    for i in bad:
        start = int(starts[i])
        length = int(lens[i]) - 1
        # The record as read_ndjson makes it, from the physical line (CR and all).
        pstart = int(physical[i])
        raw = _raw(orig, pstart, int(physical[i + 1]) - pstart - 1, cap, bom)
        out: bytes | None = None
        if raw:
            record = Record(source, first_line + i, base_offset + pstart, raw)
            try:
                rejection = validator(record)
            except Exception as exc:
                rejection = unchecked(record, exc)
            if rejection is None:
                out = record.raw
            else:
                rejections.append(rejection)
        if out is not None and len(out) == length and out == mv[start : start + length]:
            continue  # kept as it stands
        pieces.append(mv[starts[prev] : start])
        if out is None:
            keep[i] = False
        else:
            pieces.append(out + b"\n")
            lens[i] = len(out) + 1
        prev = i + 1
    if not pieces:  # every line kept as it stands: the block is the body
        return BlockResult(
            block if isinstance(block, bytes) and mv is orig else mv,
            starts.astype(np.uint32),
            np.arange(n, dtype=np.int64),
            rejections,
            n,
            physical,
        )
    pieces.append(mv[starts[prev] : starts[n]])
    lens = lens[keep]
    out_starts = np.zeros(len(lens) + 1, np.uint32)
    out_starts[1:] = np.cumsum(lens)
    return BlockResult(
        b"".join(pieces),
        out_starts,
        np.flatnonzero(keep).astype(np.int64),
        rejections,
        len(lens) + len(rejections),
        physical,
    )
