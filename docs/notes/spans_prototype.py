"""Prototype: validate a block of whole NDJSON lines as one span, in C, falling back per line.

A *block* is bytes holding whole lines, each ending in b"\n" (the last too).
``validate_block`` returns (body, starts, rejected):

- body: the NDJSON body of the valid products (== the block itself on the
  fast path: no copy, no per-line object);
- starts: array('I') / numpy uint32 of the offsets of each product's first byte
  in body, plus len(body) at the end (so line i is body[starts[i]:starts[i+1]-1]);
- rejected: list of (line_index_in_block, message) for rejected lines.

The fast path proves, for the whole block, with a handful of C passes:

1. block[0] == "{" and block ends with "\n"; count("\n{") == n-1 and
   count("}\n") == n (n = count("\n")): every line starts with "{" and ends
   with "}" -- no blank line, no BOM, no surrounding whitespace, no CRLF;
2. "\r" not in block: no CR anywhere (a valid product with a CR between
   tokens is re-encoded by bulkpush, so it must not be sent as is);
3. count("{") == n and "[" not in block: the only "{" of each line is its
   first byte, so no value is an object or array (not nested);
4. msgspec decode_lines into IdOnly gives n values: each line is exactly one
   valid JSON object (syntax, no raw control characters, valid escapes) with
   an "id" that is a non-empty string or a number, not bool/null;
   a valid id also proves "not every attribute empty";
5. UTF-8: block.isascii() or block.decode() succeeds (msgspec does not check
   UTF-8 inside strings it skips);
6. size: the longest line is <= max_product_bytes.

Anything else -> the block is cut into sub-blocks of SUB lines; each one
gets the fast path again, and only sub-blocks that fail go line by line
through bulkpush's own reader semantics + Validator (exact messages).
"""

from __future__ import annotations

from array import array
from typing import Annotated

import msgspec
import numpy as np
from msgspec import Meta

MAX_PRODUCT = 1_000_000
SUB = 64  # lines per sub-block in the fallback


class IdOnly(msgspec.Struct):
    id: Annotated[str, Meta(min_length=1)] | int | float


_DEC = msgspec.json.Decoder(IdOnly)
_decode_lines = _DEC.decode_lines


def line_starts_np(block: bytes) -> np.ndarray:
    """Offsets of each line's first byte, plus len(block): uint32 (block < 4 GB)."""
    nl = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
    out = np.empty(len(nl) + 1, np.uint32)
    out[0] = 0
    out[1:] = nl + 1
    return out


def fast_ok(block: bytes, max_product: int = MAX_PRODUCT) -> np.ndarray | None:
    """The block's line starts if the whole block passes the fast path, else None."""
    if block[-1:] != b"\n" or b"[" in block or b"\r" in block:
        return None
    arr = np.frombuffer(block, np.uint8)
    nl = np.flatnonzero(arr == 10)
    n = len(nl)
    # every line starts with "{" and ends with "}" (no blank line, BOM, CR, surrounding space)
    if arr[0] != 123 or not (arr[nl[:-1] + 1] == 123).all() or not (arr[nl - 1] == 125).all():
        return None
    if block.count(b"{") != n:  # the first byte of each line is its only "{": nothing nested
        return None
    try:
        if len(_decode_lines(block)) != n:  # each line is exactly one object with a valid id
            return None
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if not block.isascii():
        try:
            block.decode()
        except UnicodeDecodeError:
            return None
    starts = np.empty(n + 1, np.uint32)
    starts[0] = 0
    starts[1:] = nl + 1
    if len(block) > max_product and int(np.diff(starts).max()) - 1 > max_product:
        return None
    return starts


# --- slow path: bulkpush's exact per-line semantics -------------------------

_WS = b" \t\r\n\x0b\x0c"
_BOM = b"\xef\xbb\xbf"


