"""5. Memory: peak RSS does not grow with the catalog.

Catalogs of several sizes are pushed to the server with every limit lifted,
in throughput mode (it stores nothing, so it is never the bottleneck), each
push in a fresh process. bulkpush runs with its defaults (its default
``--workers``: the cores; a plain NDJSON catalog of at least 32 MiB is read by
that many reading processes), told the server has no rate limit. Peak RSS is
the sum, over the client process and every process it started, of each one's
peak RSS (``VmHWM``; :mod:`benchmarks.bulkpush_run` samples the reading
processes from ``/proc`` every ~50 ms).

Two kinds of products: about 1 KB (``regular``; the targets: 1,200,000 vs
200,000 products) and small ones (about 125 bytes), whose 200,000-product
catalog (25 MB) is under 32 MiB and so read without reading processes.
"""

from __future__ import annotations

from typing import Any

from benchmarks.catalogs import Kind, catalog, describe
from benchmarks.common import LIFTED_RATE, Context, Scenario, Target, median, run_child, spread
from benchmarks.server import BenchServer, ServerConfig

MAX_RATIO = 1.2
MAX_PEAK_MB = 250.0
# (kind, products): the regular sizes make the targets; the small ones are shown too.
SIZES_QUICK: tuple[tuple[Kind, int], ...] = (
    ("regular", 50_000),
    ("regular", 200_000),
    ("small", 200_000),
    ("small", 2_000_000),
)
SIZES_FULL: tuple[tuple[Kind, int], ...] = (
    ("regular", 200_000),
    ("regular", 1_200_000),
    ("small", 200_000),
    ("small", 2_000_000),
)
TARGET_KIND: Kind = "regular"
KIND_TEXT = {"regular": "about 1 KB", "small": "about 125 bytes"}


def run(ctx: Context) -> Scenario:
    sizes = SIZES_QUICK if ctx.quick else SIZES_FULL
    config = ServerConfig(rate=None, latency_s=0.0, throughput_mode=True)
    scenario = Scenario(
        title="Memory",
        settings={
            "server": config.describe(),
            "products": [f"{n:,} {kind}" for kind, n in sizes],
            "product_kinds": ", ".join(f"{k}: {v}" for k, v in KIND_TEXT.items()),
            "runs": ctx.runs,
            "client": "bulkpush defaults (default workers, 10,000 products per request, gzip), "
            "rate lifted",
        },
        notes=[
            "Peak RSS is the sum of VmHWM over the client process (the interpreter, every "
            "thread) and every process it started (its reading processes and multiprocessing's "
            "resource tracker), each at its last sighting: a sum of peaks, so at most what "
            "they held at once. 'Client alone' is the client process's own.",
            "The 10,000,000-product catalog of small products of earlier suites is no longer "
            "pushed (it took 70 s of the full suite's budget): the ~1 KB catalogs of "
            "200,000 and 1,200,000 products (1.2 GB) now make the flatness target.",
            "The 200,000 small products (25 MB) are under process_min_bytes (32 MiB): that push "
            "has no reading processes, unlike the larger ones.",
        ],
    )
    rows: list[dict[str, Any]] = []
    with BenchServer(config) as server:
        for kind, n in sizes:
            path = catalog(n, kind)
            runs = []
            for r in range(ctx.runs):
                sid = server.create_stream(f"memory {kind} {n} {r}")
                res = run_child(
                    [
                        "-m", "benchmarks.bulkpush_run", "--url", server.url,
                        "--catalog", str(path), "--stream", sid, "--rate", str(LIFTED_RATE),
                    ]
                )  # fmt: skip
                runs.append(res)
                ctx.progress(
                    f"  memory: {n:,} {kind} products, run {r + 1}: peak RSS "
                    f"{res['peak_rss_mb']:.1f} MB ({res.get('processes_seen', 0)} other "
                    f"processes; client alone {res.get('peak_rss_self_mb', 0):.1f}), "
                    f"{res['seconds']:.1f} s"
                )
            peaks = [x["peak_rss_mb"] for x in runs]
            rows.append(
                {
                    "kind": kind,
                    "products": n,
                    "catalog": describe(path),
                    "peak_rss_mb": median(peaks),
                    "peak_rss_spread": spread(peaks),
                    "peak_rss_self_mb": median([x.get("peak_rss_self_mb", 0.0) for x in runs]),
                    "processes": max(x.get("processes_seen", 0) for x in runs),
                    "seconds": median([x["seconds"] for x in runs]),
                    "products_per_s": median([x["products_per_s"] for x in runs]),
                    "accepted": runs[0]["products"],
                    "runs": runs,
                }
            )
    ratios = {}
    for kind in dict.fromkeys(k for k, _ in sizes):
        mine = [r for r in rows if r["kind"] == kind]
        ratios[kind] = mine[-1]["peak_rss_mb"] / mine[0]["peak_rss_mb"]
    target_rows = [r for r in rows if r["kind"] == TARGET_KIND]
    smallest, largest = target_rows[0], target_rows[-1]
    ratio = ratios[TARGET_KIND]
    highest = max(r["peak_rss_mb"] for r in rows)
    scenario.figures = {
        "rows": rows,
        "ratio_by_kind": ratios,
        "ratio_largest_smallest": ratio,
        "target_kind": TARGET_KIND,
        "highest_peak_mb": highest,
    }
    scenario.targets.append(
        Target(
            id="memory_flat",
            description=f"peak RSS (all processes), {largest['products']:,} vs "
            f"{smallest['products']:,} products of {KIND_TEXT[TARGET_KIND]}",
            target=f"<= {MAX_RATIO:g}x",
            value=ratio,
            met=ratio <= MAX_RATIO,
            measured=f"{largest['peak_rss_mb']:.1f} vs {smallest['peak_rss_mb']:.1f} MB "
            f"= {ratio:.3f}x",
            note=""
            if ratio <= MAX_RATIO
            else f"Peak RSS grows {ratio:.2f}x from the smallest to the largest catalog: "
            "something grows with the number of products or requests (report, allocator "
            f"fragmentation), or the {smallest['products']:,}-product push "
            f"({smallest['seconds']:.1f} s) ends before the pipeline's queues, in-flight "
            "budget and reading processes are at their fullest.",
        )
    )
    top = max(rows, key=lambda r: r["peak_rss_mb"])
    scenario.targets.append(
        Target(
            id="memory_under_250",
            description="highest peak RSS (all processes), default workers",
            target=f"< {MAX_PEAK_MB:g} MB",
            value=highest,
            met=highest < MAX_PEAK_MB,
            measured=f"{highest:.1f} MB ({top['products']:,} {top['kind']} products; client "
            f"alone {top['peak_rss_self_mb']:.1f} MB, {top['processes']} other processes)",
            note=""
            if highest < MAX_PEAK_MB
            else f"{highest - MAX_PEAK_MB:.0f} MB over: the client process holds "
            f"{top['peak_rss_self_mb']:.0f} MB and its {top['processes']} other processes "
            f"{highest - top['peak_rss_self_mb']:.0f} MB together (each reading process an "
            "interpreter with the package, a segment's buffer and its gzipped chunks).",
        )
    )
    return scenario
