"""Writing a JSON file so that it is never seen half-written (temp file, then rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

__all__ = ["write_json_atomic"]


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` so that ``path`` is never half-written.

    The bytes go to a temp file in the same directory (same filesystem, so
    the rename is atomic), are flushed to disk, then renamed over ``path``.
    The temp file is created exclusively (``O_EXCL``) under an unpredictable
    name, mode 0600: nobody can plant it, or read the report while it is
    written; ``path`` keeps that mode.
    """
    final = Path(path)
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