def _slow_lines(sub: bytes, first_of_stream: bool, validator, Record):
    """Per line, as bulkpush's _ndjson + Validator: (kept raws, rejected (idx, msg))."""
    kept: list[bytes] = []
    rejected: list[tuple[int, str]] = []
    lines = sub.split(b"\n")
    lines.pop()  # sub ends with "\n"
    for i, line in enumerate(lines):
        raw = line if line and line[0] not in _WS and line[-1] not in _WS else line.strip()
        if first_of_stream and i == 0 and raw.startswith(_BOM):
            raw = raw[3:].strip()
        if not raw:
            continue  # blank: not a product
        rec = Record("x", i, 0, raw)
        rej = validator(rec)
        if rej is None:
            kept.append(rec.raw)
        else:
            rejected.append((i, rej.message))
    return kept, rejected


def validate_block(block: bytes, validator, Record, *, first_of_stream: bool = False,
                   max_product: int = MAX_PRODUCT, stats: dict | None = None):
    """(body, starts, rejected) for a block of whole lines; see the module docstring."""
    starts = fast_ok(block, max_product)
    if starts is not None:
        if stats is not None:
            stats["fast_blocks"] = stats.get("fast_blocks", 0) + 1
        return block, starts, []
    if stats is not None:
        stats["slow_blocks"] = stats.get("slow_blocks", 0) + 1
    ls = line_starts_np(block)
    n = len(ls) - 1
    parts: list[bytes] = []
    rejected: list[tuple[int, str]] = []
    for a in range(0, n, SUB):
        b = min(a + SUB, n)
        sub = block[ls[a]:ls[b]]
        if not (first_of_stream and a == 0) and fast_ok(sub, max_product) is not None:
            parts.append(sub)
            if stats is not None:
                stats["fast_sub"] = stats.get("fast_sub", 0) + 1
            continue
        if stats is not None:
            stats["slow_sub"] = stats.get("slow_sub", 0) + 1
        kept, rej = _slow_lines(sub, first_of_stream and a == 0, validator, Record)
        if kept:
            parts.append(b"\n".join(kept) + b"\n")
        rejected.extend((a + i, m) for i, m in rej)
    body = b"".join(parts)
    return body, line_starts_np(body), rejected


def split_blocks(data: bytes, size: int) -> list[bytes]:
    """Cut data (whole lines) into blocks of about ``size`` bytes of whole lines."""
    out = []
    pos = 0
    n = len(data)
    while pos < n:
        end = min(pos + size, n)
        if end < n:
            j = data.rfind(b"\n", pos, end)
            end = j + 1 if j >= pos else data.find(b"\n", end) + 1 or n
        out.append(data[pos:end])
        pos = end
    return out


def starts_bytes(starts) -> bytes:
    return starts.tobytes() if isinstance(starts, np.ndarray) else array("I", starts).tobytes()


# --- v2: the block's checks name their suspect lines; only those go through the Validator ----

import re as _re
from codecs import utf_8_decode as _utf8

_BYTE = _re.compile(r"\(byte (\d+)\)")
_INDEX = _re.compile(r"\$\[(\d+)\]")


