"""7. Slow links: every request inside the server's 10 s, the uplink kept busy (issue 16).

The Stream API ends a request that it takes more than 10 s to process with a
server error; on a user's uplink the body's transfer is most of that time.
The benchmark server reads every request body through one shared uplink of a
fixed bandwidth and answers 504 (``timed_out``, nothing stored) to a request
not answered 10 s after its head arrived (:mod:`bulkpush.emulator.uplink`,
docs/emulator.md, "The link"). The published rate limits hold; the server
counts lines only (throughput mode) and keeps the real 10 MB minimum of a
referenced request, measured before gzip as the emulator does.

For each link, 12.5 MB/s (100 Mbit/s) and 1.25 MB/s (10 Mbit/s), and each of
chunked and referenced streams with gzip and uncompressed bodies, ``bulkpush
push`` (the command line, a fresh process, its default options but
``--compression``) pushes a catalog of ~1 KB products sized so that the link
needs about 10-16 s for it. A push still running after ``3 x`` that time plus
15 s is stopped (SIGTERM to its process group, SIGKILL 5 s later) and
recorded as killed.

Measured per case, on the server side unless said: the products it stored;
the push's seconds (the client report's ``duration_s``: from the start of the
push to its end, without the interpreter's start-up; the time limit for a
killed push); the uploads it received, the ones it ended for taking over
10 s (``timed_out``), 429s, other refusals (e.g. a 422 for a referenced body
under 10 MB before gzip); the body bytes of uploads answered 2xx (as sent:
compressed when they were), and

    link use = accepted body bytes / (link bandwidth x seconds)

(the share of the link's capacity over the push that carried bytes the server
kept), beside link busy = every body byte the link carried / (bandwidth x
seconds) (timed-out and refused bodies included). From the client's JSON
report, ``link_mb_per_s`` and ``timed_out`` when it has them. Targets (issue
16): 0 requests over 10 s and link use >= 85 % in every case.

One run per case (``--runs N`` given: N, median seconds and link use, the
sum of timeouts): the link, not the CPU, sets the pace. ``--quick`` runs two
small cases.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.catalogs import catalog, describe
from benchmarks.common import (
    PUBLISHED_RATE,
    ROOT,
    ChildFailed,
    Context,
    Scenario,
    Target,
    median,
    pct_floor,
)
from benchmarks.server import TOKEN, BenchServer, ServerConfig, Upload
from bulkpush._compression import CompressionOptions, compress
from bulkpush.limits import STREAM_API

MBIT = 125_000  # bytes/s per Mbit/s
LINKS = {100: 100 * MBIT, 10: 10 * MBIT}  # Mbit/s -> bytes/s
REQUEST_TIMEOUT_S = STREAM_API.server_request_timeout_s
TARGET_LINK_USE = 0.85
# A push is killed after LIMIT_FACTOR x the link's time for its bytes plus LIMIT_SLACK_S.
LIMIT_FACTOR = 3.0
LIMIT_SLACK_S = 15.0
SAMPLE_BYTES = 8_000_000  # of the catalog, gzipped to estimate the bytes on the wire


@dataclass(frozen=True, slots=True)
class Case:
    """One push: the link (Mbit/s), the stream type, the body codec, the catalog size."""

    mbit: int
    stream_type: str  # chunked | referenced
    compression: str  # gzip | none
    products: int

    @property
    def bytes_per_s(self) -> float:
        return float(LINKS[self.mbit])

    @property
    def name(self) -> str:
        body = "gzip" if self.compression == "gzip" else "uncompressed"
        return f"{self.mbit} Mbit/s, {self.stream_type}, {body}"


# About 10-16 s of link time each with ~1 KB products that gzip about 4:1; a
# referenced body needs 10 MB before gzip. 200,000 and 500,000 are the throughput
# and memory scenarios' catalogs.
FULL_CASES = (
    Case(100, "chunked", "none", 200_000),
    Case(100, "chunked", "gzip", 500_000),
    Case(100, "referenced", "none", 200_000),
    Case(100, "referenced", "gzip", 500_000),
    Case(10, "chunked", "none", 20_000),
    Case(10, "chunked", "gzip", 80_000),
    Case(10, "referenced", "none", 20_000),
    Case(10, "referenced", "gzip", 80_000),
)
QUICK_CASES = (
    Case(100, "referenced", "none", 50_000),
    Case(10, "chunked", "gzip", 20_000),
)


def _wire_ratio(path: Path) -> float:
    """Catalog bytes per gzipped byte, from its first SAMPLE_BYTES (the client's default level)."""
    with path.open("rb") as fh:
        sample = fh.read(SAMPLE_BYTES)
    sample = sample[: sample.rfind(b"\n") + 1] or sample
    return len(sample) / max(1, len(compress(sample, CompressionOptions())))


def _push(
    server: BenchServer, case: Case, path: Path, stream: str, limit_s: float
) -> dict[str, Any]:
    """Run ``bulkpush push`` in a fresh process (its own process group); kill it at ``limit_s``."""
    with tempfile.TemporaryDirectory(prefix="bench-links-") as tmp:
        report_path = Path(tmp) / "report.json"
        cmd = [
            sys.executable, "-m", "bulkpush", "push", str(path),
            "--stream", stream, "--stream-type", case.stream_type,
            "--api-url", server.url, "--compression", case.compression,
            "--report", str(report_path), "--quiet",
        ]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, "BULKPUSH_TOKEN": TOKEN},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group: a kill reaches its reading processes too
        )
        killed = False
        try:
            _, stderr = proc.communicate(timeout=limit_s)
        except subprocess.TimeoutExpired:
            killed = True
            _kill_group(proc)
            _, stderr = proc.communicate()
        wall_s = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        report: dict[str, Any] | None = None
        if report_path.exists():
            try:
                report = json.loads(report_path.read_text())
            except ValueError:
                report = None
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "exit_code": proc.returncode,
        "killed": killed,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "report": report,
        "stderr_tail": "" if proc.returncode == 0 else (stderr or "")[-600:],
    }


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the push's process group (it started it), SIGKILL if still there after 5 s."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _server_view(uploads: list[Upload]) -> dict[str, Any]:
    """What the server's log says of one stream's uploads."""
    accepted = [u for u in uploads if 200 <= u.status < 300]
    refused = [u for u in uploads if u.status != 429 and not 200 <= u.status < 300]
    return {
        "uploads": len(uploads),
        "accepted_uploads": len(accepted),
        "accepted_bytes": sum(u.size for u in accepted),
        "accepted_products": sum(u.products for u in accepted),
        "timed_out": sum(1 for u in uploads if u.timed_out),
        "status_429": sum(1 for u in uploads if u.status == 429),
        # Neither accepted, throttled nor timed out: 422 (too small), 413, dropped...
        "refused": sum(1 for u in refused if not u.timed_out),
        "refused_statuses": sorted({u.status for u in refused if not u.timed_out}),
        "longest_accepted_s": max((u.duration_s for u in accepted), default=None),
        "longest_s": max((u.duration_s for u in uploads), default=None),
        "first_arrival": min((u.time for u in uploads), default=None),
        "last_end": max((u.time + u.duration_s for u in uploads), default=None),
    }


