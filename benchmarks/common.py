"""What the scenarios share: child processes, medians, targets, the machine."""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

API_CEILING_PRODUCTS_PER_S = 300_000  # 30 requests/s x 10,000 products per request
PUBLISHED_RATE = 30.0
LIFTED_RATE = 1e6  # what bulkpush is told when the server has no limit
CHILD_TIMEOUT_S = 600.0
ROOT = Path(__file__).resolve().parent.parent  # children run here, so ``benchmarks`` imports


class ChildFailed(RuntimeError):
    """A benchmark child process failed or printed no JSON line."""


def run_child(
    args: Sequence[str], *, timeout: float = CHILD_TIMEOUT_S, cwd: Path = ROOT
) -> dict[str, Any]:
    """Run ``python args...`` in a fresh process; return the JSON object on its last line.

    The object gets ``process_cpu_s``: the user + system CPU seconds of the
    child over its whole life (start-up and imports included) and of any
    process it waited for, from ``getrusage(RUSAGE_CHILDREN)`` before and
    after (the suite waits for one child at a time; the benchmark server is
    not waited for until it stops, so it is not counted).
    """
    cmd = [sys.executable, *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"{' '.join(args[:3])} ran over {timeout:.0f} s") from exc
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-1500:]
        raise ChildFailed(f"{' '.join(args[:3])} exited {proc.returncode}: {tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["process_cpu_s"] = (after.ru_utime - before.ru_utime) + (
        after.ru_stime - before.ru_stime
    )
    return result


def per_million(seconds: float | None, products: float | None) -> float | None:
    """CPU seconds per million products."""
    if seconds is None or not products:
        return None
    return seconds / products * 1e6


def cpu_figures(runs: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Medians over client runs of their CPU: per million products and cores busy.

    ``cpu_s_per_m`` counts the client process's whole life (``process_cpu_s``:
    start-up, imports, the run); ``cpu_s_per_m_run`` only what the client
    measured itself over the run (``cpu_s``), without start-up.
    """

    def med(values: list[float | None]) -> float | None:
        kept = [v for v in values if v is not None]
        return median(kept) if kept else None

    return {
        "cpu_s_per_m": med([per_million(x.get("process_cpu_s"), x["products"]) for x in runs]),
        "cpu_s_per_m_run": med([per_million(x.get("cpu_s"), x["products"]) for x in runs]),
        "client_cores": med(
            [x["cpu_s"] / x["seconds"] for x in runs if x.get("cpu_s") and x["seconds"]]
        ),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def spread(values: Sequence[float]) -> list[float]:
    """[min, max] of the runs, for the results file."""
    return [float(min(values)), float(max(values))] if values else []


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def pct_floor(share: float) -> str:
    """A share as a percentage rounded down to 0.1, so 89.99% never shows as a met 90.0%."""
    return f"{math.floor(share * 1000 + 1e-9) / 10:.1f}%"


def process_cpu_s(pid: int | None) -> float | None:
    """CPU seconds (user + system) a running process has used so far (Linux /proc)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _machine_busy_s() -> float | None:
    """CPU seconds the whole machine has been busy (all cores), from ``/proc/stat``."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user).
    ticks = [int(x) for x in fields[1:9]]
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6] + ticks[7]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process and of every child it has waited for (and theirs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherLoad:
    """CPU used by everything outside this suite while a scenario ran.

    Other work on the machine (tests, builds, another benchmark) takes cores
    from the clients measured; this says how much: the machine's busy CPU
    time (``/proc/stat``) less the suite's own (``os.times``, which counts
    every child process once it has been waited for: call :meth:`finish`
    after the scenario's processes have ended).
    """

    def __init__(self) -> None:
        self._t = time.monotonic()
        self._busy = _machine_busy_s()
        self._own = _own_cpu_s()
        self._load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    def finish(self) -> dict[str, float | None]:
        """``other_cores``: mean cores used by others; ``loadavg_1m_before``."""
        seconds = time.monotonic() - self._t
        busy = _machine_busy_s()
        if self._busy is None or busy is None or seconds <= 0:
            return {"other_cores": None, "loadavg_1m_before": self._load}
        others = (busy - self._busy) - (_own_cpu_s() - self._own)
        return {"other_cores": max(0.0, others / seconds), "loadavg_1m_before": self._load}


@dataclass(slots=True)
class Target:
    """One target of the issue, checked: what it asks, what was measured, met or not."""

    id: str
    description: str
    target: str
    value: float | None
    met: bool
    measured: str
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "target": self.target,
            "value": self.value,
            "measured": self.measured,
            "met": self.met,
            "note": self.note,
        }


@dataclass(slots=True)
class Scenario:
    """What a scenario returns: its settings, figures (JSON-ready), targets, tables."""

    title: str
    settings: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "ok"  # ok | skipped | error
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "settings": self.settings,
            "figures": self.figures,
            "targets": [t.to_json() for t in self.targets],
            "notes": self.notes,
        }


@dataclass(slots=True)
class Context:
    """How the suite runs: mode, repetitions, where results go, how to say progress."""

    quick: bool
    runs: int
    out: Path
    profile: bool
    log: Callable[[str], None]
    runs_given: bool = False
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def progress(self, message: str) -> None:
        self.log(f"[{self.elapsed():6.1f} s] {message}")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Cores, CPU model, OS, Python and the versions of the libraries measured."""
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in ("bulkpush", "aiohttp", "orjson", "isal", "elasticsearch")
        },
    }
