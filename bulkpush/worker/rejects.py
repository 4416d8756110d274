"""The rejects files of a job's parts, and their merge into the job's rejects file.

Each attempt at a part writes its own file (:func:`rejects_part_path`); the
worker that finishes the job merges them (:func:`merge_rejects`).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import re
import tempfile
from collections.abc import Iterator

__all__ = ["check_outputs", "check_writable", "merge_rejects", "rejects_part_path"]


def rejects_part_path(rejects: str, part: int, attempt: int, first_line: int) -> str:
    """The rejects file of one attempt at a part: ``rejects.partNNNNN-A.lineL``.

    ``first_line`` is the line the attempt starts reading at (its part's
    checkpoint), which :func:`merge_rejects` needs to drop what the attempt
    before it wrote twice.
    """
    return f"{rejects}.part{part:05d}-{attempt}.line{first_line}"


# The names rejects_part_path makes, ``.tmp`` while the attempt writes (or
# after it died); names without ``.lineL`` were made before it was recorded.
_PART_FILE = re.compile(r"\.part(\d+)-(\d+)(?:\.line(\d+))?(?:\.tmp)?")
_LINE_KEY = b',"line":'


def _line_of(line: bytes) -> int | None:
    """The source line a rejects line names: its last key (see ``report.rejects_line``)."""
    at = line.rfind(_LINE_KEY)
    try:
        return int(line[at + len(_LINE_KEY) :].rstrip(b"}\r\n")) if at >= 0 else None
    except ValueError:
        return None


def _complete_lines(name: str) -> Iterator[bytes]:
    """A rejects file's lines, but for the half-written last line of a killed worker."""
    with open(name, "rb") as fh:
        for line in fh:
            if line.endswith(b"\n"):
                yield line


def check_outputs(*, rejects: str | None, report: str | None) -> str | None:
    """Why a job's rejects or report file cannot be written (:func:`check_writable`), or None."""
    problems = [
        problem
        for path, what in ((rejects, "rejects"), (report, "report"))
        if path and (problem := check_writable(path, what))
    ]
    return "; ".join(problems) or None


def check_writable(path: str, what: str) -> str | None:
    """Why ``path`` (the job's ``what`` file) cannot be written, or None if it can.

    Probed as the worker will write it: a file created exclusively in its
    directory (then removed), so a missing or read-only directory, or a
    directory where the file should be, is found before anything is sent.
    """
    if os.path.isdir(path):
        return f"cannot write the {what} file {path}: it is a directory"
    folder = os.path.dirname(path) or "."
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".bulkpush-probe.")
    except OSError as exc:
        return f"cannot write the {what} file {path}: {exc.strerror or exc} ({folder})"
    os.close(fd)
    with contextlib.suppress(OSError):
        os.remove(probe)
    return None


def merge_rejects(path: str) -> int:
    """Merge the parts' rejects files (``path.part*``) into ``path``; return its line count.

    Files go in part order, and a part's attempts in the order they ran. An
    attempt that did not finish its part left records above its checkpoint
    to the next attempt, which read them again from its first line (in the
    file's name) and wrote them again if they were still rejected: of each
    attempt but the last, only the lines below the next attempt's first line
    are kept, so a product rejected twice by a resent window is written
    once, with the verdict of the attempt that committed it. A whole-file
    part restarts at line 1, so only its last attempt's lines are kept. The
    half-written last line of a killed worker's file is dropped.

    Memory does not grow with the number of rejects: files are streamed, and
    a line is placed by the position it names, not compared with the others
    (but for the parts of a job queued before positions were recorded in the
    names, whose lines are de-duplicated as wholes). Names that are not part
    files are left alone. Written atomically; the part files are removed.
    """
    found: list[tuple[int, int, int | None, str]] = []
    for name in glob.glob(glob.escape(path) + ".part*"):
        m = _PART_FILE.fullmatch(name, len(path))
        if m is not None:
            first = int(m[3]) if m[3] is not None else None
            found.append((int(m[1]), int(m[2]), first, name))
    found.sort()
    # Created exclusively, mode 0600, under a name nobody can guess and plant.
    folder, base = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=folder or ".", prefix=f".{base}.", suffix=".merging")
    count = 0
    with os.fdopen(fd, "wb") as out:
        for _, group in itertools.groupby(found, key=lambda f: f[0]):
            attempts = list(group)
            legacy = any(first is None for _, _, first, _ in attempts[1:])
            seen: set[bytes] = set()
            for i, (_, _, _, name) in enumerate(attempts):
                below = attempts[i + 1][2] if i + 1 < len(attempts) else None
                for line in _complete_lines(name):
                    if legacy:
                        if line in seen:
                            continue
                        seen.add(line)
                    elif below is not None and (n := _line_of(line)) is not None and n >= below:
                        continue
                    out.write(line)
                    count += 1
    os.replace(tmp, path)
    for *_, name in found:
        with contextlib.suppress(OSError):
            os.remove(name)
    return count