def _run_case(
    ctx: Context, server: BenchServer, case: Case, path: Path, ratio: float, run: int
) -> dict[str, Any]:
    size = path.stat().st_size
    wire = size / ratio if case.compression == "gzip" else size
    link_s = wire / case.bytes_per_s
    limit_s = LIMIT_FACTOR * link_s + LIMIT_SLACK_S
    name = f"links {case.mbit} {case.stream_type} {case.compression} {run}"
    stream = server.create_stream(name, case.stream_type)
    carried0 = server.uplink()["carried"] or 0.0
    pushed = _push(server, case, path, stream, limit_s)
    # Read at once: after a kill the server still drains what the socket buffers hold.
    carried = (server.uplink()["carried"] or 0.0) - carried0
    if pushed["killed"]:
        time.sleep(1.0)  # the server logs the uploads the kill cut off once it sees them end
    counters = server.counters(stream)
    view = _server_view(server.upload_log(stream))
    if pushed["report"] is None and not pushed["killed"]:
        # Not a result: the push could not run (a bad option, a crash).
        raise ChildFailed(
            f"bulkpush push ({case.name}) exited {pushed['exit_code']} without a report: "
            f"{pushed['stderr_tail']}"
        )
    report = pushed["report"] or {}
    seconds = pushed["wall_s"] if pushed["killed"] or not report else float(report["duration_s"])
    capacity = case.bytes_per_s * seconds
    window = None
    if view["first_arrival"] is not None:
        window = view["last_end"] - view["first_arrival"]
    row = {
        "expected_link_s": link_s,
        "limit_s": limit_s,
        "killed": pushed["killed"],
        "exit_code": pushed["exit_code"],
        "seconds": seconds,
        "seconds_source": "report" if report and not pushed["killed"] else "wall clock",
        "wall_s": pushed["wall_s"],
        "client_cores": pushed["cpu_s"] / pushed["wall_s"] if pushed["wall_s"] else None,
        "products": counters.get("products_accepted", 0),
        "catalog_products": case.products,
        "requests": view["uploads"],
        "timed_out": counters.get("timed_out", 0),
        "status_429": counters.get("throttled", 0),
        "refused": view["refused"],
        "refused_statuses": view["refused_statuses"],
        "accepted_bytes": view["accepted_bytes"],
        "carried_bytes": carried,
        "link_use": view["accepted_bytes"] / capacity if capacity > 0 else 0.0,
        "link_busy": carried / capacity if capacity > 0 else 0.0,
        "server_window_s": window,
        "longest_accepted_s": view["longest_accepted_s"],
        "longest_s": view["longest_s"],
        # The client's own account (keys of its JSON report; None when it has none).
        "client_accepted": report.get("accepted"),
        "client_requests": report.get("requests"),
        "client_retries": report.get("retries"),
        "client_bytes_sent": report.get("bytes_sent"),
        "client_link_mb_per_s": report.get("link_mb_per_s"),
        "client_timed_out": report.get("timed_out"),
        "client_stopped": report.get("stopped"),
        "stderr_tail": pushed["stderr_tail"],
    }
    outcome = f"killed after {pushed['wall_s']:.0f} s" if pushed["killed"] else "done"
    ctx.progress(
        f"  links: {case.name}, {case.products:,} products, run {run + 1}: {outcome}, "
        f"{seconds:.1f} s, {row['requests']} uploads, {row['timed_out']} over "
        f"{REQUEST_TIMEOUT_S:g} s, link use {pct_floor(row['link_use'])}"
    )
    return row


