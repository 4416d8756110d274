"""The benchmark suite: ``python -m benchmarks`` (or ``scripts/bench``).

    python -m benchmarks [--quick] [--only NAME[,NAME]] [--runs N] [--out DIR]
                         [--no-profile] [--cache DIR]

Scenarios, in order: ``rate``, ``throughput``, ``peers``, ``at_limit``,
``memory``, ``compression``, ``links`` (see each module in
``benchmarks/scenarios/``). The server
runs in its own process (``benchmarks.server``) and every client run in a
fresh one; each figure is the median of ``--runs`` runs (3, or 1 with
``--quick``, which also uses smaller catalogs and finishes in under 2
minutes; without ``--runs`` the full throughput scenario makes 5, the most
load-sensitive figure). A full
run also profiles one end-to-end throughput run with py-spy
(``--no-profile`` skips it).

Results: ``DIR/latest.json`` (``DIR/quick.json`` with ``--quick``), DIR
being ``benchmarks/results`` unless ``--out`` says, the SVG charts drawn from
it (``DIR/NAME.svg``, ``DIR/quick-NAME.svg``; :mod:`benchmarks.charts`, which
needs matplotlib from the ``bench`` extra: without it the report has no
charts) and the readable report generated from it: ``benchmarks/RESULTS.md``
for a full run into the default directory, else ``DIR/RESULTS.md``
(``DIR/QUICK.md``). With ``--only``, the scenarios run replace theirs in an
existing results file and the others are kept (each scenario records when it was measured).

The exit status is 1 when a scenario failed to run, else 0 (a target not
met is a result, not a failure).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import charts, render
from benchmarks.common import Context, OtherLoad, Scenario, machine
from benchmarks.scenarios import at_limit, compression, links, memory, peers, rate, throughput

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
DEFAULT_REPORT = HERE / "RESULTS.md"

SCENARIOS: dict[str, Callable[[Context], Scenario]] = {
    "rate": rate.run,
    "throughput": throughput.run,
    "peers": peers.run,
    "at_limit": at_limit.run,
    "memory": memory.run,
    "compression": compression.run,
    "links": links.run,
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="The bulkpush benchmark suite."
    )
    parser.add_argument("--quick", action="store_true", help="smaller and fewer runs (< 2 min)")
    parser.add_argument(
        "--only", default="", metavar="NAME[,NAME]", help=f"among: {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (3; quick 1)")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument("--cache", type=Path, default=None, help="catalog cache directory")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}: use {', '.join(SCENARIOS)}")
    args.names = [n for n in SCENARIOS if n in names] if names else list(SCENARIOS)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _git() -> dict[str, Any]:
    """The commit measured, and whether the package had uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", *args],
                cwd=HERE.parent,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    status = git("status", "--porcelain", "--", "bulkpush")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "bulkpush_dirty": None if status is None else bool(status),
    }


def _peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _log(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.cache is not None:
        os.environ["BULKPUSH_BENCH_CACHE"] = str(args.cache.resolve())
    mode = "quick" if args.quick else "full"
    runs = args.runs or (1 if args.quick else 3)
    out = (args.out or DEFAULT_OUT).resolve()
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{'quick' if args.quick else 'latest'}.json"
    if args.out is None and not args.quick:
        md_path = DEFAULT_REPORT
    else:
        md_path = out / ("QUICK.md" if args.quick else "RESULTS.md")
    ctx = Context(
        quick=args.quick,
        runs=runs,
        out=out,
        profile=not args.quick and not args.no_profile,
        log=_log,
        runs_given=args.runs is not None,
    )
    data: dict[str, Any] = {}
    if args.only and json_path.exists():
        try:
            data = json.loads(json_path.read_text())
        except (OSError, ValueError):
            data = {}
    scenarios: dict[str, Any] = data.get("scenarios", {})
    # Earlier invocations whose figures this file keeps (--only replaces some only).
    history: list[dict[str, Any]] = data.get("history", [])
    if data.get("suite"):
        history = [data["suite"], *history][:10]
    started = datetime.now(UTC)
    ctx.progress(f"bulkpush benchmarks, {mode} mode, {runs} run(s) per figure: {args.names}")
    failed = False
    for name in args.names:
        ctx.progress(f"{name}: start")
        t = time.monotonic()
        load = OtherLoad()
        try:
            scenario = SCENARIOS[name](ctx)
        except Exception as exc:
            failed = True
            scenario = Scenario(title=name, status="error", reason=f"{type(exc).__name__}: {exc}")
            scenario.notes.append(traceback.format_exc()[-3000:])
            ctx.progress(f"{name}: ERROR {type(exc).__name__}: {exc}")
        entry = scenario.to_json()
        entry["duration_s"] = time.monotonic() - t
        entry["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        entry["mode"] = mode
        entry["machine_load"] = load.finish()
        entry["git"] = _git()
        scenarios[name] = entry
        met = sum(1 for x in entry["targets"] if x["met"])
        status = (
            entry["status"] if entry["status"] != "ok" else f"{met}/{len(entry['targets'])} met"
        )
        reason = f" ({entry['reason']})" if entry["reason"] else ""
        ctx.progress(f"{name}: done in {entry['duration_s']:.0f} s, {status}{reason}")
        # Written after every scenario, so an interrupted run keeps what it measured.
        data = {
            "suite": {
                "mode": mode,
                "runs": runs,
                "started_at": started.isoformat(timespec="seconds"),
                "duration_s": ctx.elapsed(),
                "scenarios_run": args.names,
                "command": " ".join(["python -m benchmarks", *(argv or sys.argv[1:])]),
                "driver_peak_rss_mb": _peak_rss_mb(),
                "git": _git(),
            },
            "history": history,
            "machine": machine(),
            "scenarios": {n: scenarios[n] for n in SCENARIOS if n in scenarios},
        }
        _write_atomic(json_path, json.dumps(data, indent=1) + "\n")
        prefix = "quick-" if args.quick else ""
        failed_charts = charts.draw_in_child(json_path, out, prefix)
        if failed_charts:
            ctx.progress(f"charts not drawn: {failed_charts}")
        chart_links = charts.links(data, out, md_path, prefix)
        _write_atomic(md_path, render.render(data, chart_links))
    ctx.progress(f"results: {json_path}, {md_path}")
    for entry in data["scenarios"].values():
        for target in entry["targets"]:
            mark = "✔" if target["met"] else "✘"
            _log(f"  {mark} {target['id']}: {target['measured']} (target {target['target']})")
    return 1 if failed else 0
