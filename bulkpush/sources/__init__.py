"""Catalog readers: NDJSON, JSON arrays, CSV and bulkpush rejects files → records.

Every reader streams: memory holds one block (1 MiB) and the product being
read, never the file. Compression is found by magic bytes (gzip, zstd), not
by the name alone, for files, stdin and file objects alike.

The modules, one idea each: ``_open`` (paths, stdin, decompression, format
detection and the choice of reader), ``_framing`` (blocks, lines, the record
size cap), ``_sniff`` (what the first block says: binary, one JSON
document, the CSV delimiter), ``_ndjson``, ``_csv``, ``_jsonarray``, ``_objects`` (Python
iterables), ``_ranges`` (byte ranges of a file) and ``_read``
(:func:`iter_records`). A rejects file is read as NDJSON and unwrapped by
``bulkpush.report._rejects``, the module that also writes it. Each
reader's module docstring states its positions (``Record.line``,
``Record.offset``) and what it rejects.

Bounded records: a line longer than ``max_record_bytes`` (a keyword of
:func:`iter_records`, :meth:`FileRange.records` and :func:`iter_objects`;
by default 2,097,152, the Productsup Stream API's line limit) is not held
whole. Its first ``max_record_bytes + 1`` bytes become the record's ``raw``
and the rest is skipped; a ``raw`` that long can never pass validation
(whose limit is at most the target's line limit), so the product is
rejected as too large, at the right line, without the file ever being in
memory. A JSON array's elements are cut the same way, by a scan that never
holds more of one than the cap. (CSV rows over the cap are rejected
directly.)

Speed (same machine as validation's figures): NDJSON of ~1 KB lines is read
at ~700,000 records/s (~700 MB/s) from the page cache, one thread.

Errors: a file that cannot be opened, or whose bytes cannot be read or
decompressed at all (corrupt gzip), raises ``SourceError`` naming it. A gzip
or zstd file cut short yields every product before the cut first, then
raises ("… is truncated at byte N …"). When the format is detected (not
given), ``_sniff`` refuses a file that looks binary and one that holds a
JSON object spread over lines (not an array, not NDJSON), each with one
``SourceError`` saying so. Nothing else is raised for any content: a bad
product becomes a ``Record`` that validation rejects, or a ``Rejection``
(stage ``"client"``) when the source itself cannot make a product of it.

CSV cells are split at the delimiter given (``csv_delimiter``), else at the
one sniffed from the header line: the most frequent of ``,`` ``;`` tab
``|`` outside quotes.
"""

from __future__ import annotations

from bulkpush.sources._csv import MSG_CSV_EXTRA_CELLS, MSG_CSV_MALFORMED, MSG_CSV_ROW_TOO_LARGE
from bulkpush.sources._framing import DEFAULT_MAX_RECORD_BYTES
from bulkpush.sources._jsonarray import MSG_JSON_BROKEN, MSG_UNENCODABLE
from bulkpush.sources._objects import iter_objects
from bulkpush.sources._open import Format, detect_format, open_source
from bulkpush.sources._ranges import FileRange, split_ranges
from bulkpush.sources._read import iter_records

__all__ = [
    "DEFAULT_MAX_RECORD_BYTES",
    "MSG_CSV_EXTRA_CELLS",
    "MSG_CSV_MALFORMED",
    "MSG_CSV_ROW_TOO_LARGE",
    "MSG_JSON_BROKEN",
    "MSG_UNENCODABLE",
    "FileRange",
    "Format",
    "detect_format",
    "iter_objects",
    "iter_records",
    "open_source",
    "split_ranges",
]