def _summary(case: Case, path: Path, ratio: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    uses = [r["link_use"] for r in runs]
    mid = sorted(runs, key=lambda r: r["link_use"])[(len(runs) - 1) // 2]
    return {
        "case": case.name,
        "mbit": case.mbit,
        "bytes_per_s": case.bytes_per_s,
        "stream_type": case.stream_type,
        "compression": case.compression,
        "catalog": describe(path),
        "gzip_ratio_sample": ratio,
        "runs": runs,
        # The median run by link use gives the other figures of the row.
        "median_run": runs.index(mid),
        "link_use": median(uses),
        "seconds": median([r["seconds"] for r in runs]),
        "timed_out_total": sum(r["timed_out"] for r in runs),
        "status_429_total": sum(r["status_429"] for r in runs),
        "refused_total": sum(r["refused"] for r in runs),
        "killed_runs": sum(1 for r in runs if r["killed"]),
        "incomplete_runs": sum(1 for r in runs if r["products"] < case.products),
    }


def _targets(scenario: Scenario, rows: list[dict[str, Any]]) -> None:
    for mbit, bytes_per_s in LINKS.items():
        mine = [r for r in rows if r["mbit"] == mbit]
        if not mine:
            continue
        speed = f"{bytes_per_s / 1e6:g} MB/s ({mbit} Mbit/s)"
        late = [r for r in mine if r["timed_out_total"]]
        total = sum(r["timed_out_total"] for r in mine)
        requests = sum(r2["requests"] for r in mine for r2 in r["runs"])
        scenario.targets.append(
            Target(
                id=f"links_{mbit}_timed_out",
                description=f"requests the server ended for taking over 10 s, {speed} link",
                target="0 in every case",
                value=float(total),
                met=total == 0,
                measured=f"{total} of {requests} uploads in {len(mine)} case(s)"
                + (
                    "; " + ", ".join(f"{r['case']}: {r['timed_out_total']}" for r in late)
                    if late
                    else ""
                ),
                note=(
                    "The server ends a request not answered 10 s after its head arrived "
                    "(the body's transfer included) with a 504 and stores nothing; the client "
                    "sends it again. Uploads over 10 s: "
                    + "; ".join(_case_detail(r) for r in late)
                    + "."
                    if late
                    else ""
                ),
            )
        )
        worst = min(mine, key=lambda r: r["link_use"])
        short = [r for r in mine if r["link_use"] < TARGET_LINK_USE]
        scenario.targets.append(
            Target(
                id=f"links_{mbit}_link_use",
                description=f"link carrying accepted bytes, {speed} link",
                target=">= 85% in every case",
                value=worst["link_use"],
                met=not short,
                measured=f"lowest {pct_floor(worst['link_use'])} ({worst['case']}); "
                + ", ".join(
                    f"{r['stream_type']} {_body(r['compression'])} {pct_floor(r['link_use'])}"
                    for r in mine
                ),
                note=(
                    "Under 85%: " + "; ".join(_case_detail(r) for r in short) + "." if short else ""
                ),
            )
        )


def _body(compression: str) -> str:
    return "gzip" if compression == "gzip" else "uncompressed"


def _case_detail(row: dict[str, Any]) -> str:
    r = row["runs"][row["median_run"]]
    ideal = r["accepted_bytes"] / row["bytes_per_s"]
    how = f"killed after {r['wall_s']:.0f} s" if r["killed"] else f"{r['seconds']:.1f} s"
    extra = ""
    if r["refused"]:
        extra = f", {r['refused']} upload(s) refused ({', '.join(map(str, r['refused_statuses']))})"
    return (
        f"{row['case']}: {how} where the link needs {ideal:.1f} s for the accepted bytes, "
        f"{r['timed_out']} of {r['requests']} uploads ended at 10 s{extra}, "
        f"link use {pct_floor(r['link_use'])}, link busy {pct_floor(r['link_busy'])}"
    )


def run(ctx: Context) -> Scenario:
    cases = QUICK_CASES if ctx.quick else FULL_CASES
    runs = ctx.runs if ctx.runs_given else 1
    paths = {c.products: catalog(c.products) for c in cases}
    ratios = {n: _wire_ratio(p) for n, p in paths.items()}
    configs = {
        mbit: ServerConfig(rate=PUBLISHED_RATE, uplink_bytes_per_s=float(LINKS[mbit]))
        for mbit in dict.fromkeys(c.mbit for c in cases)
    }
    scenario = Scenario(
        title="Slow links",
        settings={
            "servers": "; ".join(cfg.describe() for cfg in configs.values()),
            "client": "`bulkpush push --compression gzip|none` (its defaults otherwise), "
            "a fresh process per push",
            "cases": f"{len(cases)}, {runs} run(s) each",
            "catalogs": ", ".join(
                f"{n:,} products ({p.stat().st_size / 1e6:.0f} MB, gzip {ratios[n]:.1f}:1)"
                for n, p in paths.items()
            ),
            "time_limit": f"{LIMIT_FACTOR:g} x the link's time for the catalog's bytes "
            f"+ {LIMIT_SLACK_S:g} s, then the push is killed",
        },
        notes=[
            "One shared uplink per server: every request body is read through it in small "
            "pieces, each only once the link has had the time to carry it, so bodies in "
            "flight share its bandwidth and a slow read holds the client back (TCP "
            "back-pressure). A request not answered 10 s after its head arrived (the body's "
            "transfer included) is ended with a 504 and nothing of it is stored: the Stream "
            'API\'s rule (docs/emulator.md, "The link").',
            "**Link use** = body bytes of the uploads the server answered 2xx (as sent, "
            "compressed when they were) / (link bandwidth x the push's seconds): the share of "
            "what the link could carry over the push that carried bytes the server kept. "
            "**Link busy** counts every body byte the link carried (timed-out and refused "
            "bodies too). Seconds are the client report's `duration_s` (the push, without "
            "the interpreter's start-up), or the wall clock when the push was killed; the "
            "other figures are the server's (its counters and request log). The client's "
            "`link_mb_per_s` and `timed_out` are its report's keys (– when it has none); "
            "client cores: CPU seconds of the push's processes / its wall clock time (near 2 "
            "on 2 cores: the client, not the link, set the pace).",
            "Referenced streams: the server keeps the 10 MB minimum per request, measured on "
            "the body as decoded (before gzip), as the emulator does (docs/emulator.md, "
            "assumption 8); a body under it is refused with a 422.",
        ],
    )
    rows: list[dict[str, Any]] = []
    for mbit, config in configs.items():
        with BenchServer(config) as server:
            for case in (c for c in cases if c.mbit == mbit):
                path = paths[case.products]
                results = [
                    _run_case(ctx, server, case, path, ratios[case.products], r)
                    for r in range(runs)
                ]
                rows.append(_summary(case, path, ratios[case.products], results))
    scenario.figures = {"cases": rows, "target_link_use": TARGET_LINK_USE}
    _targets(scenario, rows)
    if any(r["refused_total"] and r["stream_type"] == "referenced" for r in rows):
        scenario.notes.append(
            "Some referenced uploads were refused (422 is the server's answer to a body under "
            "10 MB before gzip)."
        )
    return scenario
