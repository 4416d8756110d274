"""A py-spy profile of one benchmark child, summarised.

``profile_child(args, path)`` runs ``python args...`` under ``py-spy record``
(every thread, native frames off, idle samples left out), keeps the
collapsed stacks in ``path`` and returns a summary: where the samples are by
leaf function (self time), by bulkpush module anywhere on the stack
(inclusive), and how many threads were busy on average. py-spy samples every
thread, so the reader thread and the compression pool are seen as well as
the event loop (pyinstrument would see the main thread only).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RATE_HZ = 200
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def _short(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return file.lstrip("/")


def _frame(text: str) -> tuple[str, str]:
    m = _FRAME.match(text.strip())
    if m is None:
        return text.strip(), ""
    return m.group("func"), _short(m.group("file"))


def summarise(collapsed: str, seconds: float, top: int = 15) -> dict[str, Any]:
    """Self and inclusive shares of the samples in a collapsed-stacks profile."""
    total = 0
    leaf: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if frames and frames[0].startswith("thread ("):
            threads[frames[0]] += count
            frames = frames[1:]
        if not frames:
            continue
        total += count
        func, file = _frame(frames[-1])
        leaf[f"{func} ({file})"] += count
        seen = set()
        for text in frames:
            _, file = _frame(text)
            if file.startswith("bulkpush/") and file not in seen:
                seen.add(file)
                modules[file] += count
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "rate_hz": RATE_HZ,
        "seconds": seconds,
        "busy_threads_mean": total / (RATE_HZ * seconds) if seconds > 0 else None,
        "threads_seen": len(threads),
        "top_self": [[name, count / total] for name, count in leaf.most_common(top)],
        "bulkpush_modules_inclusive": [[m, c / total] for m, c in modules.most_common()],
    }


def profile_child(args: Sequence[str], path: Path, *, timeout: float = 300) -> dict[str, Any]:
    """Run ``python args...`` under py-spy; write its stacks to ``path``; summarise."""
    exe = py_spy()
    if exe is None:
        return {"skipped": "py-spy is not installed (scripts/bench installs the bench extra)"}
    cmd = [
        exe, "record", "--threads", "--format", "raw", "--rate", str(RATE_HZ),
        "--output", str(path), "--", sys.executable, *args,
    ]  # fmt: skip
    t = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    seconds = time.monotonic() - t
    if proc.returncode != 0 or not path.exists():
        return {"skipped": f"py-spy failed ({proc.returncode}): {proc.stderr[-500:]}"}
    summary = summarise(path.read_text(), seconds)
    summary["file"] = path.name
    summary["command"] = "py-spy record --threads --format raw -- python " + " ".join(args[:2])
    return summary
