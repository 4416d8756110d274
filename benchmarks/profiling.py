"""A py-spy profile of one benchmark child, summarised.

``profile_child(args, path)`` runs ``python args...`` under ``py-spy record``
(every thread, native frames off, idle samples left out), keeps the
collapsed stacks in ``path`` and returns a summary: where the samples are by
leaf function (self time), by bulkpush module anywhere on the stack
(inclusive), by thread, and how many threads were busy on average. Shares
are of all samples; samples of a thread waiting (a pool thread on its
queue, the event loop in ``select``) are counted apart as waiting. py-spy samples every
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


# Leaves where a thread waits rather than works (py-spy's idle detection misses
# these: a pool thread blocked on its queue, the event loop in select).
_WAITS = {
    ("_worker", "concurrent/futures/thread.py"),
    ("EpollSelector.select", "selectors.py"),
    ("Condition.wait", "threading.py"),
    ("Event.wait", "threading.py"),
    ("Thread._wait_for_tstate_lock", "threading.py"),
}
_THREAD = re.compile(r"^thread \(\d+\)(?:: (?P<name>.*))?$")


def _thread_group(frame: str) -> str:
    m = _THREAD.match(frame)
    name = (m.group("name") if m else None) or "unnamed"
    return re.sub(r"_\d+$", "", name)  # pool threads: "bulkpush-gzip_0" -> "bulkpush-gzip"


def summarise(collapsed: str, seconds: float, top: int = 15) -> dict[str, Any]:
    """Self and inclusive shares of the samples in a collapsed-stacks profile."""
    total = 0
    waiting = 0
    leaf: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    threads_busy: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        group = "unnamed"
        if frames and frames[0].startswith("thread ("):
            group = _thread_group(frames[0])
            frames = frames[1:]
        if not frames:
            continue
        total += count
        threads[group] += count
        func, file = _frame(frames[-1])
        if (func, file.split(":")[0]) in _WAITS:
            waiting += count
            continue
        threads_busy[group] += count
        leaf[f"{func} ({file})"] += count
        seen = set()
        for text in frames:
            _, file = _frame(text)
            if file.startswith("bulkpush/") and file not in seen:
                seen.add(file)
                modules[file] += count
    if not total:
        return {"samples": 0}
    busy = total - waiting
    return {
        "samples": total,
        "rate_hz": RATE_HZ,
        "seconds": seconds,
        "waiting_share": waiting / total,
        "busy_threads_mean": busy / (RATE_HZ * seconds) if seconds > 0 else None,
        "threads": [
            [name, count / total, threads_busy[name] / total]
            for name, count in threads.most_common()
        ],
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
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    seconds = time.monotonic() - t
    if proc.returncode != 0 or not path.exists():
        return {"skipped": f"py-spy failed ({proc.returncode}): {proc.stderr[-500:]}"}
    summary = summarise(path.read_text(), seconds)
    summary["file"] = path.name
    summary["command"] = "py-spy record --threads --format raw -- python " + " ".join(args[:2])
    return summary