def _lines_of(nl: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Line index of each byte position (a line's "\\n" belongs to that line)."""
    return np.searchsorted(nl, positions, side="left")


def validate_block2(block: bytes, validator, Record, *, first_of_stream: bool = False,
                    max_product: int = MAX_PRODUCT, stats: dict | None = None):
    """Like validate_block, but a failing block is not redone line by line: every check
    names the lines it fails on (vectorized), msgspec errors are located by their byte
    offset or value index, and only those suspect lines meet bulkpush's Validator."""
    if isinstance(block, memoryview):  # a view of the start of a reused bytearray
        src, end = block.obj, block.nbytes
    else:
        src, end = block, len(block)
    arr = np.frombuffer(block, np.uint8)
    nl = np.flatnonzero(arr == 10)
    n = len(nl)
    starts = np.empty(n + 1, np.int64)
    starts[0] = 0
    starts[1:] = nl + 1
    suspect = arr[starts[:-1]] != 123  # (a blank line starts with its own "\n")
    suspect |= arr[np.maximum(nl - 1, 0)] != 125
    suspect |= (nl - starts[:-1]) > max_product
    if src.find(b"[", 0, end) >= 0:
        suspect[_lines_of(nl, np.flatnonzero(arr == 91))] = True
    if src.find(b"\r", 0, end) >= 0:
        suspect[_lines_of(nl, np.flatnonzero(arr == 13))] = True
    # count("{") == n proves one "{" per line only when every line has one at its start
    if suspect.any() or src.count(b"{", 0, end) != n:
        per_line = np.bincount(_lines_of(nl, np.flatnonzero(arr == 123)), minlength=n)
        suspect |= per_line != 1
    if not (src.isascii() if end == len(src) else int(arr.max(initial=0)) < 128):
        pos = 0
        while True:
            try:
                _utf8(memoryview(block)[pos:], "strict", True)  # (makes a str; a C check would not)
                break
            except UnicodeDecodeError as e:
                line = int(_lines_of(nl, np.array([pos + e.start]))[0])
                suspect[line] = True
                pos = int(starts[line + 1])
    # msgspec over each run of non-suspect lines; errors name a line
    mv = memoryview(block)
    todo = []
    good = ~suspect
    if good.all():
        todo.append((0, n))
    else:
        edges = np.flatnonzero(np.diff(np.concatenate(([0], good.view(np.int8), [0]))))
        todo.extend(zip(edges[0::2].tolist(), edges[1::2].tolist()))
    while todo:
        a, b = todo.pop()
        if a >= b:
            continue
        try:
            if len(_decode_lines(mv[starts[a]:starts[b]])) == b - a:
                continue
            suspect[a:b] = True  # cannot happen after the byte checks; be safe
        except msgspec.ValidationError as e:
            m = _INDEX.search(str(e))
            if m is None:
                suspect[a:b] = True
                continue
            k = a + int(m.group(1))
            suspect[max(k - 1, a):k + 1] = True  # value k starts in line k-1 (after its
            todo.append((k + 1, b))               # object) or at line k; lines < k-1 passed
        except (msgspec.DecodeError, RecursionError) as e:
            m = _BYTE.search(str(e))
            if m is None:
                suspect[a:b] = True  # e.g. "truncated": unlocated; the Validator sorts it out
                continue
            line = int(_lines_of(nl, np.array([starts[a] + int(m.group(1))]))[0])
            line = min(max(line, a), b - 1)
            suspect[line] = True  # the byte checks make a syntax error land in its own
            todo.append((line + 1, b))  # line: the lines before it were decoded and passed
    bad = np.flatnonzero(suspect)
    if stats is not None:
        stats["suspect_lines"] = stats.get("suspect_lines", 0) + len(bad)
        stats["blocks"] = stats.get("blocks", 0) + 1
    if len(bad) == 0:
        return block, starts.astype(np.uint32), []
    rejected = []
    pieces = []
    prev = 0
    lens = np.diff(starts)  # physical length of each line, "\n" included
    keep = np.ones(n, bool)
    for i in bad.tolist():
        line = bytes(mv[starts[i]:nl[i]])
        raw = line if line and line[0] not in _WS and line[-1] not in _WS else line.strip()
        if first_of_stream and i == 0 and raw.startswith(_BOM):
            raw = raw[3:].strip()
        if not raw:
            out = None  # blank: not a product
        else:
            rec = Record("x", i, 0, raw)
            rej = validator(rec)
            if rej is not None:
                rejected.append((i, rej.message))
                out = None
            else:
                out = rec.raw
        if out is None or out != line:
            pieces.append(mv[starts[prev]:starts[i]])
            if out is None:
                keep[i] = False
            else:
                pieces.append(out + b"\n")
                lens[i] = len(out) + 1
            prev = i + 1
    if not pieces:  # every suspect line was valid as it stands
        return block, starts.astype(np.uint32), []
    pieces.append(mv[starts[prev]:starts[n]])
    body = b"".join(pieces)
    lens = lens[keep]
    out_starts = np.zeros(len(lens) + 1, np.uint32)
    np.cumsum(lens, out=out_starts[1:])  # no second scan of the body
    return body, out_starts, rejected
