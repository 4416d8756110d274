"""What a catalog's first bytes say before it is read: binary, one JSON document, CSV delimiter.

Used when the format is detected (not given): a file that is not UTF-8 text,
or that holds one pretty-printed JSON object instead of an array or NDJSON,
is refused with one ``SourceError`` that says what the file looks like,
rather than read into a rejection per line. Each check looks at the block
already read (at most a few KiB of it, or the first line), never the file.
"""

from __future__ import annotations

import codecs
import json

from bulkpush.errors import SourceError
from bulkpush.sources._framing import BLOCK, BOM, WS, Reader

__all__ = [
    "CSV_DELIMITERS",
    "check_not_binary",
    "check_not_one_document",
    "sniff_delimiter",
]

#: The delimiters sniffed from a CSV header line, preferred in this order on a tie.
CSV_DELIMITERS = (",", ";", "\t", "|")

_SAMPLE = 8192  # bytes of the first block looked at for binary content
# Bytes that are never in text: C0 controls but tab, line feed, vertical tab,
# form feed and carriage return.
_CONTROLS = bytes(b for b in range(32) if b not in b"\t\n\x0b\x0c\r")
_KNOWN = (
    (b"PK\x03\x04", "a zip archive (an .xlsx workbook is one too): unpack it or export CSV"),
    (b"BZh", "bzip2-compressed: decompress it first (bulkpush reads gzip and zstd)"),
    (b"\xfd7zXZ\x00", "xz-compressed: decompress it first (bulkpush reads gzip and zstd)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive: unpack it first"),
    (b"PAR1", "a Parquet file: export it as NDJSON or CSV"),
    (b"\xff\xfe", "UTF-16 text: save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text: save it as UTF-8"),
    (b"%PDF", "a PDF document"),
)


def _describe(head: bytes) -> str:
    for magic, what in _KNOWN:
        if head.startswith(magic):
            return what
    first = " ".join(f"{b:02x}" for b in head[:8])
    return f"it starts with the bytes {first}; bulkpush reads UTF-8 NDJSON, JSON or CSV"


def _looks_binary(sample: bytes) -> bool:
    if b"\x00" in sample:
        return True
    try:
        # Not final: the sample may end inside a character.
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return False
    except UnicodeDecodeError:
        pass
    # Text in another 8-bit encoding (Latin-1 accents) stays text: its rows are
    # rejected one by one as not UTF-8. Binary data is full of undecodable
    # bytes and control characters.
    bad = sample.decode("utf-8", "replace").count("\ufffd")
    bad += sum(sample.count(c) for c in _CONTROLS)
    return bad * 10 > len(sample)


def check_not_binary(head: bytes, source: str, *, decompressed: bool) -> None:
    """Raise ``SourceError`` when ``head``, a catalog's first bytes, is not text."""
    sample = head[:_SAMPLE]
    if not _looks_binary(sample):
        return
    if decompressed:
        msg = f"{source} looks binary once decompressed (not text): {_describe(sample)}"
    else:
        msg = f"{source} looks binary (not text, not gzip or zstd): {_describe(sample)}"
    raise SourceError(msg, source=source)


def _continues(first: str) -> bool:
    """Whether ``first``, a line starting with ``{``, is JSON cut short at its end.

    A pretty-printed object's lines end between tokens (``{``, ``"id": "1",``),
    so the parser fails exactly at the end of the line; a broken NDJSON line
    fails inside it (or parses).
    """
    try:
        json.loads(first)
    except json.JSONDecodeError as exc:
        return exc.pos >= len(first.rstrip())
    return False


def check_not_one_document(head: bytes, read: Reader, source: str) -> bytes:
    """Raise ``SourceError`` when a catalog detected as NDJSON is JSON spread over lines.

    ``head``: the bytes read so far (at least the first non-blank line).
    Returns ``head`` and whatever more had to be read from ``read`` to be sure.
    """
    body = head[len(BOM) :] if head.startswith(BOM) else head
    body = body.lstrip(WS)
    if body[:1] != b"{":
        return head
    end = body.find(b"\n")
    if end < 0:
        return head  # one line, the whole file or over the cap: NDJSON reads it
    if not _continues(body[:end].decode("utf-8", "replace")):
        return head
    expected = "expected an array of products or NDJSON (one product per line)"
    text = body.decode("utf-8", "replace")
    decode = json.JSONDecoder().raw_decode
    try:
        _, stop = decode(text)
    except json.JSONDecodeError:
        # The block read may end inside a string: look at its whole lines only.
        lines = text[: text.rfind("\n")].rstrip()
        try:
            decode(lines)
        except json.JSONDecodeError as exc:
            if exc.pos < len(lines):
                return head  # broken JSON: NDJSON reads it and rejects what is broken
        more = read(BLOCK)
        if not more:
            return head  # the whole file, broken at its end: the same
        # The object goes on past the block read: a document, not NDJSON.
        msg = f"{expected}: {source} holds a JSON object spread over many lines"
        raise SourceError(msg, source=source) from None
    rest = text[stop:].strip()
    if not rest:
        rest = read(BLOCK).strip(WS).decode("utf-8", "replace")
    if rest:
        msg = f"{expected}: {source} holds JSON objects spread over several lines each"
    else:
        msg = f"{expected}: {source} holds a single JSON object"
    raise SourceError(msg, source=source)


def sniff_delimiter(head: bytes) -> str:
    """The CSV delimiter of a header line: the most frequent of ``CSV_DELIMITERS`` outside quotes.

    ``head``: the catalog's first bytes (a BOM and blank lines are skipped).
    None of them (a one-column file): ``","``.
    """
    body = head[len(BOM) :] if head.startswith(BOM) else head
    body = body.lstrip(WS)
    end = body.find(b"\n")
    line = body if end < 0 else body[:end]
    counts = dict.fromkeys(CSV_DELIMITERS, 0)
    quoted = False
    for char in line.decode("utf-8", "replace"):
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(CSV_DELIMITERS, key=lambda d: counts[d])  # max keeps the first on a tie
    return best if counts[best] else ","
