"""Writing a JSON file so that it is never seen half-written (temp file, then rename)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

__all__ = ["write_json_atomic"]


def _temp_path(path: str | os.PathLike[str]) -> Path:
    final = Path(path)
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` so that ``path`` is never half-written.

    The bytes go to a temp file in the same directory (same filesystem, so
    the rename is atomic), are flushed to disk, then renamed over ``path``.
    """
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
